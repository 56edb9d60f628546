"""The gateway SIGKILLed under load (64 clients, half streaming) and started again on the same
data directory: every answer a client received in full has its usage record, exact to the
token and the 1e-12 USD, and its audit event; no budget reservation is left, the budget's
spent counter equals the ledger, and `gateway audit verify` passes.

Without the writers' journal (billing/ledger/journal.py) the records and events of the answers
sent in the last flush interval before the kill were lost: the test prints how many of the
answers received in full had no record in the database at the moment of the kill."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import start_gateway
from tests.load.conftest import bearer, instant_env, start_instant_gateway
from tests.load.harness import UNITS_PER_USD, audited_requests, budget, ledger, run_load, wait_until

pytestmark = pytest.mark.slow

CLIENTS = 64
KILL_AT_S = 6.0
LOAD_S = 9.0


def test_sigkill_under_load_loses_no_answered_usage(instant_upstream: int, tmp_path: Path) -> None:
    data_dir = tmp_path / "gw"
    gw = start_instant_gateway(data_dir, instant_upstream, "killed")
    db = data_dir / "gateway.db"
    killed: list[bool] = []

    def kill(elapsed: float) -> None:
        if elapsed >= KILL_AT_S and not killed:
            gw.server.process.send_signal(signal.SIGKILL)
            gw.server.process.wait(timeout=20)
            killed.append(True)

    report = asyncio.run(
        run_load(gw.server.base_url, gw.key, clients=CLIENTS, duration_s=LOAD_S, max_tokens=16, on_tick=kill)
    )
    assert killed and gw.server.process.returncode == -signal.SIGKILL
    gw.server.log_path.rename(data_dir / "server-killed.log")  # the restart starts a new log
    statuses = report.statuses()
    errors = Counter(a.error for a in report.answers if a.status is not None and a.status >= 500)
    assert not errors, (statuses, errors.most_common(3))
    full = report.complete()
    cut = [a for a in report.answers if not a.complete]
    assert len(full) > 100 and cut  # answers before the kill, and connections the kill broke
    assert all(a.status in (200, None) for a in report.answers), statuses
    at_kill = ledger(db, gw.tenant)
    missing_at_kill = sum(a.request_id not in at_kill for a in full)

    # Started again on the same data directory: the writers replay what the journal held.
    again = start_gateway(data_dir, instant_env(data_dir, instant_upstream))
    try:
        rows = ledger(db, gw.tenant)
        for a in full:
            assert a.request_id in rows, f"{a.request_id} answered in full but not in the ledger"
            completion_tokens, cost_units, _status = rows[a.request_id]
            assert a.usage is not None
            assert completion_tokens == a.usage["completion_tokens"]
            assert Decimal(cost_units) / UNITS_PER_USD == Decimal(a.usage["cost_usd"])
        # Records without an answer received in full belong to requests the kill interrupted.
        assert len(set(rows) - {a.request_id for a in full}) <= len(cut)
        audited = audited_requests(db)
        assert not [a.request_id for a in full if a.request_id not in audited]

        verify = again.cli("audit", "verify", "--json", check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert json.loads(verify.stdout)["ok"] is True

        # A request after the restart seeds the budget's counter from the ledger.
        one = httpx.post(
            f"{again.base_url}/v1/chat/completions",
            headers=bearer(gw.key),
            json={"model": "deepseek-v4-flash", "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
        )
        assert one.status_code == 200, one.text

        def settled() -> bool:
            held = budget(again.base_url, gw.admin_key, gw.tenant)
            spent = sum(r[1] for r in ledger(db, gw.tenant).values())
            return bool(held["reserved_units"] == 0 and held["spent_units"] == spent)

        assert wait_until(settled, 30), (budget(again.base_url, gw.admin_key, gw.tenant), len(rows))
        print(
            f"\nSIGKILL at {KILL_AT_S:.0f} s of {CLIENTS}-client load: {len(full)} answers received in full, "
            f"{len(cut)} cut; {missing_at_kill} of the full ones had no record in the database at the kill, "
            f"all {len(full)} after the restart (ledger {len(rows)} records); audit chain intact; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
    finally:
        again.stop()
