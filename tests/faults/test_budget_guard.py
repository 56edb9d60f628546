"""BudgetGuard against real Redis and a real ledger: a Redis that lost its data between a
request's usage record and its settle is re-seeded without counting that request twice; a
Redis that does not answer fails closed or open as configured."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.budgets import Budget, BudgetMode, BudgetPeriod, BudgetScope, RedisBudgets
from billing.budgets.guard import BudgetGuard
from billing.budgets.store import spent_in_period
from billing.ledger.spool import UsageSpool
from billing.ledger.writer import UsageWriter
from billing.redis_client import RedisUnavailableError
from tests.billing.conftest import create_tenant, entry, purge_redis_prefix
from tests.e2e.server import free_port

pytestmark = pytest.mark.redis

AT = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)


async def test_a_redis_that_lost_its_data_is_reseeded_without_double_counting(
    sessions: async_sessionmaker[AsyncSession], redis_url: str, unique: str, tmp_path: Path
) -> None:
    tenant_id, key_id = await create_tenant(sessions, f"guard-{unique}")
    budget = Budget(BudgetScope.TENANT, tenant_id, tenant_id, 10**15, BudgetPeriod.MONTH, BudgetMode.HARD)
    prefix = f"test:{unique}:"
    backend = RedisBudgets.from_url(redis_url, prefix=prefix, require_seed=True)
    writer = UsageWriter(sessions, UsageSpool(tmp_path / "spool"))
    guard = BudgetGuard(backend, sessions, writer.flush)
    try:
        await writer.start()
        a = await guard.reserve(f"a-{unique}", [budget], 10**9, AT)
        entry_a = entry(tenant_id, key_id, f"a-{unique}", AT)
        guard.recorded(entry_a)
        await writer.submit(entry_a)
        await writer.flush()  # A's usage is in the ledger; its settle has not happened yet
        await purge_redis_prefix(redis_url, prefix)  # Redis restarted without persistence

        seeds = guard.seeds
        # B and 20 more arrive together: refused by the unseeded counter, they share one seed.
        b, *others = await asyncio.gather(
            guard.reserve(f"b-{unique}", [budget], 10**9, AT),
            *(guard.reserve(f"c{i}-{unique}", [budget], 1, AT) for i in range(20)),
        )
        assert guard.seeds == seeds + 1
        for held in others:
            await guard.settle(held, 0)
        assert (await guard.settle(a, entry_a.cost_total or 0)).charged_units == entry_a.cost_total
        entry_b = entry(tenant_id, key_id, f"b-{unique}", AT, out=700)
        guard.recorded(entry_b)
        await writer.submit(entry_b)
        await guard.settle(b, entry_b.cost_total or 0)
        await writer.flush()

        async with sessions() as session:
            ledger = await spent_in_period(session, budget, AT)
        status = await backend.status(budget, AT)
        assert ledger == (entry_a.cost_total or 0) + (entry_b.cost_total or 0)
        assert (status.spent_units, status.reserved_units) == (ledger, 0)  # A counted once
        assert await backend.in_flight() == 0
    finally:
        await guard.stop()
        await writer.stop()
        await backend.close()
        await purge_redis_prefix(redis_url, prefix)


@pytest.mark.parametrize("fail_open", [False, True])
async def test_a_redis_that_does_not_answer_fails_closed_or_open(
    sessions: async_sessionmaker[AsyncSession], fail_open: bool, unique: str, tmp_path: Path
) -> None:
    budget = Budget(BudgetScope.TENANT, f"ten_{unique}", f"ten_{unique}", 10**12)
    backend = RedisBudgets.from_url(f"redis://127.0.0.1:{free_port()}/0", require_seed=True)  # nobody there
    writer = UsageWriter(sessions, UsageSpool(tmp_path / "spool"))
    guard = BudgetGuard(backend, sessions, writer.flush, fail_open=fail_open)
    try:
        if not fail_open:
            with pytest.raises(RedisUnavailableError):
                await guard.reserve(f"r-{unique}", [budget], 100, AT)
            return
        held = await guard.reserve(f"r-{unique}", [budget], 100, AT)
        assert held.amount_units == 0 and [c.budget for c in held.counters] == [budget]
        assert (await guard.settle(held, 42)).charged_units == 0
        assert guard.owed == 1  # kept until Redis answers
    finally:
        await guard.stop()
        await backend.close()


async def test_a_redis_that_never_answers_is_given_up_on(
    sessions: async_sessionmaker[AsyncSession], unique: str, tmp_path: Path
) -> None:
    """A Redis that accepts connections but never replies (stuck, or a network that drops
    packets): the command times out (billing/redis_client.py) instead of hanging the request."""
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read(1 << 20)  # never answers

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    budget = Budget(BudgetScope.TENANT, f"ten_{unique}", f"ten_{unique}", 10**12)
    backend = RedisBudgets.from_url(f"redis://127.0.0.1:{port}/0", require_seed=True)
    writer = UsageWriter(sessions, UsageSpool(tmp_path / "spool"))
    guard = BudgetGuard(backend, sessions, writer.flush)
    try:
        with pytest.raises(RedisUnavailableError):
            await asyncio.wait_for(guard.reserve(f"h-{unique}", [budget], 100, AT), 30)
        assert accepted  # it did connect: the reply was what never came
    finally:
        await guard.stop()
        await backend.close()
        for w in accepted:
            w.transport.abort()
        server.close()
