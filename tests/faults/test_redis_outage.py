"""Redis stopped and started again under load (it keeps nothing on disk, so every counter,
reservation and rate-limit bucket is lost), once with GATEWAY_REDIS_FAILURE=closed and once
with open, side by side (two gateways, each with its own Redis and database).

Checked: no 5xx other than a clean 503 `service_unavailable` with Retry-After; closed refuses
everything while Redis is down and open serves everything; rate limits refuse again after the
restart; every answer the clients received is one ledger row with the same cost; the
re-seeded budget counter's spent equals the ledger's sum to the unit, with nothing reserved
and no lease left.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

import pytest

from billing.budgets.types import BudgetPeriod, period_key
from billing.cost import usd_to_units
from tests.faults.harness import FaultStack, require_services
from tests.faults.load import Load

pytestmark = pytest.mark.slow

BEFORE_S, DOWN_S, AFTER_S = 2.0, 2.5, 2.5
# A hard monthly budget far above the load, and a tenant limited to 10 requests a minute.
TENANTS: list[dict[str, object]] = [{"name": "acme", "budget_usd": "100"}, {"name": "limited", "rpm": 10}]


async def test_redis_restart_under_load_closed_and_open(tmp_path: Path) -> None:
    require_services()
    stacks = {mode: FaultStack(tmp_path / mode) for mode in ("closed", "open")}
    try:
        await asyncio.gather(
            *(asyncio.to_thread(s.prepare, TENANTS, {"GATEWAY_REDIS_FAILURE": m}) for m, s in stacks.items())
        )
        tenants = {m: _tenants(s) for m, s in stacks.items()}
        for s in stacks.values():
            await s.proxy.start()
            s.start_gateway()
        await asyncio.gather(*(asyncio.to_thread(s.wait_ready) for s in stacks.values()))
        loads = {}
        for m, s in stacks.items():
            (_, budget_key), (_, limited_key) = tenants[m]
            loads[m] = (Load(s.base_url, [budget_key], clients_per_key=6), Load(s.base_url, [limited_key], 1))
        every = [ld for pair in loads.values() for ld in pair]
        await asyncio.gather(*(ld.start() for ld in every))
        await asyncio.sleep(BEFORE_S)
        # The phases between are not asserted: an answer may come while the fault changes.
        _phase(every, "stopping")
        await asyncio.gather(*(asyncio.to_thread(s.redis.stop) for s in stacks.values()))
        _phase(every, "down")
        await asyncio.sleep(DOWN_S)
        _phase(every, "starting")
        await asyncio.gather(*(asyncio.to_thread(s.redis.start) for s in stacks.values()))
        _phase(every, "after")
        await asyncio.sleep(AFTER_S)
        await asyncio.gather(*(ld.stop() for ld in every))

        report = {}
        for m, s in stacks.items():
            budget_load, limited_load = loads[m]
            report[m] = await asyncio.to_thread(_check, m, s, tenants[m], budget_load, limited_load)
        print(json.dumps({"redis_outage": report}))
    finally:
        for s in stacks.values():
            await s.proxy.close()
            s.close()


def _tenants(s: FaultStack) -> tuple[tuple[str, str], tuple[str, str]]:
    acme, limited = s.tenants["acme"], s.tenants["limited"]
    return (acme["tenant_id"], acme["key"]), (limited["tenant_id"], limited["key"])


def _phase(loads: list[Load], phase: str) -> None:
    for ld in loads:
        ld.phase = phase


def _check(
    mode: str, s: FaultStack, tenants: tuple[tuple[str, str], tuple[str, str]], budget: Load, limited: Load
) -> dict[str, object]:
    (acme_id, _), (limited_id, _) = tenants
    answers = budget.answers + limited.answers
    assert answers, "no request was answered"
    for a in answers:
        assert a.status in (200, 429, 503), (mode, a)
        if a.status == 503:
            assert a.code == "service_unavailable" and a.retry_after, (mode, a)
    # Sent and answered within one phase (one sent before the stop may meet the fault).
    by_phase = {
        p: [a for a in budget.answers if a.phase == a.phase_end == p] for p in ("before", "down", "after")
    }
    assert all(a.status == 200 for a in by_phase["before"] + by_phase["after"]), budget.summary()
    assert any(a.status == 200 for a in by_phase["after"]), budget.summary()
    if mode == "closed":
        assert by_phase["down"] and all(a.status == 503 for a in by_phase["down"]), budget.summary()
    else:
        assert by_phase["down"] and all(a.status == 200 for a in by_phase["down"]), budget.summary()
    # Rate limits: enforced before, enforced again after the restart (the bucket starts full).
    limited_after = [a.status for a in limited.answers if a.phase == "after"]
    assert 200 in limited_after and 429 in limited_after, limited.summary()

    for tenant_id, load in ((acme_id, budget), (limited_id, limited)):
        served = load.served()
        rows = _ledger(s, tenant_id, len(served))
        assert rows == (len(served), sum(usd_to_units(a.cost_usd or 0) for a in served)), (mode, tenant_id)
    # The budget counter, re-seeded from the ledger after the restart, agrees with it exactly.
    counter = f"gw:bud:tenant:{acme_id}:{period_key(BudgetPeriod.MONTH, dt.datetime.now(dt.UTC))}"
    spent = int(s.redis.cli("HGET", counter, "spent") or 0)
    reserved = int(s.redis.cli("HGET", counter, "reserved") or 0)
    leases = int(s.redis.cli("ZCARD", "gw:bres-leases") or 0)
    ledger_units = _ledger(s, acme_id, len(budget.served()))[1]
    assert (spent, reserved, leases) == (ledger_units, 0, 0), mode
    refused = [a.seconds for a in answers if a.status == 503]
    return {
        "phases": budget.summary(),
        "limited_phases": limited.summary(),
        "ledger_rows": len(budget.served()) + len(limited.served()),
        "spent_units": spent,
        "ledger_units": ledger_units,
        "max_refusal_s": round(max(refused), 3) if refused else None,
    }


def _ledger(s: FaultStack, tenant_id: str, expect: int) -> tuple[int, int]:
    """(rows, cost units) of the tenant's usage records, once the writer has caught up."""
    deadline = time.monotonic() + 20
    query = "SELECT count(*), coalesce(sum(cost_total), 0) FROM usage_records WHERE tenant_id = '%s'"
    while True:
        out = s.sql(query % tenant_id)
        count, total = (int(x) for x in out.split("|"))
        if count >= expect or time.monotonic() > deadline:
            return count, total
        time.sleep(0.2)
