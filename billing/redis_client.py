"""The Redis client factory used by billing (budgets, rate limits).

A blocking pool makes bursts wait for a free connection instead of failing with
"Too many connections" (redis-py's default pool raises). Every wait is bounded, so a request
never hangs on a Redis that is down or stuck: connecting, each command's reply and the wait
for a pooled connection each give up after a few seconds (RedisError), and the gateway
answers by its GATEWAY_REDIS_FAILURE setting. One retry on a fresh connection covers the
pooled connections that a Redis restart closed.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Generous enough for a busy event loop opening a pool's connections at once (a 1 s connect
# timeout failed 200 concurrent reservations on a loaded machine), short enough that a stuck
# Redis costs a request seconds, not minutes. A Redis that is down refuses at once.
CONNECT_TIMEOUT_S = 3.0
COMMAND_TIMEOUT_S = 3.0
POOL_WAIT_S = 5.0

# What a Redis that is down, restarting, stuck or failed over to a read-only replica raises
# (redis-py wraps socket errors and its pool's wait in these; a database driver's OSError is
# not one of them).
REDIS_OUTAGE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)


def make_redis(
    url: str,
    *,
    max_connections: int = 64,
    timeout: float = POOL_WAIT_S,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    command_timeout: float = COMMAND_TIMEOUT_S,
) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_connect_timeout=connect_timeout,
        socket_timeout=command_timeout,
        # Only a broken connection is retried: a command that timed out may have run, and the
        # rate-limit script is not idempotent.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return Redis(connection_pool=pool)


def is_redis_outage(exc: BaseException) -> bool:
    """A Redis client error that means Redis is down or stuck (not a script or data error)."""
    return isinstance(exc, REDIS_OUTAGE)


class RedisUnavailableError(Exception):
    """Budgets or rate limits could not reach Redis and the gateway fails closed: the
    request is refused (HTTP 503 with Retry-After), nothing is reserved or billed."""

    retry_after_s = 2.0

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} are unavailable (Redis does not answer); retry shortly.")
