"""Spans for every pipeline stage, and no personal data, token or key in any exported attribute."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demoworld.world import build_world
from tests.stack import Stack, stack_fixture, stop

STAGES = {
    "data_request",
    "authenticate",
    "authorize",
    "fetch_upstream",
    "recheck_scope",
    "project_fields",
    "mask",
    "audit",
}


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    output = tmp_path_factory.mktemp("otel") / "gateway-stdout.jsonl"
    gen = stack_fixture("sqlite", tmp_path_factory, {"GRASSROOTS_OTEL_EXPORTER": "console"}, output)
    stack = next(gen)
    try:
        yield stack, output
    finally:
        gen.close()


def _spans(text: str) -> list[dict[str, object]]:
    """The console exporter prints one pretty JSON object per span; pick out the span objects."""
    spans: list[dict[str, object]] = []
    decoder = json.JSONDecoder()
    index = 0
    while (start := text.find("{", index)) != -1:
        try:
            obj, end = decoder.raw_decode(text, start)
        except ValueError:
            index = start + 1
            continue
        if isinstance(obj, dict) and "context" in obj and "name" in obj:
            spans.append(obj)
        index = end
    return spans


def test_a_complaint_and_its_evidence_recheck_leave_no_id_number_in_a_span(
    traced: tuple[Stack, Path],
) -> None:
    """The complainant's ID number travels in two request bodies (the complaint, then the re-check once the
    registry is back) and in the lookups to the registry: no span may carry it. Scanned with every other
    span at the end of the next test, once the gateway has flushed them on shutdown."""
    stack, _ = traced
    resident = build_world().residents[0]
    supervision = f"{stack.base_url}/api/v1/supervision"
    headers = {"Authorization": f"Bearer {stack.token('supervisor')}"}
    stack.stop_upstream()
    try:
        body = {"source": "walk_in", "id_number": resident.id_number}
        complaint = httpx.post(f"{supervision}/complaints", json=body, headers=headers, timeout=60)
    finally:
        stack.start_upstream()
    assert complaint.status_code == 201 and complaint.json()["evidence_complete"] is False
    incident = complaint.json()["incident"]["incident_id"]
    body = {"id_number": resident.id_number}
    recheck = httpx.post(
        f"{supervision}/incidents/{incident}/recheck", json=body, headers=headers, timeout=60
    )
    assert recheck.status_code == 200 and recheck.json()["evidence_complete"] is True, recheck.text


def test_each_stage_is_a_span_and_no_attribute_carries_personal_data(traced: tuple[Stack, Path]) -> None:
    stack, output = traced
    token = stack.token("cadre_a")
    resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=20)
    assert resp.status_code == 200
    refused = stack.get(stack.records_url, "cadre_c", scenario="DIBAO_REVIEW")
    assert refused.status_code == 403
    stop(stack.gateway)  # shutdown flushes the batch span processor
    text = output.read_text()
    spans = _spans(text)
    names = {str(span["name"]) for span in spans}
    assert names >= STAGES, names
    world = build_world()
    for resident in world.residents:
        assert resident.id_number not in text
        assert resident.mobile not in text
    assert token not in text
    assert not re.search(r"\b1[3-9]\d{9}\b", text)
    # The trace id recorded in the audit log is the trace the spans belong to.
    event = json.loads(stack.last_events(2)[0]["body"])
    assert any(str(span["context"]["trace_id"]).endswith(event["trace_id"]) for span in spans)  # type: ignore[index]


def test_without_an_exporter_no_span_is_made_yet_each_request_has_its_own_trace_id() -> None:
    from opentelemetry import trace

    from gateway.telemetry import setup_telemetry

    telemetry = setup_telemetry("none")
    trace_ids = set()
    for _ in range(3):
        with telemetry.request_span("data_request") as root:
            assert not root.is_recording()
            context = root.get_span_context()
            assert context.is_valid
            trace_ids.add(context.trace_id)
            with telemetry.span("mask") as stage:
                assert not stage.is_recording()
                stage.set_attribute("grassroots.decision", "allowed")  # accepted, goes nowhere
            assert trace.get_current_span() is trace.INVALID_SPAN  # nothing attached to the context
    assert len(trace_ids) == 3
    # No reader either: the counters are the API's no-ops (accepting the same calls).
    from opentelemetry import metrics

    assert isinstance(telemetry.requests, metrics.NoOpCounter)
    telemetry.requests.add(1, {"dataset": "residents", "outcome": "allowed"})
    telemetry.audit_latency_ms.record(1.0)
    telemetry.shutdown()


def test_with_an_exporter_stages_are_real_spans_under_the_request() -> None:
    from gateway.telemetry import setup_telemetry

    telemetry = setup_telemetry("console", sample_ratio=1.0)
    try:
        with telemetry.request_span("data_request") as root, telemetry.span("mask") as stage:
            assert root.is_recording() and stage.is_recording()
            assert stage.get_span_context().trace_id == root.get_span_context().trace_id
            assert stage.get_span_context().span_id != root.get_span_context().span_id
    finally:
        telemetry.provider.shutdown()
        telemetry.meter_provider.shutdown()


def test_an_exception_leaving_a_span_records_its_type_never_its_message() -> None:
    """OpenTelemetry's default puts the message and the stack trace into the span; a library's message
    may repeat the value it could not parse (a phone number), and spans leave the machine."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from gateway.telemetry import setup_telemetry

    telemetry = setup_telemetry("console", sample_ratio=1.0)
    exporter = InMemorySpanExporter()
    telemetry.provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with pytest.raises(ValueError), telemetry.request_span("data_request"), telemetry.span("mask"):
            int("13812345678x")
    finally:
        telemetry.provider.shutdown()
        telemetry.meter_provider.shutdown()
    spans = exporter.get_finished_spans()
    assert {s.name for s in spans} == {"data_request", "mask"}
    for span in spans:
        assert span.status.status_code is StatusCode.ERROR and span.status.description == "ValueError"
        assert not span.events
        assert "13812345678" not in span.to_json()


def test_what_the_data_path_logs_of_an_unexpected_error_is_its_type_and_place_only() -> None:
    from gateway.errors import where_raised

    try:
        int("13812345678x")
    except ValueError:
        where = where_raised()
    assert where.startswith("ValueError at test_telemetry.py:") and "13812345678" not in where


def test_fastapis_own_telemetry_stays_off_even_with_global_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    # With a process-wide OpenTelemetry provider (auto-instrumentation, say), FastAPI's built-in bridge
    # would export its own spans, metrics and exception logs, messages and tracebacks included, around
    # every request: the gateway's app keeps it off, so only gateway.telemetry's spans exist.
    from opentelemetry import _logs, metrics, trace
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from gateway.app import create_app
    from gateway.settings import Settings

    monkeypatch.setattr(trace, "get_tracer_provider", TracerProvider)
    monkeypatch.setattr(metrics, "get_meter_provider", MeterProvider)
    monkeypatch.setattr(_logs, "get_logger_provider", LoggerProvider)
    app = create_app(Settings(dev_idp_enabled=False, oidc_issuer="https://sso.example.invalid"))
    assert not app._native_telemetry.enabled()
