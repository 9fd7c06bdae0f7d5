"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis): whatever a client
sends, the service answers without a 5xx, with the documented status codes and content types, and with
bodies that match the response schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402

from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402


@pytest.fixture(scope="module")
def fuzz_app(sample_index: Path):
    # Small limits so that generated batches also exercise the over-limit answers.
    app = create_app(
        Settings(indexes={"sample": sample_index}, max_batch=64, max_query_tokens=64, time_budget_s=5.0)
    )
    with TestClient(app):  # runs the lifespan: the index is opened and the kernels warmed up
        yield app


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


def _operations(api_schema):
    return [result.ok() for result in api_schema.get_all_operations()]


def test_every_endpoint_survives_generated_requests(api_schema) -> None:
    checks = [
        schemathesis.checks.not_a_server_error,
        schemathesis.checks.status_code_conformance,
        schemathesis.checks.content_type_conformance,
        schemathesis.checks.response_schema_conformance,
    ]
    operations = _operations(api_schema)
    assert len(operations) >= 10, [op.label for op in operations]
    failures = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def run(case) -> None:
            case.call_and_validate(checks=checks)

        try:
            run()
        except (Exception, FailureGroup) as err:  # collect every operation's failure, report them all
            failures[operation.label] = str(err)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
