"""A pull MetricReader that renders the Prometheus text format from a private registry.

The OpenTelemetry Prometheus exporter registers itself in prometheus_client's global
REGISTRY; this reader keeps its own `CollectorRegistry`, so several apps (tests) can live in
one process. Names follow the OpenTelemetry-to-Prometheus compatibility rules: dots become
underscores, the unit becomes a suffix (`_seconds`), counters end in `_total`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    HistogramDataPoint,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    Sum,
)
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector

CONTENT_TYPE = CONTENT_TYPE_LATEST

_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "USD": "usd", "1": "ratio"}


def metric_name(name: str, unit: str) -> str:
    base = _INVALID.sub("_", name)
    suffix = _UNIT_SUFFIX.get(unit, "")
    if unit.startswith("{") or not suffix:
        return base
    return base if base.endswith("_" + suffix) else f"{base}_{suffix}"


def label_name(key: str) -> str:
    name = _INVALID.sub("_", key)
    return f"_{name}" if name[:1].isdigit() else name


def _label_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _labels(points: Sequence[NumberDataPoint | HistogramDataPoint]) -> list[str]:
    keys: dict[str, None] = {}
    for point in points:
        for key in point.attributes or {}:
            keys.setdefault(key, None)
    return list(keys)


def _values(point: NumberDataPoint | HistogramDataPoint, keys: list[str]) -> list[str]:
    attributes = point.attributes or {}
    return [_label_value(attributes[k]) if k in attributes else "" for k in keys]


def families(data: MetricsData | None) -> Iterator[Metric]:
    """Prometheus metric families for one OpenTelemetry collection (cumulative temporality)."""
    if data is None:
        return
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                yield from _convert(metric.name, metric.unit or "", metric.description or "", metric.data)


def _convert(name: str, unit: str, doc: str, data: Any) -> Iterable[Metric]:
    points = list(data.data_points)
    keys = _labels(points)
    labels = [label_name(k) for k in keys]
    prom = metric_name(name, unit)
    if isinstance(data, Histogram):
        family = HistogramMetricFamily(prom, doc, labels=labels)
        for point in points:
            assert isinstance(point, HistogramDataPoint)
            buckets: list[tuple[str, float]] = []
            running = 0
            for bound, count in zip(point.explicit_bounds, point.bucket_counts, strict=False):
                running += count
                buckets.append((_float_text(bound), running))
            buckets.append(("+Inf", point.count))
            family.add_metric(_values(point, keys), buckets, point.sum)
        return [family]
    if isinstance(data, Sum) and data.is_monotonic:
        counter = CounterMetricFamily(prom.removesuffix("_total"), doc, labels=labels)
        for point in points:
            counter.add_metric(_values(point, keys), point.value)
        return [counter]
    if isinstance(data, Sum | Gauge):
        gauge = GaugeMetricFamily(prom, doc, labels=labels)
        for point in points:
            gauge.add_metric(_values(point, keys), point.value)
        return [gauge]
    return []


def _float_text(value: float) -> str:
    return repr(float(value))


class PrometheusReader(MetricReader):
    """Collects on demand (each scrape) and renders the text exposition format."""

    def __init__(self, *, process_metrics: bool = True) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._data: MetricsData | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        if process_metrics:
            ProcessCollector(registry=self.registry)

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        self._data = metrics_data

    def snapshot(self) -> MetricsData | None:
        with self._lock:
            self.collect()
            return self._data

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._data = None


class _Collector:
    def __init__(self, reader: PrometheusReader) -> None:
        self._reader = reader

    def collect(self) -> Iterator[Metric]:
        yield from families(self._reader.snapshot())
