"""GET /v1/usage: a tenant's own usage and exact cost, by day, variant, mode and line item.

Figures are exact up to the last settled request: the hourly rollup, plus the records it
does not hold yet (billing/ledger/queries.py). This process's queued usage records are
flushed first, so a client sees its own last answer at once; another replica's are written
within its writer's flush interval (0.25 s).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.cost import units_to_usd_str
from billing.ledger.queries import usage_by_day, usage_csv
from gateway.api.auth import authenticate
from gateway.api.periods import day_range
from gateway.errors import InvalidRequestError


async def usage_report(
    services: Any, tenant_id: str, start: str | None, end: str | None, fmt: str
) -> Response[Any]:
    """`services`: the app's Services (its sessions and the metering's usage writer)."""
    if fmt not in ("json", "csv"):
        raise InvalidRequestError("format must be json or csv", param="format")
    first, last = day_range(start, end)
    await services.metering.writer.flush()  # read-your-writes on this replica
    sessions: async_sessionmaker[AsyncSession] = services.sessions
    async with sessions() as session:
        days = await usage_by_day(session, tenant_id, first, last)
    if fmt == "csv":
        return Response(
            usage_csv(days),
            media_type="text/csv",
            headers={"content-disposition": 'attachment; filename="usage.csv"'},
        )
    total = sum(d.totals.cost_total for d in days)
    body = {
        "object": "usage",
        "start": first.date().isoformat(),
        "end": last.date().isoformat(),
        "data": [d.to_json() for d in days],
        "total_cost_usd": units_to_usd_str(total),
    }
    return Response(body)


FormatParam = Annotated[str, QueryParameter(name="format")]


@get("/v1/usage")
async def tenant_usage(
    request: Request[Any, Any, Any],
    fmt: FormatParam = "json",
    start: str | None = None,
    end: str | None = None,
) -> Response[Any]:
    principal = await authenticate(request)
    return await usage_report(request.app.state.services, principal.tenant_id, start, end, fmt)
