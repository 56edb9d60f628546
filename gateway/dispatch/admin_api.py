"""Admin API of dispatch: pools with their replicas and live state, replica changes.

GET    /admin/pools                          every pool, its replicas, and this process's view
                                             of each replica (health, breaker, in flight)
POST   /admin/pools/{name}/replicas          {"url", "capacity"}: add a replica
PATCH  /admin/pools/{name}/replicas          {"url", "enabled"}: drain (false) or return it
DELETE /admin/pools/{name}/replicas?url=...  forget a replica
PATCH  /admin/pools/{name}                   {"backend", "variants", "models", "api_key_env"}

Pools themselves are registered through /admin/compliance/pools (with the dispatch fields)
or the pools file. Changes reach this process at once and every other gateway process within
10 s; each is an audit event with the admin.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from litestar import Request, Router, delete, get, patch, post
from sqlalchemy import select

from billing.db import transaction
from gateway.api.auth import require_admin
from gateway.audit.log import append_event
from gateway.compliance.admin_api import json_object_body
from gateway.compliance.models import DevicePool
from gateway.compliance.registry import PoolSpec, check_dispatch_fields, get_pool, list_pools, pool_dict
from gateway.dispatch import replicas as reg
from gateway.errors import InvalidRequestError

_PATCHABLE = ("backend", "variants", "models", "api_key_env")


async def _refresh(request: Request[Any, Any, Any]) -> None:
    services = request.app.state.services
    services.compliance.invalidate(None)
    runtime = getattr(services.completions, "dispatcher", None)
    if runtime is not None and hasattr(runtime, "refresh"):
        await runtime.refresh()


@get("/pools")
async def list_dispatch_pools(request: Request[Any, Any, Any]) -> dict[str, Any]:
    await require_admin(request)
    services = request.app.state.services
    runtime = getattr(services.completions, "dispatcher", None)
    live = {(r["pool"], r["url"]): r for r in (runtime.snapshot() if runtime is not None else [])}
    async with services.sessions() as session:
        pools = await list_pools(session)
        replicas = await reg.replicas_by_pool(session)
    data = []
    for p in pools:
        rows = []
        for r in replicas.get(p.id, []):
            state = live.get((p.name, r.url))
            rows.append({**reg.replica_dict(p, r), "state": _state(state)})
        data.append({**pool_dict(p), "replicas": rows})
    return {"object": "list", "data": data}


def _state(live: dict[str, Any] | None) -> dict[str, Any] | None:
    if live is None:  # drained, or not served by this process (an embedded pool elsewhere)
        return None
    keys = ("healthy", "breaker", "in_flight", "detail", "reported_load", "served", "failed")
    return {k: live[k] for k in keys}


@post("/pools/{name:str}/replicas", status_code=201)
async def add_replica(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    admin = await require_admin(request)
    body = await json_object_body(request)
    unknown = sorted(set(body) - {"url", "capacity"})
    if unknown or not isinstance(body.get("url"), str):
        raise InvalidRequestError('the body is {"url": "...", "capacity": N}', param=(unknown or ["url"])[0])
    async with transaction(request.app.state.services.sessions) as session:
        row = await reg.add_replica(session, name, body["url"], body.get("capacity", 64), actor=admin.actor)
        out = reg.replica_dict(await get_pool(session, name), row)
    await _refresh(request)
    return out


@patch("/pools/{name:str}/replicas")
async def enable_replica(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    admin = await require_admin(request)
    body = await json_object_body(request)
    if set(body) != {"url", "enabled"} or not isinstance(body["enabled"], bool):
        raise InvalidRequestError('the body is {"url": "...", "enabled": true|false}', param="enabled")
    async with transaction(request.app.state.services.sessions) as session:
        row = await reg.set_replica_enabled(
            session, name, str(body["url"]), body["enabled"], actor=admin.actor
        )
        out = reg.replica_dict(await get_pool(session, name), row)
    await _refresh(request)
    return out


@delete("/pools/{name:str}/replicas", status_code=200)
async def remove_replica(
    request: Request[Any, Any, Any], name: str, url: str | None = None
) -> dict[str, Any]:
    admin = await require_admin(request)  # before the query is checked, as on every admin route
    if not url:
        raise InvalidRequestError("give the replica as ?url=...", param="url")
    async with transaction(request.app.state.services.sessions) as session:
        await reg.remove_replica(session, name, url, actor=admin.actor)
    await _refresh(request)
    return {"pool": name, "url": url, "deleted": True}


@patch("/pools/{name:str}")
async def update_pool(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    admin = await require_admin(request)
    body = await json_object_body(request)
    unknown = sorted(set(body) - set(_PATCHABLE))
    if unknown or not body:
        raise InvalidRequestError(
            f"patchable fields: {', '.join(_PATCHABLE)}", param=unknown[0] if unknown else None
        )
    async with transaction(request.app.state.services.sessions) as session:
        pool = await session.scalar(select(DevicePool).where(DevicePool.name == name))
        if pool is None:
            pool = await get_pool(session, name)  # the NotFoundError
        if pool.source == "file":
            raise InvalidRequestError(f"pool {name} comes from the pools file: change it there", param="name")
        spec = replace(
            PoolSpec(name, pool.device_kind, pool.vendor, pool.software_stack, pool.region),
            backend=body.get("backend", pool.backend),
            variants=tuple(body.get("variants", pool.variants or ())),
            models=body.get("models", dict(pool.models or {})),
            api_key_env=body.get("api_key_env", pool.api_key_env),
        )
        check_dispatch_fields(spec)
        previous = {k: getattr(pool, k) for k in _PATCHABLE}
        pool.backend, pool.variants = spec.backend, list(spec.variants)
        pool.models, pool.api_key_env = dict(spec.models), spec.api_key_env
        await session.flush()
        out = pool_dict(pool)
        await append_event(
            session, kind="compliance.pool.updated", actor=admin.actor, payload={**out, "previous": previous}
        )
    await _refresh(request)
    return out


dispatch_router = Router(
    path="/admin",
    route_handlers=[list_dispatch_pools, add_replica, enable_replica, remove_replica, update_pool],
)
