"""Pool replicas in the registry, and the registry read as dispatch configuration.

A replica is an address that serves a pool: a `gateway worker`, an upstream's /v1 base URL,
or `inproc://embedded` for the engine inside the gateway process. Every change is an audit
event with the actor, like the rest of the registry.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.log import append_event
from gateway.compliance.models import DevicePool, PoolReplica
from gateway.compliance.registry import get_pool
from gateway.errors import ConflictError, InvalidRequestError, NotFoundError
from inference.dispatch.types import PoolConfig, ReplicaSpec

EMBEDDED_URL = "inproc://embedded"
MAX_CAPACITY = 100_000


def check_replica(backend: str, url: str, capacity: int) -> None:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or not 0 <= capacity <= MAX_CAPACITY:
        raise InvalidRequestError(f"capacity must be an integer from 0 to {MAX_CAPACITY}", param="capacity")
    if backend == "embedded":
        if url != EMBEDDED_URL:
            raise InvalidRequestError(f"an embedded pool's replica is {EMBEDDED_URL}", param="url")
        return
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError("url must be http(s)://host[:port][/path]", param="url")
    if parts.username or parts.password:
        raise InvalidRequestError(
            "url must not carry credentials: name an environment variable in api_key_env", param="url"
        )


def replica_dict(pool: DevicePool, r: PoolReplica) -> dict[str, Any]:
    return {
        "pool": pool.name,
        "url": r.url,
        "capacity": r.capacity,
        "enabled": r.enabled,
        "created_by": r.created_by,
        "created_at": r.created_at,
    }


async def add_replica(
    session: AsyncSession, pool_name: str, url: str, capacity: int = 64, *, actor: str
) -> PoolReplica:
    pool = await get_pool(session, pool_name)
    url = url.rstrip("/") if isinstance(url, str) else url
    check_replica(pool.backend, url, capacity)
    exists = await session.scalar(
        select(PoolReplica).where(PoolReplica.pool_id == pool.id, PoolReplica.url == url)
    )
    if exists is not None:
        raise ConflictError(f"pool {pool_name} already has the replica {url}")
    row = PoolReplica(pool_id=pool.id, url=url, capacity=capacity, enabled=True, created_by=actor)
    session.add(row)
    await session.flush()
    await append_event(session, kind="dispatch.replica.added", actor=actor, payload=replica_dict(pool, row))
    return row


async def remove_replica(session: AsyncSession, pool_name: str, url: str, *, actor: str) -> None:
    pool = await get_pool(session, pool_name)
    row = await session.scalar(
        select(PoolReplica).where(PoolReplica.pool_id == pool.id, PoolReplica.url == url.rstrip("/"))
    )
    if row is None:
        raise NotFoundError(f"pool {pool_name} has no replica {url}")
    payload = replica_dict(pool, row)
    await session.delete(row)
    await session.flush()
    await append_event(session, kind="dispatch.replica.removed", actor=actor, payload=payload)


async def set_replica_enabled(
    session: AsyncSession, pool_name: str, url: str, enabled: bool, *, actor: str
) -> PoolReplica:
    """Drain (False) or return (True) a replica without forgetting it."""
    pool = await get_pool(session, pool_name)
    row = await session.scalar(
        select(PoolReplica).where(PoolReplica.pool_id == pool.id, PoolReplica.url == url.rstrip("/"))
    )
    if row is None:
        raise NotFoundError(f"pool {pool_name} has no replica {url}")
    row.enabled = enabled
    await session.flush()
    kind = "dispatch.replica.enabled" if enabled else "dispatch.replica.drained"
    await append_event(session, kind=kind, actor=actor, payload=replica_dict(pool, row))
    return row


async def replicas_by_pool(session: AsyncSession) -> dict[int, list[PoolReplica]]:
    rows = (await session.scalars(select(PoolReplica).order_by(PoolReplica.url))).all()
    out: dict[int, list[PoolReplica]] = {}
    for r in rows:
        out.setdefault(r.pool_id, []).append(r)
    return out


async def pool_configs(session: AsyncSession) -> list[PoolConfig]:
    """The registry as the dispatcher reads it: every pool with its enabled replicas."""
    pools = (await session.scalars(select(DevicePool).order_by(DevicePool.name))).all()
    replicas = await replicas_by_pool(session)
    return [
        PoolConfig(
            name=p.name,
            backend=p.backend,
            device_kind=p.device_kind,
            region=p.region,
            variants=tuple(p.variants or ()),
            models=dict(p.models or {}),
            api_key_env=p.api_key_env,
            replicas=tuple(ReplicaSpec(r.url, r.capacity) for r in replicas.get(p.id, []) if r.enabled),
        )
        for p in pools
    ]
