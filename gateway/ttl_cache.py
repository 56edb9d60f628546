"""A per-process cache whose entries expire after a few seconds.

Tenant configuration (policies, compliance profiles, budgets) is read on every request;
caching it briefly keeps the decision free of I/O, and a change made on another replica
takes effect within `ttl_s`.

One load per key at a time: when an entry expires under load, the requests that miss it
share the first one's load instead of each querying the database (at 32 concurrent
requests every expiry cost 32 identical queries per cache).

Stale if error: when a load fails because the database does not answer, the last value read
is served for up to `stale_s` after it was read (a change cannot be made while the database
is down, so it is what the database holds, as of at most `ttl_s` before the outage), and
the load is retried at most once a second meanwhile, not by every request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from gateway.errors import is_database_outage

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

STALE_IF_ERROR_S = 60.0  # GATEWAY_STALE_IF_ERROR_S's default
_OUTAGE_RETRY_S = 1.0


class TtlCache(Generic[K, V]):
    def __init__(
        self,
        ttl_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        stale_s: float = STALE_IF_ERROR_S,
        is_outage: Callable[[BaseException], bool] = is_database_outage,
    ):
        self._ttl_s = ttl_s
        self._clock = clock
        self._stale_s = stale_s
        self._is_outage = is_outage
        # key -> (fresh since, value, read at): "fresh since" moves on when a stale value is
        # served, so that the next load is tried a second later.
        self._entries: dict[K, tuple[float, V, float]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self._ttl_s:
            return entry[1]
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(key, load, now))
            pending.add_done_callback(_retrieve)
            self._loading[key] = pending
        # Shielded: a caller that is cancelled (client gone) does not cancel the others' load.
        return await asyncio.shield(pending)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]], now: float) -> V:
        try:
            value = await load()
        except Exception as exc:
            entry = self._entries.get(key)
            if entry is None or not self._is_outage(exc) or now - entry[2] >= self._ttl_s + self._stale_s:
                raise
            if self._loading.get(key) is asyncio.current_task():
                del self._loading[key]
                retry_at = now - self._ttl_s + min(self._ttl_s, _OUTAGE_RETRY_S)
                self._entries[key] = (retry_at, entry[1], entry[2])
            return entry[1]
        finally:
            current = asyncio.current_task()
            if self._loading.get(key) is current:
                del self._loading[key]
                stale = False
            else:
                stale = True  # forgotten while loading: what it read may predate the change
        if not stale:
            self._entries[key] = (now, value, now)
        return value

    def forget(self, predicate: Callable[[K], bool] | None = None) -> None:
        """Drop the entries whose key matches (all of them without a predicate); a load in
        flight for such a key is not stored, and the next get() loads afresh."""
        if predicate is None:
            self._entries.clear()
            self._loading.clear()
            return
        for key in [k for k in self._entries if predicate(k)]:
            del self._entries[key]
        for key in [k for k in self._loading if predicate(k)]:
            del self._loading[key]


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Every waiter may be gone (cancelled): mark a failed load's exception as seen.
    if not future.cancelled():
        future.exception()
