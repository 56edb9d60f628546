"""Each tenant's active policy, compiled, with a short cache so decisions stay I/O-free.

A newly activated policy takes effect within `ttl_s` on every replica (the cache is per
process); the process that activated it invalidates its own entry at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
