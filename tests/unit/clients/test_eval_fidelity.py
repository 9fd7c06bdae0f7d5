"""The evaluation's fidelity fixes: no silent pair cap (a seeded uniform sample after the filter,
reported), word-boundary counts in every cache key, the index normalization check, contamination,
table/eval splits, per-task n, model-file keys and reported too-long spans."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from clients.eval.pairs import cap_pairs, extract_pairs
from clients.eval.pipeline import EvalConfig, EvalError, Run, check_normalization
from clients.eval.tasks import Example
from tests.unit.clients.test_eval_fakes import BruteForceBackend, HashEmbedder, LengthScorer
from tests.unit.clients.test_eval_pipeline import DOCS, FIXTURES, _config, _csv, _run


def _example(i: int, x: str, y: str) -> Example:
    return Example("gsm8k", f"e{i}", x, y, prompt=f"Question: {x}\nAnswer: ")


def test_cap_samples_uniformly_after_the_filter_with_the_seed() -> None:
    """The old cap kept the first 2,000 pairs in input-major order before the filter: later input n-grams
    were never paired. The cap now samples each example's filtered pairs, seeded."""
    rows = [["e1", f"x{i}", f"y{j}", 1.0 if j % 2 else 0.0] for i in range(30) for j in range(30)]
    in_h = [r[3] > 0.5 for r in rows]
    keep_h, keep_all = cap_pairs(rows, 100, 0, "t", in_h)
    assert sum(keep_h) == 100 and sum(keep_all) == 100
    assert all(in_h[i] for i, k in enumerate(keep_h) if k)  # filtered sample: only pairs passing γ
    kept_x = {rows[i][1] for i, k in enumerate(keep_h) if k}
    assert len(kept_x) > 20  # spread over the inputs, not the first four input n-grams
    assert cap_pairs(rows, 100, 0, "t", in_h) == (keep_h, keep_all)  # seeded
    assert cap_pairs(rows, 100, 1, "t", in_h) != (keep_h, keep_all)
    assert cap_pairs(rows, None, 0, "t", in_h) == (in_h, [True] * len(rows))
    with pytest.raises(ValueError, match="cap"):
        cap_pairs(rows, 0, 0, "t", in_h)


def test_no_cap_by_default_and_extracted_counted_before_any_cap(tmp_path: Path) -> None:
    assert EvalConfig(tasks_dir="t", run_dir="r").max_pairs_per_example is None
    cfg = _config(tmp_path / "run", tasks=["gsm8k"], max_pairs_per_example=3)
    run, report, _, _ = _run(cfg, BruteForceBackend(DOCS))
    st = report["stats"]["pairs"]["gsm8k/n2"]
    examples = run.examples()["gsm8k"]
    assert st["extracted"] == len(extract_pairs(examples, "gsm8k", 2))  # before the cap
    cap = st["cap"]
    assert cap["max_pairs_per_example"] == 3 and cap["all_after"] <= 3 * len(examples)
    assert cap["all_before"] == st["extracted"] and cap["all_after"] < cap["all_before"]
    assert cap["filtered_after"] <= cap["filtered_before"] == st["pass_filter"]
    assert cap["examples_capped"] > 0


def test_counts_use_word_boundaries_and_the_boundary_is_in_every_key(tmp_path: Path) -> None:
    docs = ["the indexes of the table", "one index here", "an index of the table"]
    backend = BruteForceBackend(docs)
    from clients.eval.pairs import CountCache, CountOptions, count_phrases

    cache = CountCache(tmp_path / "c", "test")
    word = count_phrases(backend, ["index"], cache, CountOptions(boundary="word"))
    token = count_phrases(backend, ["index"], cache, CountOptions(boundary="token"))
    assert word == {"index": 2} and token == {"index": 3}  # "indexes" only matches token-wise
    with sqlite3.connect(cache.path) as db:
        query = "SELECT kind, key, value FROM results WHERE identity = 'test' ORDER BY kind"
        rows = db.execute(query).fetchall()
    assert rows == [("counts:df:token", "index", "3"), ("counts:df:word", "index", "2")]
    with pytest.raises(ValueError, match="boundary"):
        CountOptions(boundary="char")  # type: ignore[arg-type]
    # the run passes boundary="word" by default, and records it
    backend = BruteForceBackend(DOCS)
    _, report, _, _ = _run(_config(tmp_path / "run", tasks=["gsm8k"]), backend)
    assert backend.boundaries == {"word"} and report["stats"]["counts"]["boundary"] == "word"
    backend = BruteForceBackend(DOCS)
    _, report, _, _ = _run(_config(tmp_path / "run2", tasks=["gsm8k"], boundary="token"), backend)
    assert backend.boundaries == {"token"} and report["config"]["boundary"] == "token"


def test_normalization_mismatch_is_refused_unless_allowed(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "run", tasks=["gsm8k"])
    with pytest.raises(EvalError, match="--normalization nfkc-lower"):
        check_normalization(cfg, {"index": "/i", "normalization": "none"})
    assert check_normalization(cfg, {"normalization": "nfkc-lower"}) == "nfkc-lower"
    keep = _config(tmp_path / "run", tasks=["gsm8k"], lowercase=False)
    with pytest.raises(EvalError, match="--normalization nfkc\\b"):
        check_normalization(keep, {"normalization": "nfkc-lower"})
    allowed = _config(tmp_path / "run", tasks=["gsm8k"], allow_normalization_mismatch=True)
    assert check_normalization(allowed, {"normalization": "none"}) == "none"
    run = Run(cfg, BruteForceBackend(DOCS), index_identity={"normalization": "lower"}, progress=False)
    with pytest.raises(EvalError, match="allow-normalization-mismatch"):
        run.run()


def test_cli_refuses_an_index_built_without_normalization(
    tmp_path: Path, build_small_index, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskgram.cli import main

    index = build_small_index(DOCS)  # the builder's default: --normalization none
    args = ["eval", "--index", str(index), "--tasks-dir", str(FIXTURES), "--run-dir", str(tmp_path / "r")]
    args += ["--tasks", "gsm8k", "--n", "2", "--no-semantic-filter", "--no-progress", "--no-figures"]
    assert main(args) == 2  # refused like any bad input: one line naming the option to build with
    err = capsys.readouterr().err
    assert err.startswith("taskgram eval: error: ") and "--normalization nfkc-lower" in err


def test_contamination_is_reported_and_decontaminate_drops(tmp_path: Path) -> None:
    docs = DOCS + [
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day. She makes 9 * 2 = $18 every day at the market."
    ]
    cfg = _config(tmp_path / "run", tasks=["gsm8k"], contamination_n=[8, 13])
    _, report, _, _ = _run(cfg, BruteForceBackend(docs))
    c = report["stats"]["contamination"]["gsm8k"]
    assert c["contaminated"]["8"] == 1 and c["contaminated"]["13"] == 0  # 11 words in a row match
    assert c["contaminated_fraction"]["8"] == pytest.approx(1 / c["examples"])
    cfg = _config(tmp_path / "run2", tasks=["gsm8k"], decontaminate=True)
    _, report, _, _ = _run(cfg, BruteForceBackend(docs))
    assert report["stats"]["contamination"]["gsm8k"]["dropped"] == 1
    assert (
        report["stats"]["examples_after_decontamination"]["gsm8k"] == report["stats"]["examples"]["gsm8k"] - 1
    )


def test_per_task_n_and_table_split(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    rows = [json.loads(line) for line in (FIXTURES / "gsm8k-test.jsonl").read_text().splitlines() if line]
    (tasks / "gsm8k-test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tasks / "gsm8k-train.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:1]) + "\n")
    cfg = _config(
        tmp_path / "run",
        tasks_dir=str(tasks),
        tasks=["gsm8k"],
        n_values=[2],
        n_by_task={"gsm8k": [2, 3]},
        table_split={"gsm8k": "train"},
        eval_split={"gsm8k": "test"},
    )
    run, report, _, _ = _run(cfg, BruteForceBackend(DOCS))
    assert set(report["stats"]["pairs"]) == {"gsm8k/n2", "gsm8k/n3"}
    st = report["stats"]["pairs"]["gsm8k/n2"]["table"]
    assert st["split"] == "train" and st["examples"] == 1
    table = {(p.sx, p.sy) for p in extract_pairs(run.examples("table")["gsm8k"], "gsm8k", 2)}
    got = _csv(run.run_dir / "tables" / "taskgram-gsm8k-n2.csv")
    assert got and all((r["sx"], r["sy"]) in table for r in got)  # Φ = test pairs found in the table
    assert st["eval_pairs_in_table"] < report["stats"]["pairs"]["gsm8k/n2"]["extracted"]


def test_llm_stage_is_keyed_on_the_model_files(tmp_path: Path) -> None:
    from clients.eval.fingerprint import tree_sha256
    from clients.eval.llm import model_fingerprint

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "weights.bin").write_bytes(b"a" * 10)
    first = model_fingerprint(str(model))
    assert first["sha256"] == tree_sha256(model) and first["name"] == "model"
    (model / "weights.bin").write_bytes(b"b" * 11)
    assert model_fingerprint(str(model))["sha256"] != first["sha256"]  # same name, new weights


def test_a_span_longer_than_the_window_is_reported_not_truncated() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from clients.eval.llm import CausalLMScorer, Dropped, ScoreJob

    cfg = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=64)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)

    class Tok:  # one token per character, offsets included
        is_fast = True
        pad_token_id = 0
        eos_token_id = 0

        def __call__(self, texts, **kw):
            return {
                "input_ids": [[1 + ord(c) % 60 for c in t] for t in texts],
                "offset_mapping": [[(i, i + 1) for i in range(len(t))] for t in texts],
            }

    scorer = CausalLMScorer("tiny", device="cpu", max_length=8, model=model, tokenizer=Tok())
    text = "ab cdefghijkl mn"
    [row] = scorer.score([ScoreJob(text, [[(3, 13)], [(14, 16)]])])
    assert isinstance(row[0], Dropped) and "window of 8 tokens" in row[0].reason
    assert row[1] is not None and row[1].n_tokens == 2


def test_e5_directories_get_query_and_passage_prefixes(tmp_path: Path) -> None:
    from clients.eval.embed import is_e5, pair_cosines

    e5 = tmp_path / "e5-large-v2"
    e5.mkdir()
    assert is_e5(e5) and not is_e5(tmp_path / "minilm")
    other = tmp_path / "local"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_name_or_path": "intfloat/multilingual-e5-large"}))
    assert is_e5(other)
    emb = HashEmbedder()
    emb.side_prefixes = ("query: ", "passage: ")  # type: ignore[attr-defined]
    pair_cosines([("a b", "c d")], emb)
    assert set(emb.seen) == {"query: a b", "passage: c d"}


def test_gamma_calibration_and_control_pairs_are_reported(tmp_path: Path) -> None:
    from clients.eval.embed import calibrated_gamma

    got = calibrated_gamma([0.9, 0.8, 0.1, 0.2], 0.5, [0.3, 0.2, 0.1, 0.0])
    assert got["reference_fraction"] == 0.5 and got["fraction_kept"] == 0.5 and got["gamma"] == 0.1
    _, report, _, _ = _run(_config(tmp_path / "run", tasks=["gsm8k"]), BruteForceBackend(DOCS))
    cal = report["stats"]["pairs"]["gsm8k/n2"]["calibration"]
    assert cal["control_pairs"] > 0 and 0.0 <= cal["control_pass_fraction"] <= 1.0


def test_memorization_csv_labels_each_p_value_and_both_aggregations(tmp_path: Path) -> None:
    _, report, _, _ = _run(_config(tmp_path / "run", permutations=50, bootstrap=50), BruteForceBackend(DOCS))
    rows = _csv(tmp_path / "run" / "tables" / "memorization.csv")
    assert {r["aggregation"] for r in rows} == {"pair", "sy_mean"}
    for col in (
        "spearman_p_iid",
        "spearman_p_perm_within_examples",
        "rho_ci_lo_cluster_bootstrap",
        "discordant_fraction",
        "kendall_distance_tau_b",
    ):
        assert col in rows[0]
    assert any(r["spearman_p_perm_within_examples"] for r in rows)
    sy_rows = [r for r in rows if r["aggregation"] == "sy_mean" and r["items"] != "0"]
    pair_rows = {
        (r["task"], r["n"], r["pairs_filter"], r["scorer"]): r for r in rows if r["aggregation"] == "pair"
    }
    assert any(
        int(r["items"]) < int(pair_rows[(r["task"], r["n"], r["pairs_filter"], r["scorer"])]["items"])
        for r in sy_rows
    )


def test_scorer_is_injected_for_tests() -> None:
    assert LengthScorer().name == "length-scorer"


def test_n_per_task_and_splits_parse_and_plain_n_still_works() -> None:
    from clients.eval.cli import parse_n, parse_splits

    assert parse_n(["2", "3", "5"]) == ([2, 3, 5], {})
    assert parse_n(["translation=2,3,4,5", "triviaqa=3,5", "4"]) == (
        [4],
        {"translation": [2, 3, 4, 5], "triviaqa": [3, 5]},
    )
    for bad in (["x"], ["triviaqa="], ["=3"], ["11"], ["gsm8k=0"]):
        with pytest.raises(ValueError, match="--n"):
            parse_n(bad)
    assert parse_splits(["test", "triviaqa=train"], "--table-split") == {"*": "test", "triviaqa": "train"}
    cfg = EvalConfig(
        tasks_dir="t", run_dir="r", n_values=[2], n_by_task={"translation": [2, 4], "gsm8k": [3]}
    )
    assert cfg.ns("translation-de") == [2, 4] and cfg.ns("gsm8k") == [3] and cfg.ns("triviaqa") == [2]
    cfg.eval_split = {"*": "test", "triviaqa": "validation"}
    assert cfg.split_of(cfg.eval_split, "triviaqa") == "validation"
    assert cfg.split_of(cfg.eval_split, "mmlu-knowledge") == "test"


def test_preset_paper_sets_the_paper_options_and_names_what_it_cannot_meet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The preset fills the paper's options (an explicit option wins and is named) and says which of the
    paper's choices this run does not meet; the run then stops on the missing split files."""
    from taskgram.cli import main

    args = ["eval", "--index", str(tmp_path / "no-index"), "--tasks-dir", str(FIXTURES)]
    args += ["--run-dir", str(tmp_path / "run"), "--preset", "paper", "--sample", "10"]
    assert main(args) == 2  # no index here: the backend check comes after the preset
    err = capsys.readouterr().err
    assert "taskgram eval: error: --index" in err
    assert "--sample: the paper used 0, this run 10" in err
    assert "Pythia" in err and "LASER" in err and "the Pile" in err and "roberta-large" in err
    from clients.eval.preset import PAPER

    assert PAPER["contamination_n"] == [8, 14] and PAPER["bin_scale"] == "linear"
    assert "triviaqa=3,5" in PAPER["n_values"] and "triviaqa=train" in PAPER["table_split"]


def test_figures_of_several_models_and_the_novel_pair_plot(tmp_path: Path) -> None:
    """Fig. 4 and the GSM8K panel put model size on the x-axis (several models: lines with a band);
    the WMT plot draws novel-pair fractions."""
    from clients.eval.plots import plot_fig4, plot_gsm8k_kendall, plot_novel_pairs
    from clients.eval.report import MEM_HEADER

    rows = []
    for size, rho in ((14e6, 0.1), (160e6, 0.2), (1.4e9, 0.3)):
        for scorer in ("taskgram", "infgram"):
            rec = dict.fromkeys(MEM_HEADER)
            rec.update(
                task="gsm8k",
                n=3,
                pairs_filter="gamma",
                aggregation="pair",
                model=f"m{size:g}",
                parameters=size,
                scorer=scorer,
                spearman_rho=rho,
                spearman_p_perm_within_examples=0.01,
                rho_ci_lo_cluster_bootstrap=rho - 0.1,
                rho_ci_hi_cluster_bootstrap=rho + 0.1,
                discordant_fraction=0.4,
                kendall_distance_tau_b=0.42,
            )
            rows.append([rec[h] for h in MEM_HEADER])
    for fig in (
        plot_fig4(rows, MEM_HEADER, tmp_path / "fig4.png"),
        plot_gsm8k_kendall(rows, MEM_HEADER, tmp_path / "kendall.png"),
        plot_novel_pairs(
            [
                {
                    "task": "translation-es",
                    "n": 2,
                    "model": "m",
                    "novel": 3,
                    "pairs": 4,
                    "novel_fraction": 0.75,
                }
            ],
            tmp_path / "novel.png",
        ),
    ):
        assert fig.stat().st_size > 5000
