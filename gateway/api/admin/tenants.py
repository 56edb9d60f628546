"""Admin API: tenants and their API keys."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, post
from sqlalchemy import select

from billing.db import transaction, utcnow
from gateway.api.auth import require_admin
from gateway.api.schemas import decode_body
from gateway.audit.log import append_event
from gateway.auth import service as auth
from gateway.auth.models import Tenant


class TenantCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] | None = None


async def tenant_id_of(services: Any, name: str) -> str:
    """The id of the tenant called `name`, or 404."""
    async with services.sessions() as session:
        return (await auth.get_tenant_by_name(session, name)).id


def _tenant_json(t: Tenant) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "active": t.active, "created_at": t.created_at.isoformat()}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


@get("/tenants")
async def list_tenants(request: Request[Any, Any, Any]) -> dict[str, Any]:
    await require_admin(request)
    async with request.app.state.services.sessions() as session:
        rows = (await session.scalars(select(Tenant).order_by(Tenant.name))).all()
    return {"object": "list", "data": [_tenant_json(t) for t in rows]}


@post("/tenants", status_code=201)
async def create_tenant(request: Request[Any, Any, Any]) -> dict[str, Any]:
    admin = await require_admin(request)
    body = decode_body(await request.body(), TenantCreate)
    async with transaction(request.app.state.services.sessions) as session:
        tenant = await auth.create_tenant(session, body.name)
        await append_event(
            session,
            kind="tenant.created",
            actor=admin.actor,
            tenant_id=tenant.id,
            payload={"name": tenant.name},
        )
    return _tenant_json(tenant)


@get("/tenants/{name:str}/keys")
async def list_keys(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    await require_admin(request)
    async with request.app.state.services.sessions() as session:
        tenant = await auth.get_tenant_by_name(session, name)
        rows = await auth.list_keys(session, tenant.id)
    data = [
        {
            "id": k.id,
            "name": k.name,
            "prefix": k.display_prefix,
            "created_at": _iso(k.created_at),
            "expires_at": _iso(k.expires_at),
            "revoked_at": _iso(k.revoked_at),
            "last_used_at": _iso(k.last_used_at),
        }
        for k in rows
    ]
    return {"object": "list", "data": data}


@post("/tenants/{name:str}/keys", status_code=201)
async def create_key(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    admin = await require_admin(request)
    body = decode_body(await request.body() or b"{}", KeyCreate)
    services = request.app.state.services
    expires = utcnow() + dt.timedelta(days=body.expires_in_days) if body.expires_in_days else None
    async with transaction(services.sessions) as session:
        tenant = await auth.get_tenant_by_name(session, name)
        issued = await auth.create_key(session, tenant, services.pepper, name=body.name, expires_at=expires)
        await append_event(
            session,
            kind="key.created",
            actor=admin.actor,
            tenant_id=tenant.id,
            payload={"key_id": issued.id, "prefix": issued.display_prefix, "expires_at": _iso(expires)},
        )
    # The only time the secret leaves the server.
    return {"id": issued.id, "tenant": issued.tenant_name, "key": issued.secret, "expires_at": _iso(expires)}


@post("/keys/{key_id:str}/revoke", status_code=200)
async def revoke_key(request: Request[Any, Any, Any], key_id: str) -> dict[str, Any]:
    admin = await require_admin(request)
    async with transaction(request.app.state.services.sessions) as session:
        row = await auth.revoke_key(session, key_id)
        await append_event(
            session,
            kind="key.revoked",
            actor=admin.actor,
            tenant_id=row.tenant_id,
            payload={"key_id": key_id},
        )
    request.app.state.services.authenticator.forget()  # this process: at once, not within the TTL
    return {"id": key_id, "revoked_at": _iso(row.revoked_at)}


tenants_router = Router(
    path="/admin", route_handlers=[list_tenants, create_tenant, list_keys, create_key, revoke_key]
)
