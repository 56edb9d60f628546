"""A separate gateway-like process for the two-process rate limit test.
Usage: python -m tests.billing._ratelimit_worker REDIS_URL PREFIX N -> prints allowed count."""

from __future__ import annotations

import asyncio
import sys

from billing.ratelimit import RateLimit, RedisRateLimiter


async def main(url: str, prefix: str, n: int) -> None:
    limiter = RedisRateLimiter.from_url(url, prefix=prefix)
    limits = [
        RateLimit("key", "k1", requests_per_minute=15),
        RateLimit("tenant", "t1", tokens_per_minute=10_000),
    ]
    results = await asyncio.gather(*(limiter.check(limits, tokens=10) for _ in range(n)))
    await limiter.close()
    print(sum(r.allowed for r in results))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
