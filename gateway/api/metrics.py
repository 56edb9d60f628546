"""GET /metrics: the Prometheus text exposition (GATEWAY_METRICS=prometheus).

Unauthenticated, like the probes: serve it on a network that only the scraper reaches, or
put it behind the ingress's own rules. Labels carry tenant ids, never keys or content.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from gateway.telemetry.prometheus import CONTENT_TYPE


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def prometheus_metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = request.app.state.services.telemetry.render_prometheus()
    if body is None:
        return Response(
            b"metrics are disabled (GATEWAY_METRICS=none)\n", status_code=404, media_type="text/plain"
        )
    return Response(body, media_type=CONTENT_TYPE)
