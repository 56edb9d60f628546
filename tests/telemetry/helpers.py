"""In-memory telemetry for tests: a Telemetry with span and metric readers it owns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics.export import Histogram, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.telemetry import Telemetry


@dataclass
class Captured:
    telemetry: Telemetry
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.finished() if s.name == name]
        assert len(found) == 1, f"{name}: {[s.name for s in self.finished()]}"
        return found[0]

    def points(self, name: str) -> list[dict[str, Any]]:
        """Data points of one metric: {"attributes", "value"} or {"attributes", "count", "sum"}."""
        data = self.reader.get_metrics_data()
        out: list[dict[str, Any]] = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != name:
                        continue
                    for p in metric.data.data_points:
                        if isinstance(metric.data, Histogram):
                            out.append({"attributes": dict(p.attributes), "count": p.count, "sum": p.sum})
                        else:
                            out.append({"attributes": dict(p.attributes), "value": p.value})
        return out

    def total(self, name: str, **match: Any) -> float:
        total = 0.0
        for p in self.points(name):
            if all(p["attributes"].get(k) == v for k, v in match.items()):
                total += p.get("value", p.get("count", 0))
        return total

    def dump(self) -> str:
        """Everything exported, as text, for 'no secret anywhere' checks."""
        parts: list[str] = []
        for s in self.finished():
            parts.append(s.to_json())
        data = self.reader.get_metrics_data()
        if data is not None:
            parts.append(data.to_json())
        return "\n".join(parts)

    def close(self) -> None:
        self.telemetry.shutdown()


def capture(*, prometheus: bool = False, **kwargs: Any) -> Captured:
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        span_processors=[SimpleSpanProcessor(spans)], metric_readers=[reader], prometheus=prometheus, **kwargs
    )
    return Captured(telemetry, spans, reader)
