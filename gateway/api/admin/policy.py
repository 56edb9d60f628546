"""Admin API: tenant policies (validated, versioned, atomically activated, rollback)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, get, post, put

from billing.db import transaction
from gateway.api.admin.tenants import tenant_id_of
from gateway.api.auth import require_admin
from gateway.errors import InvalidRequestError, NotFoundError
from gateway.service.tenant_policies import activate_policy, rollback_policy
from policy import repository
from policy.errors import PolicyValidationError


def _stored_json(stored: repository.StoredPolicy) -> dict[str, Any]:
    return {
        "version": stored.version,
        "active": stored.active,
        "digest": stored.digest,
        "comment": stored.comment,
        "created_by": stored.created_by,
        "created_at": stored.created_at.isoformat(),
        "document": dict(stored.document),
    }


@get("/tenants/{name:str}/policy")
async def show_policy(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    await require_admin(request)
    services = request.app.state.services
    tenant_id = await tenant_id_of(services, name)
    async with services.sessions() as session:
        stored = await repository.get_active_version(session, tenant_id)
    if stored is None:
        raise NotFoundError(f"tenant {name!r} has no policy of its own; the default applies", param="name")
    return _stored_json(stored)


@get("/tenants/{name:str}/policy/versions")
async def policy_versions(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    await require_admin(request)
    services = request.app.state.services
    tenant_id = await tenant_id_of(services, name)
    async with services.sessions() as session:
        versions = await repository.list_versions(session, tenant_id)
    return {"object": "list", "data": [_stored_json(v) for v in versions]}


@put("/tenants/{name:str}/policy")
async def set_policy(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    """Body: the policy document as YAML or JSON text. Invalid documents are a 400 that
    lists every bad field; nothing is stored then."""
    admin = await require_admin(request)
    services = request.app.state.services
    tenant_id = await tenant_id_of(services, name)
    try:
        source = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError("the policy document must be UTF-8 text") from None
    comment = request.query_params.get("comment")
    try:
        async with transaction(services.sessions) as session:
            stored = await activate_policy(session, tenant_id, source, actor=admin.actor, comment=comment)
    except PolicyValidationError as exc:
        raise InvalidRequestError("; ".join(exc.errors), param=exc.rule, code=exc.code) from None
    services.policies.invalidate(tenant_id)
    return _stored_json(stored)


@post("/tenants/{name:str}/policy/rollback", status_code=200)
async def rollback(request: Request[Any, Any, Any], name: str, to: int | None = None) -> dict[str, Any]:
    admin = await require_admin(request)
    services = request.app.state.services
    tenant_id = await tenant_id_of(services, name)
    async with transaction(services.sessions) as session:
        stored = await rollback_policy(session, tenant_id, actor=admin.actor, to_version=to)
    services.policies.invalidate(tenant_id)
    return _stored_json(stored)


policy_router = Router(path="/admin", route_handlers=[show_policy, policy_versions, set_policy, rollback])
