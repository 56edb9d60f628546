"""Background jobs: the in-process scheduler and a real Celery worker on Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from billing.budgets import Budget, BudgetPeriod, BudgetScope, MemoryBudgets, RedisBudgets
from billing.db import make_engine, make_sessionmaker
from billing.jobs import JobContext, JobScheduler
from billing.ledger import UsageSpool, UsageWriter, get_invoice, usage_totals
from tests.billing.conftest import create_tenant, entry, purge_redis_prefix

AUG = dt.datetime(2026, 8, 1, tzinfo=dt.UTC)
SEP = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)


async def test_in_process_scheduler_runs_the_tasks(sessions, unique: str, tmp_path: Path) -> None:
    tenant, key = await create_tenant(sessions, f"j-{unique}")
    await UsageWriter(sessions, UsageSpool(tmp_path)).write_now(
        [entry(tenant, key, f"j{i}-{unique}", AUG + dt.timedelta(days=i, hours=3)) for i in range(3)]
    )
    budgets = MemoryBudgets()
    b = Budget(BudgetScope.TENANT, tenant, tenant, 10**12, BudgetPeriod.DAY)
    await budgets.reserve(f"dead-{unique}", [b], 5, lease_seconds=0)
    now = dt.datetime(2026, 9, 1, 2, 30, tzinfo=dt.UTC)
    sched = JobScheduler(JobContext(sessions, budgets, clock=lambda: now))
    ran = await sched.run_due(monotonic_now=0.0)
    assert set(ran) == {
        "billing.reap_reservations",
        "billing.hourly_rollup",
        "billing.budget_period_reset",
        "billing.monthly_invoices",
    }
    assert sched.results["billing.reap_reservations"] == {"reaped": 1}
    assert sched.results["billing.monthly_invoices"]["month"] == "2026-08"
    async with sessions() as s:
        inv = await get_invoice(s, tenant, AUG.date())
        totals = await usage_totals(s, tenant, AUG, SEP)
    assert inv is not None and inv.status == "final" and inv.total_units == totals.cost_total > 0
    assert await sched.run_due(monotonic_now=10.0) == []  # nothing due yet, invoice done this month
    assert await sched.run_due(monotonic_now=31.0) == ["billing.reap_reservations"]
    await sched.start()
    await asyncio.sleep(0)
    await sched.stop()


@pytest.mark.redis
def test_celery_worker_runs_billing_tasks(
    sqlite_url: str, redis_url: str, unique: str, tmp_path: Path
) -> None:
    from celery.contrib.testing.worker import start_worker

    from billing.jobs.celery_app import create_celery_app

    async def seed() -> tuple[str, str]:
        engine = make_engine(sqlite_url)
        sessions = make_sessionmaker(engine)
        tenant, key = await create_tenant(sessions, f"c-{unique}")
        await UsageWriter(sessions, UsageSpool(tmp_path)).write_now(
            [entry(tenant, key, f"c{i}-{unique}", AUG + dt.timedelta(hours=i)) for i in range(5)]
        )
        budgets = RedisBudgets.from_url(redis_url, prefix=f"test:{unique}:")
        b = Budget(BudgetScope.TENANT, tenant, tenant, 10**12, BudgetPeriod.DAY)
        await budgets.reserve(f"dead-{unique}", [b], 5, lease_seconds=0.001)
        await budgets.close()
        await engine.dispose()
        return tenant, key

    tenant, _ = asyncio.run(seed())
    app = create_celery_app(
        broker_url=redis_url,
        database_url=sqlite_url,
        redis_url=redis_url,
        result_backend=redis_url,
        budget_prefix=f"test:{unique}:",
        queue="billing-test",
    )
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10):
        rollup = app.tasks["billing.hourly_rollup"].delay().get(timeout=30)
        reaped = app.tasks["billing.reap_reservations"].delay().get(timeout=30)
        invoices = app.tasks["billing.monthly_invoices"].delay(month="2026-08").get(timeout=30)
    assert rollup["hours_rebuilt"] == 5
    assert reaped == {"reaped": 1}
    assert invoices["month"] == "2026-08" and invoices["invoices"] == 1

    async def check() -> None:
        engine = make_engine(sqlite_url)
        async with make_sessionmaker(engine)() as s:
            inv = await get_invoice(s, tenant, AUG.date())
        await engine.dispose()
        assert inv is not None and inv.status == "final" and len(inv.lines) == 3

    asyncio.run(check())
    asyncio.run(purge_redis_prefix(redis_url, f"test:{unique}:"))
