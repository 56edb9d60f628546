"""Rollup, usage by day and line item, invoices and the savings report."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from billing.cost import round_units_to_cents, units_to_usd_str
from billing.ledger import (
    UsageSpool,
    UsageWriter,
    generate_invoice,
    generate_monthly_invoices,
    get_invoice,
    run_rollup,
    savings_report,
    usage_by_day,
    usage_csv,
    usage_totals,
)
from tests.billing.conftest import create_tenant, entry

SEP = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
OCT = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


async def test_rollup_queries_invoice_savings(sessions, unique, tmp_path: Path, catalog) -> None:
    tenant, key = await create_tenant(sessions, f"ru-{unique}")
    writer = UsageWriter(sessions, UsageSpool(tmp_path / "spool"))
    day1 = dt.datetime(2026, 9, 7, 2, 30, tzinfo=dt.UTC)  # Monday, peak
    day2 = dt.datetime(2026, 9, 8, 12, 0, tzinfo=dt.UTC)  # Tuesday, off-peak
    entries = [
        entry(
            tenant,
            key,
            f"a{i}-{unique}",
            day1 + dt.timedelta(minutes=i),
            variant="pro",
            mode="think-max",
            hit=1000,
            miss=500,
            out=2000,
            reasoning=1500,
        )
        for i in range(3)
    ] + [
        entry(tenant, None, f"b{i}-{unique}", day2, variant="flash", mode="non-think", hit=0, miss=77, out=5)
        for i in range(4)
    ]
    await writer.write_now(entries)
    await run_rollup(sessions, now=dt.datetime(2026, 9, 9, tzinfo=dt.UTC))

    async with sessions() as s:
        days = await usage_by_day(s, tenant, SEP, OCT)
        totals = await usage_totals(s, tenant, SEP, OCT)
    assert [(d.day.isoformat(), d.variant, d.mode, d.totals.requests) for d in days] == [
        ("2026-09-07", "pro", "think-max", 3),
        ("2026-09-08", "flash", "non-think", 4),
    ]
    assert totals.cost_total == sum(e.cost_total for e in entries)
    assert days[0].totals.reasoning_tokens == 4500 and days[0].totals.output_tokens == 6000
    pro_peak = catalog.prices_at("pro", day1)
    assert days[0].totals.cost_output == 6000 * int(pro_peak.output * 10**6)
    j = days[0].to_json()
    assert j["line_items"][2] == {"token_class": "output", "tokens": 6000, "cost_usd": "0.02376"}
    assert "2026-09-08,flash,non-think,cache_miss,308," in usage_csv(days)

    # A record that arrives late (spool replay) for an hour already rolled up is picked up.
    late = entry(tenant, key, f"late-{unique}", day1, variant="pro", mode="think-max")
    await writer.write_now([late])
    await run_rollup(sessions)
    async with sessions() as s:
        assert (await usage_totals(s, tenant, SEP, OCT)).cost_total == totals.cost_total + late.cost_total
        by_key = await usage_by_day(s, tenant, SEP, OCT, api_key_id=key)
        hourly_path = await usage_by_day(s, tenant, SEP, OCT - dt.timedelta(microseconds=1))
        daily_path = await usage_by_day(s, tenant, SEP, OCT)
    assert sum(d.totals.requests for d in by_key) == 4
    assert hourly_path == daily_path and len(daily_path) == 2

    # Invoice: exact lines, total rounded once to cents half-even; final invoices are frozen.
    draft = await generate_invoice(sessions, tenant, SEP.date())
    exact = totals.cost_total + late.cost_total
    assert draft.total_units == exact == sum(line["amount_units"] for line in draft.lines)
    assert draft.total_cents == round_units_to_cents(exact)
    assert {(x["variant"], x["mode"], x["token_class"]) for x in draft.lines} >= {
        ("pro", "think-max", "cache_hit"),
        ("pro", "think-max", "output"),
        ("flash", "non-think", "cache_miss"),
    }
    finals = await generate_monthly_invoices(sessions, SEP.date())
    mine = [d for d in finals if d.tenant_id == tenant]
    assert len(mine) == 1 and mine[0].status == "final" and mine[0].total_units == exact
    await writer.write_now([entry(tenant, key, f"after-{unique}", day2)])
    await run_rollup(sessions)
    again = await generate_invoice(sessions, tenant, SEP.date())
    assert again.status == "final" and again.total_units == exact
    async with sessions() as s:
        stored = await get_invoice(s, tenant, SEP.date())
    assert stored is not None and stored.to_json()["subtotal_exact_usd"] == units_to_usd_str(exact)

    # Savings at comparator list prices.
    async with sessions() as s:
        report = await savings_report(s, catalog, tenant, SEP, OCT)
    t = report.totals
    opus = next(c for c in report.comparators if c.comparator_id == "claude-opus-4.7")
    expected = (Decimal(t.cache_hit_tokens + t.cache_miss_tokens) * 5 + Decimal(t.output_tokens) * 25) / 10**6
    assert Decimal(units_to_usd_str(opus.cost_units)) == expected
    assert opus.savings_units == opus.cost_units - t.cost_total > 0
    gpt = next(c for c in report.comparators if c.comparator_id == "gpt-5.5")
    assert gpt.cost_units == (t.cache_hit_tokens + t.cache_miss_tokens + t.output_tokens) * 35 * 10**6
    assert report.to_json()["comparators"][0]["savings_pct"]
