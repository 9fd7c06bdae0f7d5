"""Evaluation tasks: loaders for local JSON Lines files, the MMLU subject split, seeded subsets.

Schemas (one JSON object per line, UTF-8):

==================  ==========================================================================
task                fields
==================  ==========================================================================
translation-XX      ``{"id": str, "en": str, "XX": str}`` (XX = es, fr, de, ...): x = en, y = XX
triviaqa            ``{"id": str, "question": str, "answer": str, "aliases": [str, ...]}``
mmlu                ``{"id": str, "subject": str, "question": str, "choices": [str x4], "answer": int}``
gsm8k               ``{"id": str, "question": str, "answer": str}`` (calculator annotations removed)
==================  ==========================================================================

MMLU is split as in the paper (App. D): 22 reasoning-intensive subjects, 34 knowledge-intensive ones
(all others except ``formal_logic``, which is in neither group); the tasks are ``mmlu-knowledge`` and
``mmlu-reasoning``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from clients.eval.errors import TaskDataError
from clients.eval.ngrams import CALCULATOR_ANNOTATION

MMLU_SUBJECTS: tuple[str, ...] = tuple(
    """abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology
    college_chemistry college_computer_science college_mathematics college_medicine college_physics
    computer_security conceptual_physics econometrics electrical_engineering elementary_mathematics
    formal_logic global_facts high_school_biology high_school_chemistry high_school_computer_science
    high_school_european_history high_school_geography high_school_government_and_politics
    high_school_macroeconomics high_school_mathematics high_school_microeconomics high_school_physics
    high_school_psychology high_school_statistics high_school_us_history high_school_world_history
    human_aging human_sexuality international_law jurisprudence logical_fallacies machine_learning
    management marketing medical_genetics miscellaneous moral_disputes moral_scenarios nutrition
    philosophy prehistory professional_accounting professional_law professional_medicine
    professional_psychology public_relations security_studies sociology us_foreign_policy virology
    world_religions""".split()  # noqa: SIM905
)
# Paper App. D (= ``knowledge_tasks`` complement in the authors' analysis code).
MMLU_REASONING: frozenset[str] = frozenset(
    """econometrics professional_law abstract_algebra college_medicine college_chemistry moral_scenarios
    college_mathematics high_school_chemistry professional_accounting college_computer_science
    college_biology high_school_computer_science high_school_mathematics college_physics
    professional_medicine elementary_mathematics machine_learning electrical_engineering
    high_school_physics conceptual_physics high_school_statistics high_school_biology""".split()  # noqa: SIM905
)
MMLU_EXCLUDED: frozenset[str] = frozenset({"formal_logic"})
MMLU_KNOWLEDGE: frozenset[str] = frozenset(MMLU_SUBJECTS) - MMLU_REASONING - MMLU_EXCLUDED

LANGUAGE_NAMES = {
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "cs": "Czech",
    "hu": "Hungarian",
    "en": "English",
}
TASK_FILES = {
    "triviaqa": "triviaqa-validation.jsonl",
    "mmlu-knowledge": "mmlu-test.jsonl",
    "mmlu-reasoning": "mmlu-test.jsonl",
    "gsm8k": "gsm8k-test.jsonl",
}



@dataclass(frozen=True)
class Example:
    """One (x, y) example. ``prompt`` is the instruction u ⊕ x up to where y starts (Eq. 2)."""

    task: str
    id: str
    x: str
    y: str
    prompt: str
    subject: str | None = None
    choices: tuple[str, ...] = ()
    answer_index: int | None = None
    aliases: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "id": self.id,
            "x": self.x,
            "y": self.y,
            "prompt": self.prompt,
            "subject": self.subject,
            "choices": list(self.choices),
            "answer_index": self.answer_index,
            "aliases": list(self.aliases),
        }

    @classmethod
    def from_json(cls, d: dict) -> Example:
        return cls(
            task=d["task"],
            id=d["id"],
            x=d["x"],
            y=d["y"],
            prompt=d["prompt"],
            subject=d["subject"],
            choices=tuple(d["choices"]),
            answer_index=d["answer_index"],
            aliases=tuple(d["aliases"]),
        )


def task_file(task: str, split: str | None = None) -> str:
    """File name of a task inside the tasks directory: the default file (``triviaqa-validation.jsonl``,
    ``mmlu-test.jsonl``, ``gsm8k-test.jsonl``, ``translation-XX.jsonl``), or that of ``split``
    (``triviaqa-train.jsonl``, ``mmlu-test.jsonl``, ``translation-es-test.jsonl``, ...), as
    ``taskgram tasks convert`` writes them."""
    if split is not None and not re.fullmatch(r"[A-Za-z0-9_.]+", split):
        raise TaskDataError(f"split {split!r}: letters, digits, '_' and '.' only")
    if task.startswith("translation-"):
        return f"{task}.jsonl" if split is None else f"{task}-{split}.jsonl"
    try:
        default = TASK_FILES[task]
    except KeyError:
        raise TaskDataError(
            f"unknown task {task!r}; known: translation-XX, {', '.join(TASK_FILES)}"
        ) from None
    return default if split is None else f"{default.rsplit('-', 1)[0]}-{split}.jsonl"


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        f = path.open(encoding="utf-8")
    except OSError as err:
        raise TaskDataError(f"{path}: cannot open task file: {err.strerror}") from err
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise TaskDataError(f"{path}:{lineno}: not valid JSON: {err.msg}") from err
            if not isinstance(row, dict):
                raise TaskDataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield lineno, row


def _field(row: dict, name: str, kind: type | tuple[type, ...], where: str):
    if name not in row:
        raise TaskDataError(f"{where}: missing field {name!r}")
    value = row[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TaskDataError(
            f"{where}: field {name!r} must be {getattr(kind, '__name__', kind)}, got {type(value).__name__}"
        )
    return value


def _translation(task: str, path: Path) -> list[Example]:
    lang = task.split("-", 1)[1]
    language = LANGUAGE_NAMES.get(lang, lang)
    out = []
    for lineno, row in _rows(path):
        where = f"{path}:{lineno}"
        x, y = _field(row, "en", str, where), _field(row, lang, str, where)
        out.append(
            Example(
                task,
                str(_field(row, "id", str, where)),
                x,
                y,
                prompt=f"English text: {x}\n{language} translation: ",
            )
        )
    return out


def _triviaqa(task: str, path: Path) -> list[Example]:
    out = []
    for lineno, row in _rows(path):
        where = f"{path}:{lineno}"
        q, a = _field(row, "question", str, where), _field(row, "answer", str, where)
        aliases = _field(row, "aliases", list, where) if "aliases" in row else [a]
        if not all(isinstance(s, str) for s in aliases):
            raise TaskDataError(f"{where}: field 'aliases' must be a list of strings")
        out.append(
            Example(
                task,
                _field(row, "id", str, where),
                q,
                a,
                prompt=f"Question: {q}\nAnswer: ",
                aliases=tuple(aliases),
            )
        )
    return out


def _mmlu(task: str, path: Path) -> list[Example]:
    group = MMLU_KNOWLEDGE if task == "mmlu-knowledge" else MMLU_REASONING
    out = []
    for lineno, row in _rows(path):
        where = f"{path}:{lineno}"
        subject = _field(row, "subject", str, where)
        if subject not in MMLU_SUBJECTS:
            raise TaskDataError(f"{where}: unknown MMLU subject {subject!r}")
        q = _field(row, "question", str, where)
        choices = _field(row, "choices", list, where)
        if not choices or not all(isinstance(c, str) for c in choices):
            raise TaskDataError(f"{where}: field 'choices' must be a non-empty list of strings")
        answer = _field(row, "answer", int, where)
        if not 0 <= answer < len(choices):
            raise TaskDataError(f"{where}: field 'answer' = {answer} is not an index of 'choices'")
        if subject in group:
            out.append(
                Example(
                    task,
                    _field(row, "id", str, where),
                    q,
                    choices[answer],
                    prompt=f"Question: {q}\nAnswer: ",
                    subject=subject,
                    choices=tuple(choices),
                    answer_index=answer,
                )
            )
    return out


def _gsm8k(task: str, path: Path) -> list[Example]:
    out = []
    for lineno, row in _rows(path):
        where = f"{path}:{lineno}"
        q, a = _field(row, "question", str, where), _field(row, "answer", str, where)
        out.append(
            Example(
                task,
                _field(row, "id", str, where),
                q,
                CALCULATOR_ANNOTATION.sub("", a),
                prompt=f"Question: {q}\nAnswer: ",
            )
        )
    return out


def load_task(task: str, tasks_dir: str | Path, split: str | None = None) -> list[Example]:
    """All examples of a task (of ``split``, see :func:`task_file`), in file order. Raises
    ``TaskDataError`` naming file and line."""
    path = Path(tasks_dir) / task_file(task, split)
    if task.startswith("translation-"):
        examples = _translation(task, path)
    elif task == "triviaqa":
        examples = _triviaqa(task, path)
    elif task in ("mmlu-knowledge", "mmlu-reasoning"):
        examples = _mmlu(task, path)
    else:
        examples = _gsm8k(task, path)
    ids = [e.id for e in examples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise TaskDataError(f"{path}: duplicate id {dup!r}")
    return examples


def sample_examples(examples: list[Example], k: int | None, seed: int) -> list[Example]:
    """A seeded random subset of k examples (kept in file order), not the first k; all when k is None."""
    if k is None or k >= len(examples):
        return list(examples)
    if k < 0:
        raise ValueError(f"sample size must be >= 0, got {k}")
    keep = set(random.Random(seed).sample(range(len(examples)), k))
    return [e for i, e in enumerate(examples) if i in keep]
