"""W3C trace context for background jobs: a task runs inside the trace of whoever queued it.

The publisher injects `traceparent`/`tracestate` into the Celery message headers; the worker
extracts them and runs the task in that context, so the task's spans and log lines carry the
request's trace id. Only the OpenTelemetry API is used here (billing does not import the
gateway); without an SDK configured in the worker the context is still carried to logs.

    install_celery_propagation()            # once per process, publisher and worker
    app.tasks["billing.x"].delay(...)       # headers injected from the current context

or by hand: `task.apply_async(kwargs=..., headers=inject_headers())`, and in a task
`with attached(headers): ...`. In-process (embedded mode) calls need nothing: the context
follows the call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
TRACE_HEADERS = ("traceparent", "tracestate")
_ATTACHED = "_gateway_trace_token"
_SPAN = "_gateway_trace_span"


def inject_headers(ctx: Context | None = None) -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current or given context; {} outside a trace."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    return carrier


def extract_context(headers: Mapping[str, Any] | None) -> Context:
    """The context that `inject_headers` wrote (an empty context when there is none)."""
    carrier = {k: str(v) for k, v in (headers or {}).items() if k in TRACE_HEADERS and v}
    return _PROPAGATOR.extract(carrier)


@contextmanager
def attached(headers: Mapping[str, Any] | None) -> Iterator[Context]:
    """Run a block inside the trace context carried by `headers`."""
    ctx = extract_context(headers)
    token = otel_context.attach(ctx)
    try:
        yield ctx
    finally:
        otel_context.detach(token)


def task_headers(request: Any) -> dict[str, str]:
    """Trace headers of a Celery task request (protocol 2 puts custom headers on the request)."""
    found: dict[str, str] = {}
    nested = getattr(request, "headers", None) or {}
    for key in TRACE_HEADERS:
        value = getattr(request, key, None) or (nested.get(key) if isinstance(nested, Mapping) else None)
        if value:
            found[key] = str(value)
    return found


def install_celery_propagation(tracer: trace.Tracer | None = None) -> None:
    """Connect Celery's signals (idempotent: calling it again replaces the handlers). With a
    tracer, each task also gets a consumer span `celery.task <name>`."""
    from celery import signals

    def before_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
        if headers is not None:
            for key, value in inject_headers().items():
                headers.setdefault(key, value)

    def prerun(task: Any = None, **_: Any) -> None:
        if task is None:
            return
        ctx = extract_context(task_headers(task.request))
        span = None
        if tracer is not None:
            span = tracer.start_span(
                f"celery.task {task.name}",
                context=ctx,
                kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.system": "celery", "celery.task_name": str(task.name)},
            )
            ctx = trace.set_span_in_context(span, ctx)
        setattr(task.request, _ATTACHED, otel_context.attach(ctx))
        setattr(task.request, _SPAN, span)

    def postrun(task: Any = None, state: str | None = None, **_: Any) -> None:
        if task is None:
            return
        token = getattr(task.request, _ATTACHED, None)
        span = getattr(task.request, _SPAN, None)
        if span is not None:
            if state and state != "SUCCESS":
                span.set_status(trace.Status(trace.StatusCode.ERROR, state))
            span.end()
        if token is not None:
            otel_context.detach(token)
            setattr(task.request, _ATTACHED, None)

    _disconnect(signals)
    for signal, receiver, uid in (
        (signals.before_task_publish, before_publish, "gateway-trace-publish"),
        (signals.task_prerun, prerun, "gateway-trace-prerun"),
        (signals.task_postrun, postrun, "gateway-trace-postrun"),
    ):
        signal.connect(receiver, weak=False, dispatch_uid=uid)


_UIDS = ("gateway-trace-publish", "gateway-trace-prerun", "gateway-trace-postrun")


def uninstall_celery_propagation() -> None:
    from celery import signals

    _disconnect(signals)


def _disconnect(signals: Any) -> None:
    for signal, uid in zip(
        (signals.before_task_publish, signals.task_prerun, signals.task_postrun), _UIDS, strict=True
    ):
        signal.disconnect(dispatch_uid=uid)  # the last installation wins
