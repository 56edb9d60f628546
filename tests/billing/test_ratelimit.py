"""Rate limits: GCRA per key and tenant, all-or-nothing, refunds, headers; shared by two
limiter instances and by two processes on one Redis; the same on the in-process twin."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from billing.ratelimit import MemoryRateLimiter, RateLimit, RedisRateLimiter, format_duration
from tests.billing.conftest import purge_redis_prefix

ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[object]:
    if request.param == "memory":
        yield MemoryRateLimiter()
        return
    url = request.getfixturevalue("redis_url")
    lim = RedisRateLimiter.from_url(url, prefix=f"test:{unique}:")
    yield lim
    await lim.close()
    await purge_redis_prefix(url, f"test:{unique}:")


async def test_requests_per_minute_and_headers(limiter) -> None:
    limits = [RateLimit("key", "k", requests_per_minute=10)]
    results = [await limiter.check(limits) for _ in range(15)]
    assert sum(r.allowed for r in results) == 10
    assert [r.allowed for r in results[:10]] == [True] * 10
    first, denied = results[0], results[10]
    h = first.headers()
    assert h["x-ratelimit-limit-requests"] == "10" and h["x-ratelimit-remaining-requests"] == "9"
    assert h["x-ratelimit-reset-requests"] in ("6s", "5s")
    assert "retry-after" not in h
    assert not denied.allowed and 5.0 < denied.retry_after_seconds <= 6.0
    dh = denied.headers()
    assert dh["retry-after"] == "6" and dh["x-ratelimit-remaining-requests"] == "0"
    assert denied.blocked_by is not None and denied.blocked_by.dimension == "requests"


async def test_all_or_nothing_across_key_and_tenant(limiter) -> None:
    limits = [
        RateLimit("key", "k", requests_per_minute=100, tokens_per_minute=10_000),
        RateLimit("tenant", "t", tokens_per_minute=1000),
    ]
    assert (await limiter.check(limits, tokens=600)).allowed
    denied = await limiter.check(limits, tokens=600)
    assert not denied.allowed and denied.blocked_by.scope == "tenant"
    ok = await limiter.check(limits, tokens=300)  # the denied request consumed nothing
    assert ok.allowed
    assert ok.headers()["x-ratelimit-remaining-requests"] == "98"
    assert ok.headers()["x-ratelimit-remaining-tokens"] == "100"  # tenant is the tighter one


async def test_too_large_and_refund(limiter) -> None:
    limits = [RateLimit("tenant", "t2", tokens_per_minute=1000)]
    big = await limiter.check(limits, tokens=1001)
    assert big.too_large and "retry-after" not in big.headers()
    assert (await limiter.check(limits, tokens=900)).allowed
    assert not (await limiter.check(limits, tokens=200)).allowed
    await limiter.adjust_tokens(limits, -500)  # the request used 400 tokens, not 900
    assert (await limiter.check(limits, tokens=200)).allowed


async def test_memory_refills_over_time() -> None:
    clock = FakeClock()
    lim = MemoryRateLimiter(clock=clock)
    limits = [RateLimit("key", "k", requests_per_minute=10)]
    assert sum([(await lim.check(limits)).allowed for _ in range(12)]) == 10
    clock.now += 5.9
    assert not (await lim.check(limits)).allowed
    clock.now += 0.2
    assert (await lim.check(limits)).allowed


async def test_remaining_is_exact_where_float_sums_round() -> None:
    """At 2^20 ms of monotonic clock the sum now + 6000 rounds up: (now + 6000) - now is
    6000.000000000116, and a plain floor said 8 requests remained of 10 after the first
    (a CI flake on a machine up for 17.5 minutes)."""
    clock = FakeClock()
    clock.now = 1048.4760019752
    assert (clock.now * 1000 + 6000.0) - clock.now * 1000 > 6000.0  # the case is real
    lim = MemoryRateLimiter(clock=clock)
    first = await lim.check([RateLimit("key", "k", requests_per_minute=10)])
    assert first.headers()["x-ratelimit-remaining-requests"] == "9"


@pytest.mark.redis
async def test_two_replicas_share_one_limit(redis_url: str, unique: str) -> None:
    a = RedisRateLimiter.from_url(redis_url, prefix=f"test:{unique}:")
    b = RedisRateLimiter.from_url(redis_url, prefix=f"test:{unique}:")
    try:
        limits = [RateLimit("key", "k", requests_per_minute=10)]
        results = await asyncio.gather(*((a if i % 2 else b).check(limits) for i in range(30)))
        assert sum(r.allowed for r in results) == 10
    finally:
        await a.close()
        await b.close()
        await purge_redis_prefix(redis_url, f"test:{unique}:")


@pytest.mark.redis
def test_two_processes_share_one_limit(redis_url: str, unique: str) -> None:
    cmd = [sys.executable, "-m", "tests.billing._ratelimit_worker", redis_url, f"test:{unique}:", "20"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    counts = [int(p.communicate(timeout=30)[0].strip()) for p in procs]
    asyncio.run(purge_redis_prefix(redis_url, f"test:{unique}:"))
    assert sum(counts) == 15, counts


def test_format_duration() -> None:
    assert [format_duration(x) for x in (0.25, 1, 6.0, 59.5, 360, 61.2)] == [
        "250ms",
        "1s",
        "6s",
        "1m0s",
        "6m0s",
        "1m2s",
    ]
