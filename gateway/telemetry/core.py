"""`Telemetry`: the tracer, meter and instruments of one app, built from Settings.

No global OpenTelemetry state is set: the TracerProvider and MeterProvider belong to this
object (several apps can live side by side in one process, as tests do). With the default
settings (no exporter, no metrics) it uses the API's no-op meter and creates no spans; it
still carries an incoming W3C `traceparent` through the request (logs and Celery headers).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from gateway.telemetry import names as n
from gateway.telemetry.prometheus import PrometheusReader
from gateway.telemetry.redact import clean_attributes, scrub

if TYPE_CHECKING:
    from gateway.settings import Settings

log = logging.getLogger(__name__)

SCOPE = "gateway"
EXPORTERS = ("none", "console", "otlp")
METRICS = ("none", "prometheus")

# The request scope travels in the OpenTelemetry context (a contextvar): set by the HTTP
# middleware, read by annotate_request() and by the engine instrumentation.
_REQUEST_KEY = otel_context.create_key("gateway.request")

EngineStats = Callable[[], Mapping[str, float | int]]


class RequestScope:
    """The server span of one HTTP request and the attributes annotated on it."""

    __slots__ = ("span", "attributes")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.attributes: dict[str, Any] = {}


def current_request(ctx: otel_context.Context | None = None) -> RequestScope | None:
    """The request scope of the current (or given) context; None outside an HTTP request."""
    scope = otel_context.get_value(_REQUEST_KEY, ctx)
    return scope if isinstance(scope, RequestScope) else None


def with_request(scope: RequestScope, ctx: otel_context.Context | None = None) -> otel_context.Context:
    return otel_context.set_value(_REQUEST_KEY, scope, ctx)


def _attrs(values: Mapping[str, Any]) -> dict[str, Any]:
    return clean_attributes({n.attribute_name(k): v for k, v in values.items()})


class Telemetry:
    def __init__(
        self,
        *,
        service_name: str = "deepseek-gateway",
        genai_system: str = "deepseek",
        span_processors: Sequence[SpanProcessor] = (),
        metric_readers: Sequence[MetricReader] = (),
        prometheus: bool = False,
        resource_attributes: Mapping[str, str] | None = None,
        access_log: bool = False,
    ) -> None:
        resource = Resource.create({"service.name": service_name, **(resource_attributes or {})})
        self.genai_system = genai_system
        # One structured line per request from the middleware (with trace ids), instead of
        # uvicorn's access line, which is written outside the request's context.
        self.access_log = access_log
        self._tracer_provider: TracerProvider | None = None
        if span_processors:
            self._tracer_provider = TracerProvider(resource=resource)
            for processor in span_processors:
                self._tracer_provider.add_span_processor(processor)
            self.tracer: trace.Tracer = self._tracer_provider.get_tracer(SCOPE)
        else:
            self.tracer = trace.NoOpTracer()
        self.prometheus: PrometheusReader | None = PrometheusReader() if prometheus else None
        readers = [*metric_readers, *([self.prometheus] if self.prometheus else [])]
        self._meter_provider: MeterProvider | None = None
        if readers:
            self._meter_provider = MeterProvider(metric_readers=readers, resource=resource)
            meter: metrics.Meter = self._meter_provider.get_meter(SCOPE)
        else:
            meter = metrics.NoOpMeter(SCOPE)
        self._engine_sources: list[EngineStats] = []
        self._build_instruments(meter)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        span_processors: Sequence[SpanProcessor] = (),
        metric_readers: Sequence[MetricReader] = (),
    ) -> Telemetry:
        """Exporters from GATEWAY_OTEL_EXPORTER / GATEWAY_METRICS; tests add in-memory ones."""
        from gateway.telemetry.exporters import exporter_readers, exporter_span_processors

        return cls(
            service_name=settings.otel_service_name,
            span_processors=[*exporter_span_processors(settings), *span_processors],
            metric_readers=[*exporter_readers(settings), *metric_readers],
            prometheus=settings.metrics == "prometheus",
            access_log=structured_access_log(settings),
        )

    @classmethod
    def disabled(cls) -> Telemetry:
        return cls()

    @property
    def tracing(self) -> bool:
        """True when spans are recorded (an exporter is configured)."""
        return self._tracer_provider is not None

    def shutdown(self) -> None:
        """Flush and stop exporters (blocking: call it in a thread from async code)."""
        for provider in (self._tracer_provider, self._meter_provider):
            if provider is None:
                continue
            try:
                provider.shutdown()
            except Exception:  # shutting down must never fail the app's shutdown
                log.warning("telemetry shutdown failed", exc_info=True)

    def force_flush(self) -> None:
        if self._tracer_provider is not None:
            self._tracer_provider.force_flush()
        if self._meter_provider is not None:
            self._meter_provider.force_flush()

    def render_prometheus(self) -> bytes | None:
        return self.prometheus.render() if self.prometheus is not None else None

    # -- spans -------------------------------------------------------------------------------
    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[trace.Span]:
        """A child span of the current span (the HTTP server span inside a request).

        Use it around synchronous or awaited work in one task; do not hold it across the
        `yield` of an async generator. Exceptions are recorded with key material scrubbed.
        """
        if self._tracer_provider is None:
            yield trace.INVALID_SPAN
            return
        with self.tracer.start_as_current_span(
            name, attributes=_attrs(attributes), record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                yield span
            except BaseException as exc:
                record_error(span, exc)
                raise

    def annotate_request(self, **attributes: Any) -> None:
        """Set attributes on the request's server span (and remember them for metric labels).

        Short names map to semantic-convention names (see names.ALIASES): model ->
        gen_ai.request.model, tenant_id -> gateway.tenant_id, cost_usd -> gateway.cost_usd...
        Annotating `model` also sets gen_ai.operation.name="chat" and gen_ai.system.
        """
        values = _attrs(attributes)
        if n.REQUEST_MODEL in values:
            values.setdefault(n.OPERATION, "chat")
            values.setdefault(n.SYSTEM, self.genai_system)
        scope = current_request()
        if scope is not None:
            scope.attributes.update(values)
            span = scope.span
        else:
            span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(values)

    # -- metrics -----------------------------------------------------------------------------
    def _build_instruments(self, meter: metrics.Meter) -> None:
        self.completions = meter.create_counter(
            "gateway.completions", "{request}", "Chat completions by tenant, variant, mode and outcome"
        )
        self.request_duration = meter.create_histogram(
            "gen_ai.server.request.duration",
            "s",
            "Time from request accepted to completion recorded",
            explicit_bucket_boundaries_advisory=n.LATENCY_BUCKETS_S,
        )
        self.ttft = meter.create_histogram(
            "gen_ai.server.time_to_first_token",
            "s",
            "Time from engine submit to the first token",
            explicit_bucket_boundaries_advisory=n.TTFT_BUCKETS_S,
        )
        self.tpot = meter.create_histogram(
            "gen_ai.server.time_per_output_token",
            "s",
            "Decode time per output token after the first",
            explicit_bucket_boundaries_advisory=n.TPOT_BUCKETS_S,
        )
        self.tokens = meter.create_counter(
            "gateway.tokens",
            "{token}",
            "Tokens by class: cache_hit, cache_miss (input), output; reasoning is part of output",
        )
        self.cost = meter.create_counter("gateway.cost", "USD", "Cost of completions at list price")
        self.cache_hit_ratio = meter.create_histogram(
            "gateway.prompt.cache_hit_ratio",
            "1",
            "Share of prompt tokens served from the prefix cache",
            explicit_bucket_boundaries_advisory=n.RATIO_BUCKETS,
        )
        self.rejections = meter.create_counter(
            "gateway.rejections",
            "{request}",
            "Requests refused: budget, rate_limit, policy, compliance, auth",
        )
        self.http_duration = meter.create_histogram(
            "http.server.request.duration",
            "s",
            "HTTP server request duration",
            explicit_bucket_boundaries_advisory=n.HTTP_BUCKETS_S,
        )
        self.http_active = meter.create_up_down_counter(
            "http.server.active_requests", "{request}", "HTTP requests in flight"
        )
        for key, unit, doc in (
            ("queue_depth", "{sequence}", "Sequences waiting for the engine"),
            ("running", "{sequence}", "Sequences the engine is decoding"),
            ("kv_blocks_used", "{block}", "KV-cache blocks in use"),
            ("kv_blocks_total", "{block}", "KV-cache blocks in the pool"),
        ):
            meter.create_observable_gauge(
                "gateway.engine." + key, callbacks=[self._engine_callback(key)], unit=unit, description=doc
            )

    def observe_engine(self, stats: EngineStats) -> None:
        """Register a callable returning {"queue_depth", "running", "kv_blocks_used",
        "kv_blocks_total"} (any subset); it is called at each metric collection."""
        self._engine_sources.append(stats)

    def _engine_callback(self, key: str) -> Callable[[CallbackOptions], Iterator[Observation]]:
        def callback(options: CallbackOptions) -> Iterator[Observation]:
            for index, source in enumerate(self._engine_sources):
                try:
                    value = source().get(key)
                except Exception:  # a failing source must not break the scrape
                    log.debug("engine stats source failed", exc_info=True)
                    continue
                if value is not None:
                    yield Observation(value, {"gateway.engine": str(index)})

        return callback

    def record_completion(
        self,
        *,
        tenant_id: str,
        variant: str,
        mode: str,
        model: str,
        status: str,
        finish_reason: str | None,
        latency_s: float,
        input_tokens: int,
        cache_hit_tokens: int,
        cache_miss_tokens: int,
        output_tokens: int,
        reasoning_tokens: int = 0,
        cost_usd: Decimal | None = None,
    ) -> None:
        """One completion, however it ended (status completed|cancelled|failed)."""
        base = {n.TENANT: tenant_id, n.VARIANT: variant, n.MODE: mode}
        self.completions.add(
            1, {**base, n.REQUEST_MODEL: model, n.STATUS: status, n.FINISH_REASON: finish_reason or "none"}
        )
        self.request_duration.record(
            latency_s,
            {n.OPERATION: "chat", n.REQUEST_MODEL: model, n.VARIANT: variant, n.MODE: mode, n.STATUS: status},
        )
        for token_class, count in (
            ("cache_hit", cache_hit_tokens),
            ("cache_miss", cache_miss_tokens),
            ("output", output_tokens),
            ("reasoning", reasoning_tokens),
        ):
            if count:
                self.tokens.add(count, {**base, n.TOKEN_CLASS: token_class})
        if input_tokens > 0:
            self.cache_hit_ratio.record(cache_hit_tokens / input_tokens, {n.VARIANT: variant, n.MODE: mode})
        if cost_usd is not None and cost_usd > 0:
            self.cost.add(float(cost_usd), {n.TENANT: tenant_id, n.VARIANT: variant})
        self.annotate_request(
            tenant_id=tenant_id,
            variant=variant,
            mode=mode,
            cost_usd=cost_usd,
            status=status,
        )

    def record_rejection(self, kind: str, tenant_id: str | None = None) -> None:
        """Count a refused request. Errors that reach the HTTP edge are counted there
        (gateway.telemetry.rejections); call this only for a refusal that raises nothing.
        Without `tenant_id`, the tenant annotated on the current request is used."""
        kind = kind if kind in n.REJECTION_KINDS else "other"
        scope = current_request()
        if tenant_id is None and scope is not None:
            tenant_id = scope.attributes.get(n.TENANT)
        self.rejections.add(1, {n.REJECTION_KIND: kind, n.TENANT: tenant_id or "unknown"})
        if scope is not None and scope.span.is_recording():
            scope.span.set_attribute(n.REJECTION_KIND, kind)


def structured_access_log(settings: Settings) -> bool:
    """JSON logs get the middleware's access line (with trace ids); text logs keep uvicorn's."""
    return settings.access_log and settings.log_format == "json"


def record_error(span: trace.Span, exc: BaseException) -> None:
    """Record an exception on a span with key material scrubbed from message and traceback."""
    if not span.is_recording():
        return
    if not isinstance(exc, Exception):  # cancelled, client gone, shutdown: not an error
        span.set_attribute("gateway.cancelled", True)
        return
    span.record_exception(
        exc,
        attributes={
            "exception.message": scrub(str(exc)),
            "exception.stacktrace": scrub("".join(traceback.format_exception(exc))),
        },
    )
    span.set_status(trace.Status(trace.StatusCode.ERROR, scrub(f"{type(exc).__name__}: {exc}")[:200]))
