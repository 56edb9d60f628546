"""Exporters chosen by GATEWAY_OTEL_EXPORTER: none, console (stdout) or OTLP over HTTP/protobuf.

`GATEWAY_OTEL_ENDPOINT` is a base URL (like OTEL_EXPORTER_OTLP_ENDPOINT): `/v1/traces` and
`/v1/metrics` are appended. When it is empty the exporter reads the standard OTEL_EXPORTER_OTLP_*
variables (endpoint, headers, timeout, certificates) and defaults to http://localhost:4318.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

if TYPE_CHECKING:
    from gateway.settings import Settings


def _endpoint(settings: Settings, signal: str) -> str | None:
    base = settings.otel_endpoint.strip()
    return f"{base.rstrip('/')}/v1/{signal}" if base else None


def exporter_span_processors(settings: Settings) -> list[SpanProcessor]:
    if settings.otel_exporter == "console":
        return [BatchSpanProcessor(ConsoleSpanExporter())]
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return [BatchSpanProcessor(OTLPSpanExporter(endpoint=_endpoint(settings, "traces")))]
    return []


def exporter_readers(settings: Settings) -> list[MetricReader]:
    interval_ms = settings.otel_metric_interval_s * 1000
    if settings.otel_exporter == "console":
        return [PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=interval_ms)]
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(endpoint=_endpoint(settings, "metrics"))
        return [PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)]
    return []
