"""Each tenant's active policy, compiled, with a short cache so decisions stay I/O-free.

A newly activated policy takes effect within `ttl_s` on every replica (the cache is per
process); the process that activated it invalidates its own entry at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, CompiledPolicy]] = {}

    async def get(self, tenant_id: str) -> CompiledPolicy:
        now = self._clock()
        cached = self._entries.get(tenant_id)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        async with self._sessions() as session:
            policy = await repository.get_active(session, tenant_id)
        self._entries[tenant_id] = (now, policy)
        return policy

    def invalidate(self, tenant_id: str) -> None:
        self._entries.pop(tenant_id, None)
