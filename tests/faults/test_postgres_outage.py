"""PostgreSQL unreachable for 10 s under load: the proxy in front of it cuts every connection
and refuses new ones, then lets them through again.

Two gateways share the database and Redis: one with the default stale-if-error (keys that
authenticated and the configuration read before keep serving), one with
GATEWAY_STALE_IF_ERROR_S=0 (refuses once its key cache entry expires). A key first used during
the outage gets a clean 503. Checked: no 5xx other than 503 `service_unavailable` with
Retry-After; every answer the clients received is exactly one ledger row (same cost) and
exactly one `request.completed` audit event, once the spools replayed; the budget counter
equals the ledger's sum; `gateway audit verify` finds the chain intact.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

import httpx
import pytest

from billing.budgets.types import BudgetPeriod, period_key
from billing.cost import usd_to_units
from tests.faults.harness import FaultStack, require_services
from tests.faults.load import Load
from tests.faults.provision import run_cli

pytestmark = pytest.mark.slow

BEFORE_S, DOWN_S, AFTER_S = 2.0, 10.0, 3.0
TENANTS: list[dict[str, object]] = [
    {"name": "acme", "budget_usd": "100"},  # on the serving gateway
    {"name": "strict"},  # on the gateway that refuses
    {"name": "late"},  # first request during the outage
]


async def test_postgres_outage_under_load(tmp_path: Path) -> None:
    require_services()
    s = FaultStack(tmp_path / "pg")
    try:
        await asyncio.to_thread(s.prepare, TENANTS)
        await s.proxy.start()
        serve_url = s.start_gateway()
        strict_url = s.start_gateway({"GATEWAY_STALE_IF_ERROR_S": "0"}, name="gateway-strict")
        await asyncio.to_thread(s.wait_ready)
        acme = Load(serve_url, [s.tenants["acme"]["key"]], clients_per_key=6)
        strict = Load(strict_url, [s.tenants["strict"]["key"]], clients_per_key=2)
        late = Load(serve_url, [s.tenants["late"]["key"]], clients_per_key=1)
        await asyncio.gather(acme.start(), strict.start())
        await asyncio.sleep(BEFORE_S)

        await s.proxy.cut()
        _phase([acme, strict, late], "down")
        await late.start()
        await asyncio.sleep(2.0)  # past every cache's TTL (keys 1 s, configuration 2 s)
        _phase([acme, strict, late], "down-2s")
        # The replicas that serve stay in the load balancer; the one that refuses leaves it.
        async with httpx.AsyncClient(timeout=10) as client:
            probes = [(await client.get(f"{u}/readyz")) for u in (serve_url, strict_url)]
        assert [p.status_code for p in probes] == [200, 503], [p.text for p in probes]
        assert probes[0].json()["degraded"] is True
        await asyncio.sleep(DOWN_S - 2.0)
        await s.proxy.restore()
        _phase([acme, strict, late], "after")
        await asyncio.sleep(AFTER_S)
        await asyncio.gather(acme.stop(), strict.stop(), late.stop())

        for load in (acme, strict, late):
            for a in load.answers:
                assert a.status in (200, 503), a
                if a.status == 503:
                    assert a.code == "service_unavailable" and a.retry_after, a
        # Known keys keep being served; the strict gateway and a key never seen are refused.
        assert _statuses(acme, "down") == {200} and _statuses(acme, "down-2s") == {200}, acme.summary()
        assert _statuses(strict, "down-2s") == {503}, strict.summary()
        assert _statuses(late, "down-2s") == {503}, late.summary()
        for load in (acme, strict, late):
            assert _statuses(load, "after") == {200}, load.summary()

        named = {"acme": acme, "strict": strict, "late": late}
        report: dict[str, object] = {"phases": {n: ld.summary() for n, ld in named.items()}}
        for name, load in named.items():
            tid = s.tenants[name]["tenant_id"]
            served = load.served()
            expected = (len(served), sum(usd_to_units(a.cost_usd or 0) for a in served))
            ledger = await asyncio.to_thread(_wait_for, s, _LEDGER % tid, expected)
            assert ledger == expected, (name, ledger, expected)
            events = await asyncio.to_thread(_wait_for, s, _AUDIT % tid, (len(served), len(served)))
            assert events == (len(served), len(served)), (name, events)  # one each, none twice
            assert {a.request_id for a in served} == set(s.sql(_AUDIT_IDS % tid).split()), name
        acme_id = s.tenants["acme"]["tenant_id"]
        counter = f"gw:bud:tenant:{acme_id}:{period_key(BudgetPeriod.MONTH, dt.datetime.now(dt.UTC))}"
        spent = int(s.redis.cli("HGET", counter, "spent") or 0)
        reserved = int(s.redis.cli("HGET", counter, "reserved") or 0)
        assert (spent, reserved) == (_tuple(s.sql(_LEDGER % acme_id))[1], 0)

        code, output = await asyncio.to_thread(run_cli, s.env, ["audit", "verify", "--json"])
        result = json.loads(output.strip().splitlines()[-1])
        assert code == 0 and result["ok"] and not result["problems"], result
        report["audit_checked"] = result["checked"]
        report["ledger_rows"] = int(s.sql("SELECT count(*) FROM usage_records"))
        report["cut_connections"] = s.proxy.cut_connections
        print(json.dumps({"postgres_outage": report}))
    finally:
        await s.proxy.close()
        s.close()


_LEDGER = "SELECT count(*), coalesce(sum(cost_total), 0) FROM usage_records WHERE tenant_id = '%s'"
_AUDIT = (
    "SELECT count(*), count(DISTINCT request_id) FROM audit_events "
    "WHERE tenant_id = '%s' AND kind = 'request.completed'"
)
_AUDIT_IDS = "SELECT request_id FROM audit_events WHERE tenant_id = '%s' AND kind = 'request.completed'"


def _phase(loads: list[Load], phase: str) -> None:
    for ld in loads:
        ld.phase = phase


def _statuses(load: Load, phase: str) -> set[int]:
    """Statuses of the requests sent and answered within `phase`."""
    return {a.status for a in load.answers if a.phase == a.phase_end == phase}


def _tuple(out: str) -> tuple[int, int]:
    a, b = out.split("|")
    return int(a), int(b)


def _wait_for(s: FaultStack, query: str, expected: tuple[int, int], timeout_s: float = 30) -> tuple[int, int]:
    """Poll until the spools have replayed (the query returns `expected`) or time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = _tuple(s.sql(query))
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.25)
