"""A per-process cache whose entries expire after a few seconds.

Tenant configuration (policies, compliance profiles, budgets) is read on every request;
caching it briefly keeps the decision free of I/O, and a change made on another replica
takes effect within `ttl_s`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self._ttl_s:
            return entry[1]
        value = await load()
        self._entries[key] = (now, value)
        return value

    def forget(self, predicate: Callable[[K], bool] | None = None) -> None:
        """Drop the entries whose key matches (all of them without a predicate)."""
        if predicate is None:
            self._entries.clear()
            return
        for key in [k for k in self._entries if predicate(k)]:
            del self._entries[key]
