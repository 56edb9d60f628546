"""HTTP server spans and request metrics, as a Litestar (ASGI) middleware.

Per request: extract W3C trace context from `traceparent`/`tracestate`, start the server span
`"{method} {route}"` (route template, never the raw path with ids), make it current for the
handler (and for a streamed body, which is sent inside the same call), record
`http.server.request.duration`. No header values, query strings or bodies are recorded.
Probe and scrape paths are measured but not traced.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.telemetry import names as n
from gateway.telemetry.core import RequestScope, record_error, with_request

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from gateway.telemetry.core import Telemetry

access_log = logging.getLogger("gateway.access")

UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = (b"traceparent", b"tracestate")


def _telemetry(scope: Scope) -> Telemetry | None:
    app = scope.get("app")
    services = getattr(getattr(app, "state", None), "get", lambda *_: None)("services")
    return getattr(services, "telemetry", None)


def telemetry_middleware(app: ASGIApp) -> ASGIApp:
    """Litestar middleware factory: `Litestar(middleware=[telemetry_middleware])`."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        telemetry = _telemetry(scope) if scope["type"] == "http" else None
        if telemetry is None:
            await app(scope, receive, send)
            return
        await handle_http(telemetry, app, scope, receive, send)

    return middleware


async def handle_http(telemetry: Telemetry, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    method = str(scope.get("method", "GET"))
    route = str(scope.get("path_template") or scope.get("path") or "")
    carrier = {
        key.decode("latin-1"): value.decode("latin-1")
        for key, value in scope.get("headers", ())
        if key in _TRACE_HEADERS
    }
    parent = _PROPAGATOR.extract(carrier) if carrier else otel_context.get_current()
    traced = telemetry.tracing and scope.get("path") not in UNTRACED_PATHS
    if traced:
        span = telemetry.tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={
                n.HTTP_METHOD: method,
                n.HTTP_ROUTE: route,
                "url.scheme": str(scope.get("scheme", "http")),
            },
        )
        ctx = trace.set_span_in_context(span, parent)
    else:
        span = trace.get_current_span(parent)
        ctx = parent
    request = RequestScope(span)
    token = otel_context.attach(with_request(request, ctx))
    status: dict[str, Any] = {"code": 500}
    started = time.perf_counter()
    active = {n.HTTP_METHOD: method, n.HTTP_ROUTE: route}
    telemetry.http_active.add(1, active)

    async def send_wrapper(message: Message) -> None:
        if message["type"] == "http.response.start":
            status["code"] = int(message["status"])
        await send(message)

    try:
        await app(scope, receive, send_wrapper)
    except BaseException as exc:
        record_error(span, exc)
        raise
    finally:
        elapsed = time.perf_counter() - started
        code = status["code"]
        if telemetry.access_log:  # inside the request's context: the line carries its trace id
            access_log.info(
                "%s %s %s",
                method,
                route,
                code,
                extra={"http_status": code, "http_route": route, "duration_ms": round(elapsed * 1000, 1)},
            )
        otel_context.detach(token)
        telemetry.http_active.add(-1, active)
        attributes: dict[str, Any] = {n.HTTP_METHOD: method, n.HTTP_ROUTE: route, n.HTTP_STATUS: code}
        if code >= 500:
            attributes[n.ERROR_TYPE] = str(code)
        telemetry.http_duration.record(elapsed, attributes)
        if traced:
            span.set_attribute(n.HTTP_STATUS, code)
            if code >= 500:
                span.set_attribute(n.ERROR_TYPE, str(code))
                span.set_status(trace.Status(trace.StatusCode.ERROR))
            span.end()
