"""Budget reservations and rate limits on Redis (and in process): latency, throughput and
the overspend/leak goal.

    BENCH_REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python bench/billing_budgets.py

Uses a random key prefix in the given Redis database and deletes its keys afterwards.
Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing.budgets import Budget, BudgetPeriod, BudgetScope, MemoryBudgets, RedisBudgets  # noqa: E402
from billing.errors import BudgetExceededError  # noqa: E402
from billing.ratelimit import MemoryRateLimiter, RateLimit, RedisRateLimiter  # noqa: E402
from billing.redis_client import make_redis  # noqa: E402

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


async def reserve_settle(backend: Any, n: int, concurrency: int) -> dict[str, Any]:
    tenant = Budget(BudgetScope.TENANT, "ten_b", "ten_b", 10**18, BudgetPeriod.MONTH)
    key = Budget(BudgetScope.KEY, "key_b", "ten_b", 10**18, BudgetPeriod.DAY)
    lat: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    run = uuid.uuid4().hex[:8]

    async def one(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            res = await backend.reserve(f"{run}-{i}", [tenant, key], 5_000_000_000)
            t1 = time.perf_counter()
            await backend.settle(res, 3_000_000_000)
            lat.append((t1 - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    secs = time.perf_counter() - t0
    return {
        "pairs": n,
        "concurrency": concurrency,
        "pairs_per_s": round(n / secs),
        "reserve_p50_ms": pct(lat, 0.5),
        "reserve_p99_ms": pct(lat, 0.99),
    }


async def goal(backend: Any, run: str) -> dict[str, Any]:
    worst = 7_000_000_123
    budget = Budget(BudgetScope.TENANT, f"ten_goal_{run}", f"ten_goal_{run}", 50 * worst)
    admitted = 0

    async def one(i: int) -> None:
        nonlocal admitted
        try:
            res = await backend.reserve(f"goal-{run}-{i}", [budget], worst)
        except BudgetExceededError:
            return
        admitted += 1
        await asyncio.sleep(0.001 * (i % 7))
        await backend.settle(res, worst)

    await asyncio.gather(*(one(i) for i in range(200)))
    st = await backend.status(budget)
    return {
        "requests": 200,
        "budget_covers": 50,
        "admitted": admitted,
        "overspend_units": max(0, st.spent_units - budget.limit_units),
        "reserved_left_units": st.reserved_units,
        "reservations_left": await backend.in_flight(),
    }


async def ratelimit(limiter: Any, n: int, concurrency: int) -> dict[str, Any]:
    limits = [
        RateLimit("key", "k", requests_per_minute=10**9, tokens_per_minute=10**12),
        RateLimit("tenant", "t", requests_per_minute=10**9, tokens_per_minute=10**12),
    ]
    lat: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            t0 = time.perf_counter()
            assert (await limiter.check(limits, tokens=1000)).allowed
            lat.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    secs = time.perf_counter() - t0
    return {
        "checks": n,
        "concurrency": concurrency,
        "checks_per_s": round(n / secs),
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
    }


async def main() -> dict[str, Any]:
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    budgets = RedisBudgets(make_redis(URL), prefix=prefix)
    limiter = RedisRateLimiter(make_redis(URL), prefix=prefix)
    out: dict[str, Any] = {"bench": "billing_budgets", "redis": URL}
    try:
        out["redis_reserve_settle_serial"] = await reserve_settle(budgets, 2_000, 1)
        out["redis_reserve_settle"] = await reserve_settle(budgets, 20_000, 64)
        out["redis_goal_200_vs_50"] = await goal(budgets, "r")
        out["redis_ratelimit_check_serial"] = await ratelimit(limiter, 2_000, 1)
        out["redis_ratelimit_check"] = await ratelimit(limiter, 20_000, 64)
        out["memory_reserve_settle"] = await reserve_settle(MemoryBudgets(), 20_000, 64)
        out["memory_goal_200_vs_50"] = await goal(MemoryBudgets(), "m")
        out["memory_ratelimit_check"] = await ratelimit(MemoryRateLimiter(), 20_000, 64)
    finally:
        r = make_redis(URL)
        keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 1000):
            await r.delete(*keys[i : i + 1000])
        await r.aclose()
        await budgets.close()
        await limiter.close()
    return out


if __name__ == "__main__":
    import json

    result = asyncio.run(main())
    print(json.dumps(result, indent=2))
