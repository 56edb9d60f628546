"""Admin API: a tenant's rate limits (requests and tokens per minute, across all its keys).

The same change as `gateway tenant limits NAME --rpm N --tpm N`: `auth.set_rate_limits`,
which writes a `tenant.limits_set` audit event in the same transaction. A change applies to the
next request in this process, and within GATEWAY_AUTH_CACHE_MS (1 s) on every other one (the
limits ride on the remembered principal of a key).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, put
from sqlalchemy.ext.asyncio import AsyncSession

from billing.db import transaction
from gateway.api.auth import require_admin
from gateway.api.schemas import decode_body
from gateway.auth import service as auth
from gateway.auth.models import ApiKey, Tenant
from gateway.errors import InvalidRequestError

# The columns are INTEGER on PostgreSQL: a larger value would be a database error, not a 400.
MAX_PER_MINUTE = 2**31 - 1

PerMinute = Annotated[int, msgspec.Meta(ge=0, le=MAX_PER_MINUTE)] | None | msgspec.UnsetType


class LimitsBody(msgspec.Struct, forbid_unknown_fields=True):
    """A field left out keeps its value; null (or 0, as in the CLI) removes that limit."""

    rpm: PerMinute = msgspec.UNSET
    tpm: PerMinute = msgspec.UNSET


async def apply_limits(session: AsyncSession, row: Tenant | ApiKey, body: LimitsBody, actor: str) -> None:
    """Set a tenant's or a key's limits from a PUT body (audited): a field left out keeps
    its value."""
    if body.rpm is msgspec.UNSET and body.tpm is msgspec.UNSET:
        raise InvalidRequestError("Give rpm and/or tpm (an integer >= 0, or null for no limit).")
    await auth.set_rate_limits(
        session,
        row,
        requests_per_minute=row.requests_per_minute if body.rpm is msgspec.UNSET else body.rpm,
        tokens_per_minute=row.tokens_per_minute if body.tpm is msgspec.UNSET else body.tpm,
        actor=actor,
    )


def _limits_json(tenant: Tenant) -> dict[str, Any]:
    return {
        "tenant": tenant.name,
        "tenant_id": tenant.id,
        "rpm": tenant.requests_per_minute,
        "tpm": tenant.tokens_per_minute,
    }


@get("/tenants/{name:str}/limits")
async def show_limits(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    """The tenant-wide limits; null means no limit."""
    await require_admin(request)
    async with request.app.state.services.sessions() as session:
        return _limits_json(await auth.get_tenant_by_name(session, name))


@put("/tenants/{name:str}/limits")
async def set_limits(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    admin = await require_admin(request)
    body = decode_body(await request.body(), LimitsBody)
    async with transaction(request.app.state.services.sessions) as session:
        tenant = await auth.get_tenant_by_name(session, name)
        await apply_limits(session, tenant, body, admin.actor)
        out = _limits_json(tenant)
    request.app.state.services.authenticator.forget()  # limits ride on the remembered principal
    return out


limits_router = Router(path="/admin", route_handlers=[show_limits, set_limits])
