"""∞-gram baseline (Eq. 5): zero-probability tokens left out, all-zero is None (reported), the context
and continuation split keeps the space with the continuation, and failures are errors."""

from __future__ import annotations

import math

import pytest

from clients.eval.infgram import InfgramError, infgram_log_prob, infgram_scores, split_for_infgram
from tests.unit.clients.test_eval_fakes import BruteForceBackend


def test_eq5_in_log_space() -> None:
    assert infgram_log_prob([0.5, 0.0, 0.25]) == pytest.approx(math.log(0.5) + math.log(0.25))
    assert infgram_log_prob([0.0, 0.0]) is None
    assert infgram_log_prob([1.0]) == 0.0


def test_split_moves_the_space_into_the_continuation() -> None:
    prompt, y = "Question: q\nAnswer: ", "It is Sunset Boulevard, yes"
    [(ctx, cont)] = split_for_infgram(prompt, y, [(6, 12), (13, 22)])
    assert ctx == "Question: q\nAnswer: It is" and cont == " Sunset Boulevard"
    [(ctx, cont)] = split_for_infgram(prompt, "Sunset", [(0, 6)])
    assert (ctx, cont) == ("Question: q\nAnswer:", " Sunset")
    [(ctx, cont)] = split_for_infgram("x" * 50, "(Sunset)", [(1, 7)], max_context_chars=10)
    assert ctx == "x" * 9 + "(" and cont == "Sunset"


def test_stopwords_between_words_are_context_not_scored() -> None:
    """With stopwords removed, s^y = "cat mat" is located at the words cat and mat of "the cat on the mat":
    the LLM scores only those words' tokens, so the ∞-gram must too (it scored "cat on the mat")."""
    from clients.eval.infgram import combine_runs
    from clients.eval.llm import locate
    from clients.eval.pairs import side_options

    y = "the cat sat on the mat"
    _, y_opts = side_options("gsm8k", 2)  # n = 2: stopwords removed
    spans = locate(y, "sat mat", y_opts)
    items = split_for_infgram("Q: ", y, spans)
    assert [c for _, c in items] == [" sat", " mat"]
    assert items[1][0] == "Q: the cat sat on the"  # the stopwords are context
    assert combine_runs([None, -1.5]) == -1.5 and combine_runs([None, None]) is None
    assert combine_runs([-1.0, -2.0]) == -3.0
    # punctuation between two located words is not scored either (the LLM labels word characters)
    assert [c for _, c in split_for_infgram("", "campbell-bannerman", [(0, 8), (9, 18)])] == [
        "campbell",
        "bannerman",
    ]


def test_scores_through_the_backend_and_errors() -> None:
    backend = BruteForceBackend(["the sunset boulevard musical"])
    got = infgram_scores(backend, [("ctx", " sunset boulevard"), ("ctx", " nowhere words")], batch_size=1)
    assert got[0] == pytest.approx(math.log(1 / 7) + math.log(1 / 10)) and got[1] is None
    assert backend.calls == [("infgram_prob", 1), ("infgram_prob", 1)]

    class Failing:
        def infgram_prob(self, items, *, space="auto"):
            raise TimeoutError("budget exceeded")

    with pytest.raises(InfgramError, match="TimeoutError: budget exceeded"):
        infgram_scores(Failing(), [("a", "b")])

    class Bad:
        def __init__(self, answer):
            self.answer = answer

        def infgram_prob(self, items, *, space="auto"):
            return self.answer

    for answer, msg in [
        ([], "0 results"),
        ([{"tokens": [{"prob": 1.5}]}], r"not in \[0, 1\]"),
        ([{"tokens": []}], "no tokens"),
        ([{"x": 1}], "without tokens"),
    ]:
        with pytest.raises(InfgramError, match=msg):
            infgram_scores(Bad(answer), [("a", "b")])


def test_real_engine_infgram_through_local_client(build_small_index) -> None:
    from clients.client import LocalClient

    index = build_small_index(["the garbage collector runs often", "a garbage collector pauses", "nothing"])
    client = LocalClient(index)
    lp = infgram_scores(client, [("the", " garbage collector"), ("zzz qqq", " garbage")])
    res = client.infgram_prob([("the", " garbage collector")], space="exact")[0]
    assert lp[0] == pytest.approx(sum(math.log(t.prob) for t in res.tokens if t.prob > 0))
    assert lp[1] is not None and lp[1] < 0
