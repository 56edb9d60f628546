"""Each tenant's active policy, compiled, with a short cache so decisions stay I/O-free.

A newly activated policy takes effect within `ttl_s` on every replica (the cache is per
process); the process that activated it invalidates its own entry at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.log import append_event
from gateway.ttl_cache import TtlCache
from policy import repository
from policy.compiled import CompiledPolicy


class PolicyCache:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._sessions = sessions
        self._cache: TtlCache[str, CompiledPolicy] = TtlCache(ttl_s, clock)

    async def get(self, tenant_id: str) -> CompiledPolicy:
        async def load() -> CompiledPolicy:
            async with self._sessions() as session:
                return await repository.get_active(session, tenant_id)

        return await self._cache.get(tenant_id, load)

    def invalidate(self, tenant_id: str) -> None:
        self._cache.forget(lambda key: key == tenant_id)


async def activate_policy(
    session: AsyncSession, tenant_id: str, source: str, *, actor: str, comment: str | None = None
) -> repository.StoredPolicy:
    """Validate and activate a new policy version, audited in the same transaction."""
    stored = await repository.set_policy(session, tenant_id, source, actor=actor, comment=comment)
    await _audit_activation(session, tenant_id, stored, actor, comment=comment)
    return stored


async def rollback_policy(
    session: AsyncSession, tenant_id: str, *, actor: str, to_version: int | None = None
) -> repository.StoredPolicy:
    """Activate an earlier version (default: the one before the active one), audited."""
    stored = await repository.rollback(session, tenant_id, actor=actor, to_version=to_version)
    await _audit_activation(session, tenant_id, stored, actor, rollback=True)
    return stored


async def _audit_activation(
    session: AsyncSession, tenant_id: str, stored: repository.StoredPolicy, actor: str, **extra: object
) -> None:
    await append_event(
        session,
        kind="policy.activated",
        actor=actor,
        tenant_id=tenant_id,
        payload={"version": stored.version, "digest": stored.digest, **extra},
    )
