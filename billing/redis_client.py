"""The Redis client factory used by billing (budgets, rate limits).

A blocking pool makes bursts wait for a free connection instead of failing with
"Too many connections" (redis-py's default pool raises)."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis


def make_redis(url: str, *, max_connections: int = 64, timeout: float = 10.0) -> Redis:
    pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout)
    return Redis(connection_pool=pool)
