"""OpenTelemetry: one span per pipeline stage and a few counters.

The exporter is off by default and OTLP/HTTP (or console) by configuration. With an exporter, every
stage is a span and ``sample_ratio`` (parent-based) says which fraction of traces is recorded. With none,
no span is made at all (:meth:`Telemetry.span` is a no-op): even unsampled, the SDK's eight spans cost
about 0.1 ms per data request (id generation, sampler, context attach and detach per stage) for nothing
anyone can read. Each request still gets a fresh, valid trace id (:meth:`Telemetry.request_span`), which
its audit event records, so the audit log looks the same either way.
Attributes carry codes and counts only: never a name, an ID number, a phone, a token or a record value
(house style, habit 4). An exception leaving a span marks it failed with the exception's type only: the SDK
would record its message and traceback as a span event, and the message can carry what a request sent.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Status, StatusCode

SERVICE_NAME = "grassroots-gateway"


class _Unrecorded(AbstractContextManager[trace.Span]):
    """A span nobody records: entering yields it, and nothing is attached to the context or ended."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def __enter__(self) -> trace.Span:
        return self._span

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


_NO_STAGE_SPAN = _Unrecorded(trace.INVALID_SPAN)


class _Recorded(AbstractContextManager[trace.Span]):
    """A recorded span whose failure names the exception's type, never its message or traceback."""

    __slots__ = ("_inner", "_span")

    def __init__(self, tracer: trace.Tracer, name: str) -> None:
        self._inner = tracer.start_as_current_span(
            name, record_exception=False, set_status_on_exception=False
        )
        self._span: trace.Span = trace.INVALID_SPAN

    def __enter__(self) -> trace.Span:
        self._span = self._inner.__enter__()
        return self._span

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        if kind is not None and issubclass(kind, Exception):
            self._span.set_status(Status(StatusCode.ERROR, kind.__name__))
        return self._inner.__exit__(kind, exc, tb)


@dataclass
class Telemetry:
    tracer: trace.Tracer
    requests: metrics.Counter
    scope_violations: metrics.Counter
    upstream_failures: metrics.Counter
    catalog_drift: metrics.Counter
    audit_latency_ms: metrics.Histogram
    provider: TracerProvider
    meter_provider: MeterProvider
    #: False when nothing exports spans: then none is made (see the module docstring).
    recording: bool = True
    ids: IdGenerator = field(default_factory=RandomIdGenerator)
    #: Where instruments owned elsewhere are made (the checkpoint's age gauge and failure counter).
    meter: metrics.Meter = field(default_factory=lambda: metrics.NoOpMeter("gateway"))

    def request_span(self, name: str) -> AbstractContextManager[trace.Span]:
        """The root span of one request; unrecorded, it still carries a fresh, valid trace id."""
        if self.recording:
            return _Recorded(self.tracer, name)
        context = trace.SpanContext(
            trace_id=self.ids.generate_trace_id(), span_id=self.ids.generate_span_id(), is_remote=False
        )
        return _Unrecorded(trace.NonRecordingSpan(context))

    def span(self, name: str) -> AbstractContextManager[trace.Span]:
        """A stage's span under the current one (house style §1 stage names)."""
        if self.recording:
            return _Recorded(self.tracer, name)
        return _NO_STAGE_SPAN

    def shutdown(self) -> None:
        self.provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(
    exporter: str = "none", endpoint: str | None = None, sample_ratio: float = 1.0
) -> Telemetry:
    """Build providers local to the app (not the global ones), so several apps in one test don't clash."""
    resource = Resource.create({"service.name": SERVICE_NAME})
    sampler: Sampler = ALWAYS_OFF if exporter == "none" else ParentBased(TraceIdRatioBased(sample_ratio))
    provider = TracerProvider(resource=resource, sampler=sampler)
    readers = []
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter: SpanExporter = (
            OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces") if endpoint else OTLPSpanExporter()
        )
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
        metric_exporter = (
            OTLPMetricExporter(endpoint=f"{endpoint.rstrip('/')}/v1/metrics")
            if endpoint
            else OTLPMetricExporter()
        )
        readers.append(PeriodicExportingMetricReader(metric_exporter))
    elif exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    tracer = provider.get_tracer("gateway.pipeline")
    # No reader, nobody can ever collect a measurement: the no-op meter skips the SDK's per-call
    # attribute handling (about 8 us per data request for its counter and histogram).
    meter = meter_provider.get_meter("gateway") if readers else metrics.NoOpMeter("gateway")
    return Telemetry(
        tracer=tracer,
        requests=meter.create_counter("grassroots.requests", description="data-path requests by outcome"),
        scope_violations=meter.create_counter(
            "grassroots.upstream.scope_violations", description="records an upstream returned outside scope"
        ),
        upstream_failures=meter.create_counter(
            "grassroots.upstream.failures",
            description="failed calls to departmental systems, by system and fault code",
        ),
        catalog_drift=meter.create_counter(
            "grassroots.masking.catalog_drift", description="undeclared personal data found in responses"
        ),
        audit_latency_ms=meter.create_histogram(
            "grassroots.audit.append_ms", unit="ms", description="durable audit append latency"
        ),
        provider=provider,
        meter_provider=meter_provider,
        recording=exporter != "none",
        ids=provider.id_generator,
        meter=meter,
    )
