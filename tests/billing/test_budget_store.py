"""Budget configuration in the database and the ledger's spend per period."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from billing.budgets import BudgetMode, BudgetPeriod, BudgetScope, BudgetStore, MemoryBudgets, spent_in_period
from billing.ledger import UsageSpool, UsageWriter
from tests.billing.conftest import create_tenant, entry


async def test_set_get_and_budgets_for(sessions, unique: str, tmp_path: Path) -> None:
    tenant, key = await create_tenant(sessions, f"b-{unique}")
    store = BudgetStore(sessions)
    budget, event = await store.set_budget(
        scope="tenant",
        scope_id=tenant,
        tenant_id=tenant,
        limit_usd=Decimal("12.50"),
        period="day",
        mode="soft",
        actor="cli",
    )
    assert budget.limit_units == 12_500_000_000_000 and budget.mode is BudgetMode.SOFT
    assert event["kind"] == "billing.budget.set" and event["payload"]["limit_usd"] == "12.5"
    await store.set_budget(
        scope="tenant",
        scope_id=tenant,
        tenant_id=tenant,
        limit_usd="20",
        period="month",
        mode="hard",
        actor="cli",
    )
    await store.set_budget(scope="key", scope_id=key, tenant_id=tenant, limit_units=5, actor="cli")
    got = await store.budgets_for(tenant, key)
    assert [(b.scope, b.limit_units, b.period) for b in got] == [
        (BudgetScope.TENANT, 20 * 10**12, BudgetPeriod.MONTH),
        (BudgetScope.KEY, 5, BudgetPeriod.MONTH),
    ]
    assert [b.scope for b in await store.budgets_for(tenant, None)] == [BudgetScope.TENANT]
    assert (await store.remove_budget("key", key, actor="cli"))["kind"] == "billing.budget.removed"
    assert await store.get("key", key) is None

    # spend from the ledger re-seeds a lost counter
    at = dt.datetime(2026, 9, 10, 12, tzinfo=dt.UTC)
    writer = UsageWriter(sessions, UsageSpool(tmp_path / "spool"))
    entries = [entry(tenant, key, f"sp{i}-{unique}", at - dt.timedelta(days=i * 5)) for i in range(3)]
    await writer.write_now(entries)
    async with sessions() as s:
        spent = await spent_in_period(s, got[0], at)  # month: Sept 10 and Sept 5 only
    assert spent == entries[0].cost_total + entries[1].cost_total
    backend = MemoryBudgets()
    assert await backend.seed_spent(got[0], spent, at=at)
    assert (await backend.status(got[0], at)).spent_units == spent
