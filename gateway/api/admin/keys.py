"""Admin API: one API key's own rate limits and budget.

`GET/PUT /admin/keys/{key_id}/limits` and `GET/PUT/DELETE /admin/keys/{key_id}/budget` take
the same bodies and follow the same rules as the tenant endpoints (`limits.py`,
`billing.py`); the CLI twins are `gateway key limits` and `gateway key budget`. A key's
limits and budget apply on top of its tenant's: a request must pass both.

An unknown key id is a 404. A revoked key's settings can still be read, but a change is a
409 (`code: key_revoked`): the key can never be used again, so a new limit would only
mislead whoever reads the audit log.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, delete, get, put

from billing.budgets.types import BudgetScope
from billing.db import transaction, utcnow
from gateway.api.admin.billing import BudgetBody, budget_json, delete_budget, put_budget
from gateway.api.admin.limits import LimitsBody, apply_limits
from gateway.api.auth import require_admin
from gateway.api.schemas import decode_body
from gateway.auth import service as auth
from gateway.auth.models import ApiKey, Tenant


def _key_json(key: ApiKey, tenant: Tenant) -> dict[str, Any]:
    return {
        "key_id": key.id,
        "key_prefix": key.display_prefix,
        "tenant": tenant.name,
        "tenant_id": tenant.id,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _limits_json(key: ApiKey, tenant: Tenant) -> dict[str, Any]:
    return {**_key_json(key, tenant), "rpm": key.requests_per_minute, "tpm": key.tokens_per_minute}


async def _key_and_tenant(services: Any, key_id: str) -> tuple[ApiKey, Tenant]:
    async with services.sessions() as session:
        key = await auth.get_key(session, key_id)
        tenant = await session.get(Tenant, key.tenant_id)
    assert tenant is not None  # api_keys.tenant_id is a foreign key
    return key, tenant


@get("/keys/{key_id:str}/limits")
async def show_key_limits(request: Request[Any, Any, Any], key_id: str) -> dict[str, Any]:
    """The key's own limits; null means none of its own (the tenant's still apply)."""
    await require_admin(request)
    return _limits_json(*await _key_and_tenant(request.app.state.services, key_id))


@put("/keys/{key_id:str}/limits")
async def set_key_limits(request: Request[Any, Any, Any], key_id: str) -> dict[str, Any]:
    admin = await require_admin(request)
    body = decode_body(await request.body(), LimitsBody)
    async with transaction(request.app.state.services.sessions) as session:
        key = auth.require_unrevoked(await auth.get_key(session, key_id))
        tenant = await session.get(Tenant, key.tenant_id)
        assert tenant is not None
        await apply_limits(session, key, body, admin.actor)
        out = _limits_json(key, tenant)
    request.app.state.services.authenticator.forget()  # limits ride on the remembered principal
    return out


@get("/keys/{key_id:str}/budget")
async def show_key_budget(request: Request[Any, Any, Any], key_id: str) -> dict[str, Any]:
    """The key's own budget (`budget` is null when it has none), with what is spent and
    held by requests in flight in the current period (the tenant budget's shape)."""
    await require_admin(request)
    services = request.app.state.services
    key, tenant = await _key_and_tenant(services, key_id)
    at = utcnow()
    budget = await services.metering.budget_store.get(BudgetScope.KEY, key.id)
    shown = budget_json(await services.metering.budget_status(budget, at)) if budget else None
    return {**_key_json(key, tenant), "as_of": at.isoformat(), "budget": shown}


@put("/keys/{key_id:str}/budget")
async def set_key_budget(request: Request[Any, Any, Any], key_id: str) -> dict[str, Any]:
    admin = await require_admin(request)
    body = decode_body(await request.body(), BudgetBody)
    services = request.app.state.services
    key, _ = await _key_and_tenant(services, key_id)
    auth.require_unrevoked(key)
    return await put_budget(services, admin.actor, body, BudgetScope.KEY, key.id, key.tenant_id)


@delete("/keys/{key_id:str}/budget", status_code=200)
async def clear_key_budget(request: Request[Any, Any, Any], key_id: str) -> dict[str, Any]:
    """Remove the key's own budget (the tenant's still applies); `removed` is false when it
    had none."""
    admin = await require_admin(request)
    services = request.app.state.services
    key, _ = await _key_and_tenant(services, key_id)
    auth.require_unrevoked(key)
    removed = await delete_budget(services, admin.actor, BudgetScope.KEY, key.id, key.tenant_id)
    return {"key_id": key.id, "removed": removed}


keys_router = Router(
    path="/admin",
    route_handlers=[show_key_limits, set_key_limits, show_key_budget, set_key_budget, clear_key_budget],
)
