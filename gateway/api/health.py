"""Liveness and readiness probes (no authentication, no tenant data)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from sqlalchemy import text


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    services = request.app.state.services
    checks: dict[str, str] = {}
    try:
        async with services.sessions() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # the probe reports; it never raises
        checks["database"] = f"error: {type(exc).__name__}"
    checks["engine"] = "ok" if services.completions is not None else "disabled"
    failing = {k for k, v in checks.items() if v not in ("ok", "disabled")}
    # A database outage hits every replica at once: taking them all out of the load balancer
    # would refuse the requests that stale-if-error serves (GATEWAY_STALE_IF_ERROR_S > 0).
    degraded = failing == {"database"} and services.settings.stale_if_error_s > 0
    ready = not failing or degraded
    body = {"ready": ready, "checks": checks, **({"degraded": True} if degraded else {})}
    return Response(body, status_code=200 if ready else 503)
