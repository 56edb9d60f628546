"""Sustained load on a real `gateway serve` in front of the instant upstream: 64 concurrent
clients for 60 s, half streaming with `include_usage`, half not, every request checked
against the tenant's rate limits and reserved against its budget. No 5xx, every request
answered in full, and the ledger equals, record by record and in total, the usage every
client was given (tokens and cost exact to 1e-12 USD), as does `GET /v1/usage`; afterwards no
budget reservation is held and the budget's spent counter equals the ledger."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.load.conftest import LoadGateway, start_instant_gateway
from tests.load.harness import UNITS_PER_USD, budget, run_load, wait_ledger

pytestmark = pytest.mark.slow

CLIENTS = 64
SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
MAX_TOKENS = 16


def test_sustained_load_reconciles_exactly(instant_upstream: int, tmp_path: Path) -> None:
    gw = start_instant_gateway(tmp_path / "gw", instant_upstream, "load")
    try:
        _load_and_reconcile(gw)
    finally:
        gw.server.stop()


def _load_and_reconcile(gw: LoadGateway) -> None:
    base = gw.server.base_url
    db = gw.server.data_dir / "gateway.db"
    report = asyncio.run(run_load(base, gw.key, clients=CLIENTS, duration_s=SECONDS, max_tokens=MAX_TOKENS))
    answers = report.answers
    statuses = report.statuses()
    # No rate limit is set and the budget covers the run many times over: every request
    # must be answered 200 (a 429 or 402 here would be a defect, a 5xx always is).
    assert statuses == {200: len(answers)}, statuses
    assert all(a.complete and a.usage is not None and a.request_id for a in answers), [
        a.error for a in answers if not a.complete
    ][:5]
    streamed = sum(a.stream for a in answers)
    assert streamed and len(answers) - streamed

    rows = wait_ledger(db, gw.tenant, len(answers))
    got = {a.request_id: a for a in answers if a.request_id}
    assert len(got) == len(answers)  # request ids are unique
    assert set(rows) == set(got)
    for request_id, (completion_tokens, cost_units, status) in rows.items():
        usage = got[request_id].usage
        assert usage is not None
        assert status == "completed"
        assert completion_tokens == usage["completion_tokens"]
        assert Decimal(cost_units) / UNITS_PER_USD == Decimal(usage["cost_usd"]), request_id
    total = sum((a.cost for a in answers), Decimal(0))
    assert total > 0
    assert Decimal(sum(r[1] for r in rows.values())) / UNITS_PER_USD == total

    usage_report = httpx.get(f"{base}/v1/usage", headers={"authorization": f"Bearer {gw.key}"}, timeout=60)
    assert usage_report.status_code == 200, usage_report.text
    body = usage_report.json()
    assert Decimal(body["total_cost_usd"]) == total
    assert sum(d["requests"] for d in body["data"]) == len(answers)

    held = budget(base, gw.admin_key, gw.tenant)
    assert held["reserved_units"] == 0, held
    assert held["spent_units"] == sum(r[1] for r in rows.values())
    print(
        f"\nload: {len(answers)} answers ({streamed} streamed) in {report.duration_s:.1f} s "
        f"({len(answers) / report.duration_s:.1f}/s) by {CLIENTS} clients; ledger {len(rows)} records, "
        f"{total} USD, exact; load average {os.getloadavg()[0]:.1f}"
    )
