"""One definition of each answer shape: the engine's result dataclasses, the shared bases of
:mod:`taskgram.api`, the service's response models and the clients' models have the same fields."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from pydantic import BaseModel

import clients.models as client_models
import service.engine.results as engine_results
import service.engine.trace as engine_trace
import service.schemas as schemas
import taskgram.api as api
from service.engine import COUNT_UNITS as ENGINE_COUNT_UNITS
from service.engine import SPACE_POLICIES as ENGINE_SPACE_POLICIES

# engine dataclass, shared base, service response model, client model
SHAPES = [
    (engine_results.TokenProb, api.TokenProbBase, schemas.TokenProbModel, client_models.TokenProb),
    (
        engine_results.NextTokenDistribution,
        api.NextTokenDistributionBase,
        schemas.NextTokenDistributionModel,
        client_models.NextTokenDistribution,
    ),
    (engine_results.ProbResult, api.ProbResultBase, schemas.ProbResultModel, client_models.ProbResult),
    (
        engine_results.InfgramToken,
        api.InfgramTokenBase,
        schemas.InfgramTokenModel,
        client_models.InfgramToken,
    ),
    (
        engine_results.InfgramResult,
        api.InfgramResultBase,
        schemas.InfgramResultModel,
        client_models.InfgramResult,
    ),
    (engine_results.DocumentHit, api.DocumentHitBase, schemas.DocumentHitModel, client_models.DocumentHit),
    (
        engine_results.DocumentsResult,
        api.DocumentsResultBase,
        schemas.DocumentsResultModel,
        client_models.DocumentsResult,
    ),
    (engine_results.Document, api.DocumentBase, schemas.DocumentModel, client_models.Document),
    (
        engine_trace.TraceDocument,
        api.TraceDocumentBase,
        schemas.TraceDocumentModel,
        client_models.TraceDocument,
    ),
    (engine_trace.TraceSpan, api.TraceSpanBase, schemas.TraceSpanModel, client_models.TraceSpan),
    (engine_trace.TraceResult, api.TraceResultBase, schemas.TraceResultModel, client_models.TraceResult),
]


@pytest.mark.parametrize(
    ("engine_cls", "base", "wire", "client"), SHAPES, ids=[s[0].__name__ for s in SHAPES]
)
def test_wire_types_have_the_engine_fields(
    engine_cls: type, base: type[BaseModel], wire: type[BaseModel], client: type[BaseModel]
) -> None:
    fields = {f.name: f for f in dataclasses.fields(engine_cls)}
    assert set(base.model_fields) == set(fields)
    assert issubclass(wire, base) and issubclass(client, base)
    extra = {"index"} if wire is schemas.DocumentModel else set()  # GET .../documents/{id} names its index
    assert set(wire.model_fields) == set(fields) | extra
    assert set(client.model_fields) == set(fields)
    for name, field in base.model_fields.items():  # a field the engine defaults is optional on the wire too
        engine_default = fields[name].default is not dataclasses.MISSING or (
            fields[name].default_factory is not dataclasses.MISSING
        )
        assert field.is_required() is not engine_default, name


def test_an_engine_result_parses_as_the_client_model_and_back() -> None:
    hit = engine_results.DocumentHit(doc_id=1, shard=0, metadata={"a": 1}, text="x", spans=[(0, 1, 0)])
    result = engine_results.DocumentsResult(total=3, docs=[hit], offset=0, sample=False)
    parsed = client_models.DocumentsResult.model_validate(dataclasses.asdict(result))
    assert parsed.model_dump() == {**dataclasses.asdict(result), "docs": [dataclasses.asdict(hit)]}
    schemas.DocumentsResultModel.model_validate(dataclasses.asdict(result))


def test_an_engine_trace_parses_as_the_client_model_and_back() -> None:
    doc = engine_trace.TraceDocument(
        doc_id=4,
        shard=1,
        metadata={"n": 4},
        position=7,
        text="a b c",
        span=(2, 3),
        token_ids=[1, 2, 3],
        token_span=(1, 2),
        snippet_start=6,
        doc_len=9,
    )
    span = engine_trace.TraceSpan(
        start=0,
        end=1,
        length=1,
        count=3,
        char_start=0,
        char_end=1,
        text="b",
        rank=1,
        unigram_logprob=-2.5,
        documents=[doc],
    )
    result = engine_trace.TraceResult(
        token_ids=[2], text="b", spans=[span], n_tokens=1, span_density=1.0, coverage=1.0, longest=1
    )
    wire = dataclasses.asdict(result)
    assert client_models.TraceResult.model_validate(wire).model_dump() == wire
    assert schemas.TraceResultModel.model_validate(wire).model_dump() == wire


def test_option_vocabularies_are_defined_once() -> None:
    assert ENGINE_SPACE_POLICIES is api.SPACE_POLICIES and ENGINE_COUNT_UNITS is api.COUNT_UNITS
    request_space = schemas.CountRequest.model_fields["space"].annotation
    assert set(typing.get_args(typing.get_args(request_space)[0])) == set(api.SPACE_POLICIES)
    assert typing.get_args(schemas.CooccurrenceRequest.model_fields["unit"].annotation) == api.COUNT_UNITS
    request_boundary = schemas.CountRequest.model_fields["boundary"].annotation
    assert typing.get_args(request_boundary) == api.BOUNDARIES


def test_every_batch_answer_is_the_one_envelope() -> None:
    envelopes = [
        schemas.IntResults,
        schemas.NtdResults,
        schemas.ProbResults,
        schemas.InfgramResults,
        schemas.DocumentsResults,
        schemas.TokenizeResults,
        schemas.TraceResults,
    ]
    for model in envelopes:
        assert issubclass(model, api.Results) and set(model.model_fields) == {"index", "results"}


def test_the_windowed_endpoint_documents_its_rarest_clause_anchor(tmp_path) -> None:
    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(indexes={"x": str(tmp_path)}, access_log=False), indexes={})
    operation = app.openapi()["paths"]["/v1/cooccurrence/windowed"]["post"]
    assert "rarest clause" in operation["summary"] and "first phrase" not in operation["summary"]
    assert "rarest clause" in (schemas.WindowedCooccurrenceRequest.__doc__ or "")


def test_the_engine_names_the_next_token_distribution_as_the_api_does(sample_index) -> None:
    """``ntd`` everywhere (``POST /v1/ntd``, the clients, the engine); the engine's old name still works,
    with a DeprecationWarning."""
    from service.engine import Index

    index = Index.open(sample_index)
    try:
        with pytest.warns(DeprecationWarning, match="Index.ntd"):
            old = index.next_token_distribution(["garbage"], top_k=2)
        assert old == index.ntd(["garbage"], top_k=2)
    finally:
        index.close()
