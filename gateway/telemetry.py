"""OpenTelemetry: one span per pipeline stage and a few counters.

The exporter is off by default and OTLP/HTTP (or console) by configuration. Spans are always started, so
the code path and the trace id each audit event records are the same either way; with no exporter the
sampler records none of them (a span nobody exports is pure cost: about a tenth of a request's CPU on the
data path), and with one, ``sample_ratio`` (parent-based) says which fraction of traces is recorded.
Attributes carry codes and counts only: never a name, an ID number, a phone, a token or a record value
(house style, habit 4).
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler, TraceIdRatioBased

SERVICE_NAME = "grassroots-gateway"


@dataclass
class Telemetry:
    tracer: trace.Tracer
    requests: metrics.Counter
    scope_violations: metrics.Counter
    catalog_drift: metrics.Counter
    audit_latency_ms: metrics.Histogram
    provider: TracerProvider
    meter_provider: MeterProvider

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
    meter = meter_provider.get_meter("gateway")
    return Telemetry(
        tracer=tracer,
        requests=meter.create_counter("grassroots.requests", description="data-path requests by outcome"),
        scope_violations=meter.create_counter(
            "grassroots.upstream.scope_violations", description="records an upstream returned outside scope"
        ),
        catalog_drift=meter.create_counter(
            "grassroots.masking.catalog_drift", description="undeclared personal data found in responses"
        ),
        audit_latency_ms=meter.create_histogram(
            "grassroots.audit.append_ms", unit="ms", description="durable audit append latency"
        ),
        provider=provider,
        meter_provider=meter_provider,
    )
