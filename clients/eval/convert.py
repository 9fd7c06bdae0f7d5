"""``taskgram tasks convert``: the published files of the paper's datasets → the task files of
:mod:`clients.eval.tasks`.

Inputs are what each dataset publishes, as Hugging Face ``datasets`` ships it: Parquet files (the hub's
``<config>/<split>-NNNNN-of-NNNNN.parquet``), Arrow files (``datasets.save_to_disk`` folders, whose
``state.json`` names the split, or the ``datasets`` cache), or JSON (JSON Lines, a JSON list, or
TriviaQA's original ``{"Data": [...]}``). A folder is searched recursively. The split of a file is its
``--split``, else the one ``state.json`` names, else the split word in its name or its folder's name
(``train``, ``validation``, ``test``, ``dev``, ``auxiliary_train``).

=============  ==========================================  =================================================
dataset        published columns used                      task file (see ``tasks.task_file``)
=============  ==========================================  =================================================
``trivia_qa``  ``question``, ``question_id``,              ``triviaqa-<split>.jsonl``: id, question, answer
(rc.nocontext) ``answer.value``, ``answer.aliases``        (``answer.value``), aliases
``mmlu``       ``question``, ``subject``, ``choices``,     ``mmlu-<split>.jsonl``; ids ``<subject>-<k>``
(cais/mmlu)    ``answer`` (0–3)                            (k-th question of the subject in the split)
``gsm8k``      ``question``, ``answer``                    ``gsm8k-<split>.jsonl``; ids ``<split>-<k>``
(main)
``wmt09``      ``translation`` = {xx: ..., "en": ...}      ``translation-<xx>-<split>.jsonl`` per language
                                                           (hu, cs, de, it, es, fr; x = English); Europarl's
                                                           ``translation`` rows convert the same way
=============  ==========================================  =================================================

A row without a field, with a field of the wrong type, or a TriviaQA row without an answer (the test
split hides its answers) is an error naming the file, the row and the field; nothing is skipped.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clients.eval.tasks import MMLU_SUBJECTS, TaskDataError, task_file

DATASETS = ("trivia_qa", "mmlu", "gsm8k", "wmt09")
WMT09_LANGUAGES = ("hu", "cs", "de", "it", "es", "fr")
SPLITS = ("auxiliary_train", "train", "validation", "test", "dev")
_SPLIT_WORD = re.compile(r"(?<![A-Za-z])(" + "|".join(SPLITS) + r")(?![A-Za-z])")
_DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json")


class ConvertError(TaskDataError):
    """An input file cannot be read or a row does not have the dataset's fields."""


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------
def data_files(inputs: list[Path]) -> list[Path]:
    """The data files of the inputs (files as given; folders searched recursively, sorted)."""
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(_DATA_SUFFIXES))
            found = [f for f in found if f.name not in ("state.json", "dataset_info.json")]
            if not found:
                raise ConvertError(f"{p}: no .parquet, .arrow, .jsonl or .json files in this folder")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise ConvertError(f"{p}: no such file or folder")
    return out


def split_of(path: Path, given: str | None) -> str:
    """The split of a data file: ``given``, the ``state.json`` beside it, or the split word in its path."""
    if given:
        return given
    state = path.parent / "state.json"
    if state.is_file():
        try:
            split = json.loads(state.read_text(encoding="utf-8")).get("_split")
        except (OSError, ValueError, AttributeError) as err:
            raise ConvertError(f"{state}: cannot read the split: {err}") from err
        if split:
            return str(split)
    for part in (path.name, path.parent.name):  # hub: <split>-NNNNN-of-NNNNN.parquet; DatasetDict folders
        m = _SPLIT_WORD.search(part)
        if m:
            return m.group(1)
    raise ConvertError(f"{path}: cannot tell the split from the file name; give --split")


def _arrow_batches(path: Path) -> Iterator[Any]:
    import pyarrow as pa

    try:
        with pa.memory_map(str(path), "r") as source:
            try:
                reader: Any = pa.ipc.open_stream(source)  # what datasets writes
            except pa.ArrowInvalid:
                source.seek(0)
                reader = pa.ipc.open_file(source)
                for i in range(reader.num_record_batches):
                    yield reader.get_batch(i)
                return
            yield from reader
    except (OSError, ValueError) as err:  # ArrowInvalid is a ValueError
        raise ConvertError(f"{path}: not a readable Arrow file: {err}") from err


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of one data file as dicts (Parquet and Arrow streamed batch by batch)."""
    name = path.name
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(str(path)).iter_batches(batch_size=4096):
                yield from batch.to_pylist()
        except ImportError as err:
            raise ConvertError(f"{path}: reading Parquet needs pyarrow (the eval extra)") from err
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise ConvertError(f"{path}: not a readable Parquet file: {err}") from err
        return
    if name.endswith(".arrow"):
        for batch in _arrow_batches(path):
            yield from batch.to_pylist()
        return
    try:
        text = path.open(encoding="utf-8")
    except OSError as err:
        raise ConvertError(f"{path}: cannot open: {err.strerror}") from err
    with text:
        if name.endswith(".json"):  # one JSON document, or JSON Lines under a .json name (to_json)
            try:
                data = json.load(text)
            except json.JSONDecodeError as err:
                if err.msg != "Extra data":
                    raise ConvertError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from err
            else:
                rows = data.get("Data", data.get("data")) if isinstance(data, dict) else data
                if isinstance(data, dict) and rows is None:
                    rows = [data]  # a one-line JSON Lines file
                if not isinstance(rows, list):
                    raise ConvertError(f"{path}: expected a JSON list of rows (or {{'Data': [...]}})")
                yield from rows
                return
            text.seek(0)
        for lineno, line in enumerate(text, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise ConvertError(f"{path}:{lineno}: not valid JSON: {err.msg}") from err


# ------------------------------------------------------------------------------------------------
# Converting
# ------------------------------------------------------------------------------------------------
def _get(row: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(row, dict):
        raise ConvertError(f"{where}: expected an object, got {type(row).__name__}")
    if key not in row:
        raise ConvertError(f"{where}: missing field {key!r}")
    value = row[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConvertError(f"{where}: field {key!r} must be {getattr(kind, '__name__', kind)}")
    return value


def _trivia_qa(row: dict[str, Any], where: str) -> dict[str, Any]:
    if "Question" in row:  # TriviaQA's original JSON (unfiltered/rc *.json)
        row = {"question": row["Question"], "question_id": row.get("QuestionId"), "answer": row.get("Answer")}
        answer = row["answer"] or {}
        row["answer"] = {"value": answer.get("Value"), "aliases": answer.get("Aliases", [])}
    question = _get(row, "question", str, where)
    qid = _get(row, "question_id", str, where)
    answer = _get(row, "answer", dict, where)
    value = _get(answer, "value", str, f"{where}: answer")
    aliases = _get(answer, "aliases", list, f"{where}: answer")
    if not value.strip():
        raise ConvertError(f"{where}: field 'answer.value' is empty (the TriviaQA test split has no answers)")
    if not all(isinstance(a, str) for a in aliases):
        raise ConvertError(f"{where}: field 'answer.aliases' must be a list of strings")
    return {"id": qid, "question": question, "answer": value, "aliases": list(aliases) or [value]}


def convert(dataset: str, inputs: list[Path], out_dir: Path, *, split: str | None = None) -> dict[str, int]:
    """Convert the dataset's files; returns {written file: rows}. Files are written whole (``*.tmp``
    then renamed), so an error leaves no partial task file."""
    if dataset not in DATASETS:
        raise ConvertError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    outputs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    per_subject: dict[tuple[str, str], int] = defaultdict(int)
    per_split: dict[str, int] = defaultdict(int)
    for path in data_files(inputs):
        sp = split_of(path, split)
        for i, row in enumerate(read_rows(path)):
            where = f"{path}: row {i}"
            if dataset == "trivia_qa":
                outputs[task_file("triviaqa", sp)].append(_trivia_qa(row, where))
            elif dataset == "mmlu":
                subject = _get(row, "subject", str, where)
                if subject not in MMLU_SUBJECTS:
                    raise ConvertError(f"{where}: unknown MMLU subject {subject!r}")
                choices = _get(row, "choices", list, where)
                answer = _get(row, "answer", int, where)
                if not all(isinstance(c, str) for c in choices) or not 0 <= answer < len(choices):
                    raise ConvertError(f"{where}: 'choices' must be strings and 'answer' an index of them")
                k = per_subject[(sp, subject)]
                per_subject[(sp, subject)] += 1
                outputs[task_file("mmlu-knowledge", sp)].append(
                    {
                        "id": f"{subject}-{k}",
                        "subject": subject,
                        "question": _get(row, "question", str, where),
                        "choices": choices,
                        "answer": answer,
                    }
                )
            elif dataset == "gsm8k":
                k = per_split[sp]
                per_split[sp] += 1
                outputs[task_file("gsm8k", sp)].append(
                    {
                        "id": f"{sp}-{k}",
                        "question": _get(row, "question", str, where),
                        "answer": _get(row, "answer", str, where),
                    }
                )
            else:
                pair = _get(row, "translation", dict, where)
                langs = [k for k in pair if k != "en"]
                if "en" not in pair or len(langs) != 1:
                    raise ConvertError(f"{where}: 'translation' must hold 'en' and one other language")
                lang = langs[0]
                en = _get(pair, "en", str, f"{where}: translation")
                other = _get(pair, lang, str, f"{where}: translation")
                name = task_file(f"translation-{lang}", sp)
                outputs[name].append({"id": f"{sp}-{len(outputs[name])}", "en": en, lang: other})
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, rows in outputs.items():
        ids = [r["id"] for r in rows]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ConvertError(f"{name}: duplicate id {dup!r} (the same file given twice?)")
        target = out_dir / name
        tmp = target.with_suffix(".jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        tmp.replace(target)
        written[str(target)] = len(rows)
    if not written:
        raise ConvertError(f"no rows in {', '.join(map(str, inputs))}")
    return written
