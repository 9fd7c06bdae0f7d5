"""The evaluation run end to end: stages, resume without re-querying, tables and figures, errors in the
report and a non-zero exit. Counting through a brute-force backend and through LocalClient on a real
small index; the LLM through a test scorer (and the tiny-model path where torch exists)."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from clients.cache import CACHE_FILE
from clients.eval.errors import EvalError
from clients.eval.pipeline import EvalConfig, Run
from tests.unit.clients.test_eval_fakes import BruteForceBackend, HashEmbedder, LengthScorer

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "tasks"
DOCS = [
    "Opens a local or remote file. Abre un archivo local o remoto. The local file opens quickly.",
    "Choose Tools - Options - Load/Save. Elija Herramientas - Opciones.",
    "The capital city of France is Paris. Paris is a city.",
    "Python is a programming language named after a British comedy group called Monty Python.",
    "The heart pumps blood through the body. Blood flows. The human heart and the human brain.",
    "Janet has ducks that lay eggs every day; she sells eggs at the farmers market for 2 dollars each.",
    "A robe takes 2 bolts of blue fiber. White fiber bolts. Tom has 3 apples and 5 more apples.",
    "Which band recorded the rock opera Tommy? The Who recorded Tommy.",
    "Notes: tom 3 apples buys 5 apples many apples; tom 3 5 8 apples 8.",
    "Quiz: capital city France? Paris. Organ pumps blood: the heart. Bone protects human brain: skull.",
]
TASKS = ["translation-es", "triviaqa", "mmlu-knowledge", "mmlu-reasoning", "gsm8k"]


def _config(run_dir: Path, **kw) -> EvalConfig:
    base = dict(
        tasks_dir=str(FIXTURES),
        run_dir=str(run_dir),
        tasks=TASKS,
        n_values=[2, 3],
        sample=None,
        thresholds={
            "translation": {2: 0.0, 3: 0.0},
            "triviaqa": {2: 0.0, 3: 0.0},
            "mmlu": {2: 0.0, 3: 0.0},
            "gsm8k": {2: 0.0, 3: 0.0},
        },
        models=["length"],
        count_batch=50,
        figures=False,
    )
    base.update(kw)
    return EvalConfig(**base)


def _run(
    cfg: EvalConfig,
    backend,
    scorer: LengthScorer | None = None,
    embedder: HashEmbedder | None = None,
    index_identity: dict | None = None,
) -> tuple:
    scorer = scorer or LengthScorer()
    embedder = embedder or HashEmbedder()
    run = Run(
        cfg,
        backend,
        index_identity={"test": 1} if index_identity is None else index_identity,
        embedder_factory=lambda: embedder,
        scorer_factory=lambda m: scorer,
        progress=False,
    )
    return run, run.run(), scorer, embedder


def _csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_end_to_end_tables_figures_and_exact_counts(tmp_path: Path) -> None:
    backend = BruteForceBackend(DOCS)
    run, report, scorer, _ = _run(_config(tmp_path / "run", figures=True, count_batch=7), backend)
    assert report["ok"] and report["errors"] == []
    rows = _csv(tmp_path / "run" / "tables" / "taskgram-gsm8k-n3.csv")
    assert rows, "fixture corpus gives nonzero GSM8K pairs"
    from clients.eval.pairs import phrase_variants

    oracle = BruteForceBackend(DOCS)
    for r in rows:  # every stored count is the brute-force count of the phrase variants, never a default
        assert 0 < int(r["pair_count"]) <= int(r["sx_count"])
        assert (
            int(r["pair_count"])
            == oracle.cooccurrence([[phrase_variants(r["sx"]), phrase_variants(r["sy"])]])[0]
        )
        assert int(r["sx_count"]) == oracle.doc_freq([phrase_variants(r["sx"])])[0]
    mem = _csv(tmp_path / "run" / "tables" / "memorization.csv")
    assert {m["pairs_filter"] for m in mem} == {"gamma", "none"}
    assert {m["scorer"] for m in mem} == {"taskgram", "infgram"}
    assert any(m["spearman_rho"] for m in mem)
    assert (tmp_path / "run" / "tables" / "performance.csv").exists()
    # per filter: memorization bars, Fig. 4, Fig. 3, the GSM8K Kendall panel; and the scatter
    assert len(report["figures"]) == 9
    for fig in report["figures"]:
        assert Path(fig["path"]).stat().st_size > 1000 and fig["shows"]
    stats = report["stats"]["taskgram"]["gsm8k/n3"]["all_pairs"]
    assert stats["candidates"] == stats["zero_count"] + stats["kept"]
    saved = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert (
        saved["config"]["tasks"] == TASKS
        and saved["index"] == {"test": 1}
        and saved["models"] == {"length": "length-scorer"}
    )
    assert report["performance"]["length"]["mmlu-knowledge"]["metric"] == "accuracy"


def test_occurrence_unit_run_counts_apart_from_documents(tmp_path: Path) -> None:
    from clients.eval.pairs import phrase_variants

    _, docs_report, _, _ = _run(_config(tmp_path / "run", tasks=["gsm8k"]), BruteForceBackend(DOCS))
    backend = BruteForceBackend(DOCS)
    cfg = _config(tmp_path / "run", tasks=["gsm8k"], count_unit="occurrences")
    _, report, _, _ = _run(cfg, backend)
    assert report["ok"] and report["stats"]["counts"]["unit"] == "occurrences"
    assert docs_report["stats"]["counts"]["unit"] == "documents"
    saved = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert saved["config"]["count_unit"] == "occurrences"
    config = json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))
    assert config["count_unit"] == "occurrences"
    # the same run directory and count cache: occurrence counts were asked, never read from the
    # document counts (and C(s^x) is not a document frequency); the kept pairs are the same in both
    # units (zero in one exactly when zero in the other), so the LLM and ∞-gram stages are reused
    assert {k for k, _ in backend.calls} == {"cooccurrence-occurrences"}
    rows = [r for n in (2, 3) for r in _csv(tmp_path / "run" / "tables" / f"taskgram-gsm8k-n{n}.csv")]
    assert rows
    oracle = BruteForceBackend(DOCS)
    differs = False
    for r in rows:
        sx, sy = phrase_variants(r["sx"]), phrase_variants(r["sy"])
        want_pair = oracle.cooccurrence([[sx, sy]], unit="occurrences")[0]
        want_x = oracle.cooccurrence([[sx, sx]], unit="occurrences")[0]
        assert (int(r["pair_count"]), int(r["sx_count"])) == (want_pair, want_x)
        assert 0 < want_pair <= want_x
        differs |= want_x != oracle.doc_freq([sx])[0]
    assert differs, "the fixture corpus repeats some s^x within a document"


def test_rerun_resumes_from_cached_stages(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "run")
    _run(cfg, BruteForceBackend(DOCS))
    backend2 = BruteForceBackend(DOCS)
    _, report, scorer2, emb2 = _run(cfg, backend2)
    assert report["ok"] and scorer2.jobs == 0 and emb2.seen == []
    assert backend2.calls == []  # counts and ∞-gram come from the run directory
    # a new n reuses the cached counts and recomputes only what depends on it
    cfg3 = _config(tmp_path / "run", n_values=[2, 3, 5])
    backend3 = BruteForceBackend(DOCS)
    _, report3, _, _ = _run(cfg3, backend3)
    assert report3["ok"] and any(k == "cooccurrence" for k, _ in backend3.calls)


COUNT_CALLS = {"doc_freq", "cooccurrence", "cooccurrence-occurrences"}


def _count_calls(backend: BruteForceBackend) -> list:
    return [c for c in backend.calls if c[0] in COUNT_CALLS]


def test_second_run_reads_counts_from_the_cache_and_another_index_misses(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "run")
    first = BruteForceBackend(DOCS)
    _, report1, _, _ = _run(cfg, first)
    assert _count_calls(first)
    shutil.rmtree(tmp_path / "run" / "stages")  # only the count cache is left to answer from
    second = BruteForceBackend(DOCS)
    _, report2, _, _ = _run(cfg, second)
    assert report2["ok"] and second.calls and _count_calls(second) == []  # ∞-gram asked again, no count
    timing = ("pair_query_seconds", "pairs_per_second", "pairs_queried_this_run")
    same = [k for k in report1["stats"]["counts"] if k not in timing]
    assert [report2["stats"]["counts"][k] for k in same] == [report1["stats"]["counts"][k] for k in same]
    assert report2["stats"]["counts"]["pairs_queried_this_run"] == 0
    other = BruteForceBackend(DOCS)
    _, report3, _, _ = _run(cfg, other, index_identity={"test": 2})  # another index: nothing to reuse
    assert report3["ok"] and sorted(_count_calls(other)) == sorted(_count_calls(first))


def test_a_run_folder_of_the_jsonl_format_is_migrated_once(tmp_path: Path) -> None:
    from clients.eval.pipeline import _key

    cfg = _config(tmp_path / "run")
    _run(cfg, BruteForceBackend(DOCS))
    # the same counts as the earlier format wrote them, in the file name that format used
    with sqlite3.connect(tmp_path / "run" / CACHE_FILE) as db:
        rows = db.execute("SELECT kind, key, value FROM results").fetchall()
    lines = []
    for kind, key, value in rows:
        quantity, boundary = kind.split(":")[1:]
        phrases = json.loads(key) if quantity in ("co", "occ-co") else [key]
        lines.append(json.dumps({"k": "\t".join([quantity, boundary, *phrases]), "v": int(value)}) + "\n")
    shutil.rmtree(tmp_path / "run" / "stages")
    (tmp_path / "run" / CACHE_FILE).unlink()
    variants = {"index": {"test": 1}, "case": cfg.case_variants, "space": cfg.space, "boundary": cfg.boundary}
    old = tmp_path / "run" / f"counts-{_key(variants)[:16]}.jsonl"
    old.write_text("".join(lines), encoding="utf-8")
    backend = BruteForceBackend(DOCS)
    _, report, _, _ = _run(cfg, backend)
    assert report["ok"] and _count_calls(backend) == []
    assert not old.exists() and old.with_name(old.name + ".migrated").exists()
    old.write_text('{"k": "df\\tword\\tx", "v": 1}\n{"k": "df"}\n', encoding="utf-8")
    shutil.rmtree(tmp_path / "run" / "stages")
    with pytest.raises(
        EvalError, match=r"counts: .*counts-[0-9a-f]{16}\.jsonl:2: malformed count cache line"
    ):
        _run(cfg, BruteForceBackend(DOCS))


def test_failed_count_stops_the_run_and_nothing_is_zero(tmp_path: Path) -> None:
    backend = BruteForceBackend(DOCS)
    backend.fail_on = "cooccurrence"
    with pytest.raises(EvalError, match="counts: co-occurrence of pairs: batch of 50 queries starting at #0"):
        _run(_config(tmp_path / "run"), backend)
    with sqlite3.connect(tmp_path / "run" / CACHE_FILE) as db:
        kinds = {kind for (kind,) in db.execute("SELECT DISTINCT kind FROM results")}
    assert "counts:df:word" in kinds and "counts:co:word" not in kinds  # phrase counts stored, no pair count


def test_failed_model_is_an_error_in_the_report(tmp_path: Path) -> None:
    _, report, _, _ = _run(_config(tmp_path / "run"), BruteForceBackend(DOCS), scorer=LengthScorer(fail=True))
    assert not report["ok"] and report["errors"][0]["stage"] == "llm length"
    assert "out of memory" in report["errors"][0]["error"]


def test_backend_without_infgram_is_reported(tmp_path: Path) -> None:
    class CountsOnly:
        def __init__(self) -> None:
            self.inner = BruteForceBackend(DOCS)

        def doc_freq(self, phrases, *, space="auto", boundary="token"):
            return self.inner.doc_freq(phrases, space=space, boundary=boundary)

        def cooccurrence(self, queries, *, space="auto", boundary="token"):
            return self.inner.cooccurrence(queries, space=space, boundary=boundary)

    _, report, _, _ = _run(_config(tmp_path / "run"), CountsOnly())
    assert not report["ok"] and report["errors"] == [
        {"stage": "infgram", "error": "the backend has no infgram_prob"}
    ]
    _, report, _, _ = _run(_config(tmp_path / "run2", infgram=False), CountsOnly())
    assert report["ok"]


def test_cli_against_a_real_index(tmp_path: Path, build_small_index) -> None:
    """`taskgram eval --index` through LocalClient: no semantic filter (no embedder needed), and a tiny
    local model directory when torch is available; otherwise the run must fail cleanly on the model."""
    from taskgram.cli import main

    index = build_small_index(DOCS, normalization="nfkc-lower")
    tasks = tmp_path / "tasks"
    shutil.copytree(FIXTURES, tasks)
    args = [
        "eval",
        "--index",
        str(index),
        "--tasks-dir",
        str(tasks),
        "--run-dir",
        str(tmp_path / "run"),
        "--tasks",
        "gsm8k",
        "triviaqa",
        "--n",
        "3",
        "--no-semantic-filter",
        "--no-progress",
        "--sample",
        "0",
        "--no-figures",
    ]
    try:
        import torch  # noqa: F401
    except ImportError:
        rc = main([*args, "--models", str(tmp_path / "no-such-model")])
        report = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
        assert rc == 1 and any("no-such-model" in e["error"] for e in report["errors"])
        return
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    model_dir = tmp_path / "tiny-llm"
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(Path(__file__).resolve().parents[3] / "indexer" / "assets" / "gpt-neox-20b.json"),
        pad_token="<|padding|>",
        eos_token="<|endoftext|>",
    )
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    LlamaForCausalLM(cfg).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    rc = main([*args, "--models", str(model_dir)])
    report = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert rc == 0, report["errors"]
    assert report["index"]["identity"] and report["models"] == {str(model_dir): "tiny-llm"}
    rows = _csv(tmp_path / "run" / "tables" / "taskgram-gsm8k-n3.csv")
    assert rows and all(r["log_p_llm[" + str(model_dir) + "]"] for r in rows)
    from clients.client import LocalClient
    from clients.eval.pairs import phrase_variants

    client = LocalClient(index)
    for r in rows[:10]:
        assert (
            int(r["pair_count"])
            == client.cooccurrence(
                [[phrase_variants(r["sx"]), phrase_variants(r["sy"])]], space="both", boundary="word"
            )[0]
        )
        assert (
            int(r["sx_count"])
            == client.doc_freq([phrase_variants(r["sx"])], space="both", boundary="word")[0]
        )


def test_cli_count_unit(tmp_path: Path, build_small_index, capsys: pytest.CaptureFixture[str]) -> None:
    """`--count-unit occurrences` reaches the counts stage and the report (the model is missing on
    purpose: the run fails after the counts, which are still written)."""
    from clients.client import LocalClient
    from clients.eval.pairs import phrase_variants
    from taskgram.cli import main

    index = build_small_index(DOCS, normalization="nfkc-lower")
    args = ["eval", "--index", str(index), "--tasks-dir", str(FIXTURES), "--run-dir", str(tmp_path / "run")]
    args += ["--tasks", "gsm8k", "--n", "2", "--no-semantic-filter", "--no-progress", "--no-figures"]
    args += ["--no-infgram", "--sample", "0", "--models", str(tmp_path / "no-such-model")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--count-unit", "tokens"])
    assert exit_info.value.code == 2 and "--count-unit" in capsys.readouterr().err
    assert main([*args, "--count-unit", "occurrences"]) == 1
    report = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert (
        report["config"]["count_unit"] == "occurrences" and report["stats"]["counts"]["unit"] == "occurrences"
    )
    rows = _csv(tmp_path / "run" / "tables" / "taskgram-gsm8k-n2.csv")
    assert rows
    with LocalClient(index) as client:
        for r in rows[:10]:
            sx, sy = phrase_variants(r["sx"]), phrase_variants(r["sy"])
            got = client.cooccurrence([[sx, sy], [sx, sx]], space="both", unit="occurrences", boundary="word")
            assert [int(r["pair_count"]), int(r["sx_count"])] == got


def test_http_client_and_local_client_give_the_same_tables(tmp_path: Path, build_small_index) -> None:
    """The same run over a real uvicorn server (Client) and in-process (LocalClient): identical tables."""
    import socket
    import threading
    import time

    import uvicorn

    from clients.client import Client, LocalClient
    from service.app import create_app
    from service.settings import Settings

    index = build_small_index(DOCS, normalization="nfkc-lower")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(Settings(indexes={"small": index}, access_log=False)),
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        tables = {}
        for name, backend in [("http", Client(url, index="small")), ("local", LocalClient(index))]:
            cfg = _config(tmp_path / name, tasks=["gsm8k", "translation-es"], count_batch=5)
            run = Run(
                cfg,
                backend,
                index_identity={"index": "small"},
                embedder_factory=HashEmbedder,
                scorer_factory=lambda m: LengthScorer(),
                progress=False,
            )
            report = run.run()
            assert report["ok"], report["errors"]
            tables[name] = {
                p.name: p.read_text(encoding="utf-8") for p in (tmp_path / name / "tables").glob("*.csv")
            }
            backend.close()
        assert tables["http"] == tables["local"]
        assert any(len(t.splitlines()) > 1 for n, t in tables["http"].items() if n.startswith("taskgram-"))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
