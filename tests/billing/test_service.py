"""The gateway-facing facade: admit -> finish/abort with rate limits, budgets, ledger."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from billing.budgets import Budget, BudgetPeriod, BudgetScope, MemoryBudgets
from billing.errors import BudgetExceededError, RateLimitedError
from billing.ledger import UsageSpool, UsageWriter
from billing.models import UsageRecord
from billing.ratelimit import MemoryRateLimiter, RateLimit
from billing.service import AdmitRequest, BillingService, Usage
from tests.billing.conftest import create_tenant

AT = dt.datetime(2026, 9, 8, 2, 0, tzinfo=dt.UTC)  # Tuesday, peak


async def test_admit_finish_abort(sessions, unique: str, tmp_path: Path, catalog) -> None:
    tenant, key = await create_tenant(sessions, f"svc-{unique}")
    writer = UsageWriter(sessions, UsageSpool(tmp_path))
    budgets = MemoryBudgets()
    svc = BillingService(catalog, budgets, MemoryRateLimiter(), writer)
    budget = Budget(BudgetScope.TENANT, tenant, tenant, 10**10, BudgetPeriod.MONTH)  # 1 cent
    limits = [RateLimit("key", key, requests_per_minute=3)]

    def req(i: int, max_out: int = 1000) -> AdmitRequest:
        return AdmitRequest(
            f"q{i}-{unique}",
            1,
            tenant,
            key,
            "pro",
            "think-high",
            "deepseek-v4-pro",
            AT,
            prompt_tokens=1000,
            max_output_tokens=max_out,
            budgets=[budget],
            rate_limits=limits,
        )

    adm = await svc.admit(req(1))
    assert adm.quote.version_id == "v4-peak@peak"
    assert adm.worst_case_units == 1000 * 1_320_000 + 1000 * 3_960_000  # 0.00528 USD
    done = await svc.finish(adm, Usage(600, 400, 300, 200), stream=True, artifact_id="a")
    assert done.cost.as_usd_str() == {
        "cost_usd": "0.0017424",
        "cache_hit_usd": "0.0000264",
        "cache_miss_usd": "0.000528",
        "output_usd": "0.001188",
    }
    assert (await budgets.status(budget, AT)).spent_units == done.cost.total

    with pytest.raises(BudgetExceededError):
        await svc.admit(req(2, max_out=5000))  # 0.0017424 + 0.02112 > 0.01
    adm3 = await svc.admit(req(3))
    await svc.abort(adm3)
    assert await budgets.in_flight() == 0
    with pytest.raises(RateLimitedError) as err:
        await svc.admit(req(4))  # 3 admitted (the budget refusal consumed one) in a minute
    assert err.value.result.headers()["retry-after"]

    await writer.flush()
    async with sessions() as s:
        row = (await s.scalars(select(UsageRecord).where(UsageRecord.request_id == f"q1-{unique}"))).one()
    assert (row.cost_total, row.price_version, row.stream, row.reasoning_tokens) == (
        done.cost.total,
        "v4-peak@peak",
        True,
        200,
    )
