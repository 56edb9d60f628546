"""Usage reports include the records the hourly rollup does not hold yet (exact, at once).

Runs on SQLite and, with GATEWAY_TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import update

from billing.db import transaction, utcnow
from billing.ledger import UsageSpool, UsageWriter, run_rollup, usage_by_day, usage_totals
from billing.ledger.models import BillingJobState
from billing.ledger.queries import tenants_with_usage, unrolled_hours, usage_by_variant_mode
from billing.ledger.rollup import STATE_KEY, floor_hour
from billing.models import UsageRecord
from tests.billing.conftest import create_tenant, entry


async def _backdate_ingestion(sessions, tenant: str, minutes: int) -> None:
    """As if these records had been written `minutes` ago (before the rollup's last run)."""
    async with transaction(sessions) as s:
        await s.execute(
            update(UsageRecord)
            .where(UsageRecord.tenant_id == tenant)
            .values(ingested_at=utcnow() - dt.timedelta(minutes=minutes))
        )


async def _last_rollup_before(sessions, minutes: int) -> None:
    """The rollup's last run as `minutes` ago: on the shared PostgreSQL another test may have
    run it a minute ago, and then records backdated by 30 minutes would not be rebuilt."""
    at = (utcnow() - dt.timedelta(minutes=minutes)).isoformat()
    async with transaction(sessions) as s:
        state = await s.get(BillingJobState, STATE_KEY)
        if state is None:
            s.add(BillingJobState(name=STATE_KEY, value={"last_started": at}, updated_at=utcnow()))
        else:
            state.value = {**state.value, "last_started": at}


async def test_report_adds_records_not_rolled_up_yet(sessions, unique, tmp_path: Path) -> None:
    tenant, key = await create_tenant(sessions, f"un-{unique}")
    other, other_key = await create_tenant(sessions, f"uo-{unique}")
    writer = UsageWriter(sessions, UsageSpool(tmp_path / "spool"))
    now = utcnow()
    hour = floor_hour(now)
    month = hour.replace(day=1, hour=0)
    end = hour.replace(hour=0) + dt.timedelta(days=1)
    # Rolled up: earlier in this hour, and in an hour of the day before.
    old = [entry(tenant, key, f"old{i}-{unique}", hour + dt.timedelta(seconds=i)) for i in range(3)]
    day_before = hour - dt.timedelta(days=1)
    yesterday = entry(tenant, key, f"y-{unique}", day_before, variant="pro", mode="think-max")
    await writer.write_now([*old, yesterday, entry(other, other_key, f"x-{unique}", hour)])
    await _backdate_ingestion(sessions, tenant, 30)
    await _backdate_ingestion(sessions, other, 30)
    await _last_rollup_before(sessions, minutes=60)  # the shared database's rollup state
    await run_rollup(sessions)

    # Not rolled up yet: two more in the same hour (one without a key), a late replay into
    # yesterday's hour, and another tenant's record that must not leak in.
    fresh = [
        entry(tenant, key, f"new-{unique}", now, out=123, mode="think-high", reasoning=50),
        entry(tenant, None, f"nokey-{unique}", now, hit=0, miss=9, out=1),
        entry(tenant, key, f"late-{unique}", day_before + dt.timedelta(seconds=5), variant="pro"),
    ]
    await writer.write_now([*fresh, entry(other, other_key, f"x2-{unique}", now, out=999)])

    everything = [*old, yesterday, *fresh]
    exact = sum(e.cost_total or 0 for e in everything)
    async with sessions() as s:
        stale = await unrolled_hours(s, tenant, month, end)
        daily = await usage_by_day(s, tenant, month, end)  # usage_daily path (whole days)
        hourly = await usage_by_day(s, tenant, month, end - dt.timedelta(microseconds=1))
        by_key = await usage_by_day(s, tenant, month, end, api_key_id=key)
        rollup_only = await usage_by_day(s, tenant, month, end, include_fresh=False)
        totals = await usage_totals(s, tenant, month, end)
        by_vm = await usage_by_variant_mode(s, tenant, month, end)
        tenants = await tenants_with_usage(s, month, end)
    if hour.day == 1:  # yesterday lies in the previous month: outside [month, end)
        exact -= (yesterday.cost_total or 0) + (fresh[2].cost_total or 0)
    assert stale is not None and hour in stale
    assert sum(d.totals.cost_total for d in daily) == exact == totals.cost_total
    assert daily == hourly
    assert sum(d.totals.requests for d in daily) == totals.requests
    assert sum(t.cost_total for t in by_vm.values()) == exact
    key_exact = exact - (fresh[1].cost_total or 0)
    assert sum(d.totals.cost_total for d in by_key) == key_exact
    # The rollup alone lags: it misses exactly the fresh records (proves the test can fail).
    missing = sum(e.cost_total or 0 for e in fresh if hour.day != 1 or e is not fresh[2])
    assert sum(d.totals.cost_total for d in rollup_only) == exact - missing
    think_high = [d for d in daily if d.mode == "think-high"]
    assert [d.totals.reasoning_tokens for d in think_high] == [50]
    assert tenant in tenants and other in tenants

    # Once the rollup has caught up, the rollup alone and the exact report agree (the
    # fresh hours are still read from the records until they are older than the overlap).
    await run_rollup(sessions)
    async with sessions() as s:
        caught_up = await usage_by_day(s, tenant, month, end, include_fresh=False)
        assert caught_up == await usage_by_day(s, tenant, month, end)
    assert sum(d.totals.cost_total for d in caught_up) == exact


async def test_report_before_any_rollup_reads_the_records(sessions, unique, tmp_path: Path) -> None:
    """A fresh install: the rollup never ran, the report still counts every record."""
    from billing.ledger.models import BillingJobState
    from billing.ledger.rollup import STATE_KEY

    async with sessions() as s:
        if await s.get(BillingJobState, STATE_KEY) is not None:
            return  # a shared database where some test already ran the rollup
    tenant, key = await create_tenant(sessions, f"ur-{unique}")
    at = dt.datetime(2026, 9, 7, 2, 30, tzinfo=dt.UTC)
    records = [entry(tenant, key, f"r{i}-{unique}", at + dt.timedelta(hours=i)) for i in range(4)]
    await UsageWriter(sessions, UsageSpool(tmp_path / "spool")).write_now(records)
    start, end = dt.datetime(2026, 9, 1, tzinfo=dt.UTC), dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    async with sessions() as s:
        assert await unrolled_hours(s, tenant, start, end) is None
        days = await usage_by_day(s, tenant, start, end)
        assert await usage_by_day(s, tenant, start, end, include_fresh=False) == []
        assert tenant in await tenants_with_usage(s, start, end)
    assert sum(d.totals.cost_total for d in days) == sum(r.cost_total or 0 for r in records)
    assert sum(d.totals.requests for d in days) == 4
