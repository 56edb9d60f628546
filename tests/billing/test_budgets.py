"""Budgets on real Redis and in process: no overspend under concurrency, no leaks,
release, reaping, exact big numbers, alerts once, settle exactly once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from billing.budgets import Budget, BudgetMode, BudgetPeriod, BudgetScope, MemoryBudgets, RedisBudgets
from billing.errors import BudgetExceededError, DuplicateReservationError
from tests.billing.conftest import purge_redis_prefix


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[object]:
    if request.param == "memory":
        yield MemoryBudgets()
        return
    url = request.getfixturevalue("redis_url")
    b = RedisBudgets.from_url(url, prefix=f"test:{unique}:")
    yield b
    await b.close()
    await purge_redis_prefix(url, f"test:{unique}:")


def tenant_budget(unique: str, limit: int, mode: BudgetMode = BudgetMode.HARD, **kw) -> Budget:
    return Budget(BudgetScope.TENANT, f"ten_{unique}", f"ten_{unique}", limit, BudgetPeriod.MONTH, mode, **kw)


async def test_200_concurrent_against_budget_for_50(backend, unique: str) -> None:
    worst = 7_000_000_123  # units per request, worst case
    budget = tenant_budget(unique, 50 * worst)
    key = Budget(BudgetScope.KEY, f"key_{unique}", f"ten_{unique}", 10**18, BudgetPeriod.DAY)
    admitted: list[int] = []
    rng = random.Random(5)

    async def request(i: int) -> None:
        try:
            res = await backend.reserve(f"r{i}-{unique}", [budget, key], worst)
        except BudgetExceededError:
            return
        admitted.append(i)
        await asyncio.sleep(rng.random() * 0.01)
        if i % 10 == 0:
            await backend.release(res)  # upstream error: nothing billable
        else:
            await backend.settle(res, worst)  # the worst case happened

    await asyncio.gather(*(request(i) for i in range(200)))
    status = await backend.status(budget)
    assert status.spent_units <= budget.limit_units
    assert status.reserved_units == 0
    assert await backend.in_flight() == 0
    assert len(admitted) >= 50
    settled = len([i for i in admitted if i % 10])
    assert status.spent_units == settled * worst
    assert (await backend.status(key)).spent_units == settled * worst


async def test_concurrent_with_smaller_actuals_never_overspend(backend, unique: str) -> None:
    worst = 1_000_000
    budget = tenant_budget(unique, 50 * worst)
    rng = random.Random(7)
    peak = 0

    async def request(i: int) -> None:
        nonlocal peak
        try:
            res = await backend.reserve(f"s{i}-{unique}", [budget], worst)
        except BudgetExceededError:
            return
        await asyncio.sleep(rng.random() * 0.005)
        await backend.settle(res, rng.randrange(worst // 2, worst + 1))
        st = await backend.status(budget)
        peak = max(peak, st.spent_units + st.reserved_units)

    for wave in range(3):  # waves: later waves fit into what actuals left unspent
        await asyncio.gather(*(request(wave * 1000 + i) for i in range(200)))
    status = await backend.status(budget)
    assert status.spent_units <= budget.limit_units and peak <= budget.limit_units
    assert status.reserved_units == 0 and await backend.in_flight() == 0


async def test_soft_budget_admits_and_alerts_once(backend, unique: str) -> None:
    budget = tenant_budget(unique, 100, BudgetMode.SOFT, alert_thresholds=(50, 100))
    alerts = []
    for i in range(4):
        res = await backend.reserve(f"soft{i}-{unique}", [budget], 40)
        alerts += [a.threshold_pct for a in (await backend.settle(res, 40)).alerts]
    assert alerts == [50, 100]  # 40 -> 80 crosses 50; 80 -> 120 crosses 100; then nothing
    assert (await backend.status(budget)).spent_units == 160


async def test_hard_budget_error_and_exact_big_numbers(backend, unique: str) -> None:
    limit = 10**16 + 1  # beyond 2^53: doubles could not tell these apart
    budget = tenant_budget(unique, limit)
    await backend.reserve(f"big-{unique}", [budget], 10**16)
    with pytest.raises(BudgetExceededError) as err:
        await backend.reserve(f"big2-{unique}", [budget], 2)
    assert err.value.limit_units == limit and err.value.reserved_units == 10**16
    assert "budget" in str(err.value)
    await backend.reserve(f"big3-{unique}", [budget], 1)
    assert (await backend.status(budget)).reserved_units == limit


async def test_settle_exactly_once_and_after_reap(backend, unique: str) -> None:
    budget = tenant_budget(unique, 1000)
    res = await backend.reserve(f"once-{unique}", [budget], 100)
    assert (await backend.settle(res, 60)).charged_units == 60
    assert (await backend.settle(res, 60)).already_settled
    with pytest.raises(DuplicateReservationError):
        await backend.reserve(f"once-{unique}", [budget], 100)
    assert not await backend.release(res)
    st = await backend.status(budget)
    assert (st.spent_units, st.reserved_units) == (60, 0)


@pytest.mark.redis
async def test_reaper_returns_dead_reservations(unique: str, redis_url: str) -> None:
    backend = RedisBudgets.from_url(redis_url, prefix=f"test:{unique}:")
    try:
        budget = tenant_budget(unique, 1000)
        dead = await backend.reserve(f"dead-{unique}", [budget], 400, lease_seconds=0.05)
        alive = await backend.reserve(f"alive-{unique}", [budget], 400, lease_seconds=60)
        with pytest.raises(BudgetExceededError):
            await backend.reserve(f"x-{unique}", [budget], 400)  # a phantom 429 until reaped
        await asyncio.sleep(0.1)
        assert await backend.reap() == 1
        assert (await backend.status(budget)).reserved_units == 400
        late = await backend.settle(dead, 150)  # the "dead" request finished after all
        assert late.charged_units == 150
        await backend.settle(alive, 400)
        st = await backend.status(budget)
        assert (st.spent_units, st.reserved_units, await backend.in_flight()) == (550, 0, 0)
        assert await backend.extend(alive) is False
    finally:
        await backend.close()
        await purge_redis_prefix(redis_url, f"test:{unique}:")


async def test_memory_reaper_and_extend(unique: str) -> None:
    clock = FakeClock()
    backend = MemoryBudgets(clock=clock)
    budget = tenant_budget(unique, 1000)
    a = await backend.reserve("a", [budget], 300, lease_seconds=10)
    b = await backend.reserve("b", [budget], 300, lease_seconds=10)
    clock.now += 5
    assert await backend.extend(b, 60)
    clock.now += 6
    assert await backend.reap() == 1
    assert (await backend.status(budget)).reserved_units == 300
    assert not await backend.release(a) and await backend.release(b)
    assert await backend.in_flight() == 0


async def test_period_counters_are_separate(backend, unique: str) -> None:
    import datetime as dt

    budget = Budget(BudgetScope.TENANT, f"ten_{unique}", f"ten_{unique}", 100, BudgetPeriod.DAY)
    d1 = dt.datetime(2026, 11, 27, 23, 59, 59, tzinfo=dt.UTC)
    d2 = dt.datetime(2026, 11, 28, 0, 0, 0, tzinfo=dt.UTC)
    await backend.settle(await backend.reserve(f"p1-{unique}", [budget], 100, at=d1), 100)
    with pytest.raises(BudgetExceededError):
        await backend.reserve(f"p2-{unique}", [budget], 1, at=d1)
    await backend.reserve(f"p3-{unique}", [budget], 100, at=d2)  # a new day, a new budget
    assert await backend.seed_spent(budget, 5, at=dt.datetime(2026, 11, 29, tzinfo=dt.UTC))
    assert not await backend.seed_spent(budget, 7, at=d1)
    assert (await backend.status(budget, dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC))).spent_units == 5
