"""Transports: operations are plain values; the in-process and the HTTP error mappings agree."""

from __future__ import annotations

from typing import Any

import pytest

from clients import Client, InvalidQueryError
from clients.errors import PROBLEM_TYPE_PREFIX, error_from_response
from clients.local import ENGINE_ERRORS as CLIENT_TABLE
from clients.transports import BaseTransport, Operation
from service.engine import errors as engine
from service.errors import ENGINE_ERRORS as SERVICE_TABLE
from service.errors import problem_body


def test_operation_path_fills_and_quotes_the_route() -> None:
    op = Operation("GET", "/v1/indexes/{name}/documents/{doc_id}", path_params={"name": "a/b c", "doc_id": 7})
    assert op.path() == "/v1/indexes/a%2Fb%20c/documents/7"
    assert Operation("POST", "/v1/count", {"index": "x", "queries": []}).path() == "/v1/count"


@pytest.mark.parametrize(
    "engine_cls", [engine.DocumentNotFound, engine.QueryError, engine.BudgetExceeded, engine.IndexUnavailable]
)
def test_in_process_errors_are_the_errors_the_server_answers(engine_cls: type[engine.EngineError]) -> None:
    """For each engine exception: the client class the in-process table picks equals the class the
    service's problem+json answer becomes, with the same status, type and title."""
    err = engine_cls("what went wrong")
    service_error = next(cls for e, cls in SERVICE_TABLE if isinstance(err, e))("what went wrong")
    over_http = error_from_response(
        service_error.status,
        "application/problem+json",
        problem_body(service_error.status, service_error.slug, service_error.title, service_error.detail),
    )
    in_process = next(cls for e, cls in CLIENT_TABLE if isinstance(err, e)).from_detail("what went wrong")
    assert type(in_process) is type(over_http)
    assert (in_process.status, in_process.type, in_process.title, in_process.detail) == (
        over_http.status,
        over_http.type,
        over_http.title,
        over_http.detail,
    )
    assert in_process.type == PROBLEM_TYPE_PREFIX + service_error.slug


def test_both_tables_list_the_engine_classes_most_specific_first() -> None:
    for table in (CLIENT_TABLE, SERVICE_TABLE):
        classes = [e for e, _ in table]
        for i, earlier in enumerate(classes):
            assert not any(issubclass(later, earlier) and later is not earlier for later in classes[i + 1 :])
    assert [e for e, _ in CLIENT_TABLE][:-1] == [e for e, _ in SERVICE_TABLE]


class Canned(BaseTransport):
    """Answers each operation from a function; records them."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.ops: list[Operation] = []

    def handle(self, op: Operation) -> Any:
        self.ops.append(op)
        return self.answer(op)


def test_a_client_runs_on_any_transport() -> None:
    def answer(op: Operation) -> Any:
        if op.route == "/v1/health":
            return {"status": "ok", "version": "0", "indexes": ["x"], "limits": {"max_batch": 2}}
        if op.route == "/v1/count":
            if any(q == "bad" for q in op.body["queries"]):
                raise InvalidQueryError.from_detail("queries[0]: bad")
            return {"index": op.body["index"], "results": [len(q) for q in op.body["queries"]]}
        raise AssertionError(op)

    transport = Canned(answer)
    with Client(index="x", transport=transport) as client:
        assert client.count(["a", "bb", "ccc"]) == [1, 2, 3]  # two batches of the server's max_batch 2
        with pytest.raises(InvalidQueryError):
            client.count(["bad"])
    assert [op.route for op in transport.ops] == ["/v1/health", "/v1/count", "/v1/count", "/v1/count"]
