"""The gateway under load and faults, in one fleet (tests/load/conftest.py): a real
`gateway serve` on SQLite with two pools, Flash on bench/instant_upstream.py (so the load is on
the gateway itself: auth, policy, rate limits, budgets, the usage and audit writers) and Pro on
a real `gateway worker` (the embedded engine in its own process). In order, as each leaves the
fleet in a state the next one builds on:

1. 64 concurrent clients for 60 s, half streaming with `include_usage`, half not, every request
   checked against the tenant's rate limits and reserved against its budget: no 5xx, every
   request answered in full, and the ledger equals, record by record and in total, the usage
   every client was given (tokens and cost exact to 1e-12 USD), as does `GET /v1/usage`; no
   reservation is held afterwards and the budget's spent counter equals the ledger.
2. Clients that hang up after 3 chunks of a Pro stream: the worker's sequences are cancelled
   and its KV blocks return to the idle level (its health report); each stream is billed for
   what the gateway sent (at least what the client read, far less than it asked for).
3. The worker SIGKILLed while 8 Pro streams decode: each client gets an error event, a usage
   chunk and [DONE]; the usage it is given and the ledger bill exactly the tokens it received
   (one logprobs entry per token); no reservation is left.
4. The gateway SIGKILLed under the 64-client load and started again on the same data
   directory: every answer received in full has its usage record and its audit event, no
   reservation is left, the budget's spent counter equals the ledger, `gateway audit verify`
   passes. (Before the writers' journal, billing/ledger/journal.py, the answers sent in the
   last flush interval lost their records: the test prints how many had none at the kill.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.server import start_gateway
from tests.e2e.workers import RunningWorker
from tests.load.conftest import WORKER_TOKEN, Fleet, bearer
from tests.load.harness import (
    UNITS_PER_USD,
    Answer,
    LoadReport,
    audited_requests,
    budget,
    chat_body,
    ledger,
    one_request,
    run_load,
    wait_ledger,
    wait_until,
)

pytestmark = pytest.mark.slow

CLIENTS = 64
SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
MAX_TOKENS = 16


def test_sustained_load_reconciles_exactly(fleet: Fleet) -> None:
    gw = fleet.gateway
    base = gw.server.base_url
    db = gw.server.data_dir / "gateway.db"
    probes: list[bool] = []  # the instant replica's health as this gateway sees it, each second

    def watch(elapsed: float) -> None:
        if elapsed >= len(probes) + 1:
            probes.append(_instant_healthy(base, gw.admin_key))

    report = asyncio.run(
        run_load(base, gw.key, clients=CLIENTS, duration_s=SECONDS, max_tokens=MAX_TOKENS, on_tick=watch)
    )
    answers = report.answers
    statuses = report.statuses()
    # The limits are far above the load and the budget covers the run many times over: every
    # request must be answered 200 (a 429 or 402 here would be a defect, a 5xx always is).
    errors = Counter(a.error for a in answers if a.status != 200)
    assert statuses == {200: len(answers)}, (statuses, errors.most_common(3))
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
        f"{total} USD, exact; replica unhealthy in {probes.count(False)} of {len(probes)} samples; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


LONG = 200
STREAMS = 8
CHUNKS_READ = 3


def _instant_healthy(base: str, admin_key: str) -> bool:
    pools = httpx.get(f"{base}/admin/pools", headers=bearer(admin_key), timeout=30).json()["data"]
    (instant,) = [p for p in pools if p["name"] == "instant"]
    return all(r["state"] and r["state"]["healthy"] for r in instant["replicas"])


def _worker_health(worker: RunningWorker) -> dict[str, Any]:
    response = httpx.get(f"{worker.url}/internal/v1/health", headers=bearer(WORKER_TOKEN), timeout=10)
    response.raise_for_status()
    return dict(response.json())


def _long(i: int) -> dict[str, Any]:
    """A long Pro stream (the worker's pool), one logprobs entry per token. The question asks
    for a long answer: a short one ("Blue.") can end on its own before the test cuts it."""
    body = chat_body(i, stream=True, max_tokens=LONG, logprobs=True)
    question = f"Count from 1 to 500, one number per line. ({i})"
    return {**body, "model": "deepseek-v4-pro", "messages": [{"role": "user", "content": question}]}


def test_clients_gone_mid_stream_free_the_workers_kv_blocks(fleet: Fleet) -> None:
    gw, worker = fleet.gateway, fleet.worker
    db = gw.server.data_dir / "gateway.db"
    idle = _worker_health(worker)["kv_blocks_used"]
    before = set(ledger(db, gw.tenant))

    async def hang_ups() -> list[Answer]:
        async with httpx.AsyncClient(base_url=gw.server.base_url, headers=bearer(gw.key), timeout=120) as c:
            return await asyncio.gather(
                *(one_request(c, _long(i), stop_after=CHUNKS_READ) for i in range(STREAMS))
            )

    answers = asyncio.run(hang_ups())
    assert all(a.status == 200 and not a.complete and a.tokens_received >= CHUNKS_READ for a in answers)
    rows = wait_ledger(db, gw.tenant, len(before) + STREAMS)
    gaps = []
    for a in answers:
        completion_tokens, _cost, status = rows[str(a.request_id)]
        assert status == "cancelled"
        assert a.tokens_received <= completion_tokens < LONG
        gaps.append(completion_tokens - a.tokens_received)
    assert wait_until(lambda: _worker_health(worker)["kv_blocks_used"] == idle, 30), _worker_health(worker)
    assert _worker_health(worker)["load"] == 0
    assert wait_until(lambda: budget(gw.server.base_url, gw.admin_key, gw.tenant)["reserved_units"] == 0, 30)
    print(
        f"\nworker hang-ups: {STREAMS} streams closed after {CHUNKS_READ} chunks; billed minus read tokens "
        f"median {statistics.median(gaps)}, max {max(gaps)} (of {LONG}); worker KV blocks back to {idle}"
    )


def test_worker_killed_mid_stream_bills_the_delivered_tokens(fleet: Fleet) -> None:
    gw, worker = fleet.gateway, fleet.worker
    db = gw.server.data_dir / "gateway.db"
    before = set(ledger(db, gw.tenant))
    answers = [Answer(stream=True) for _ in range(STREAMS)]

    async def streams_then_kill() -> None:
        async with httpx.AsyncClient(base_url=gw.server.base_url, headers=bearer(gw.key), timeout=120) as c:
            tasks = [asyncio.create_task(one_request(c, _long(i), into=a)) for i, a in enumerate(answers)]
            deadline = time.monotonic() + 120
            while not all(a.tokens_received >= CHUNKS_READ for a in answers):
                assert time.monotonic() < deadline, [a.tokens_received for a in answers]
                assert not any(t.done() for t in tasks), [a.error for a in answers]
                await asyncio.sleep(0.05)
            await asyncio.to_thread(worker.kill)
            await asyncio.gather(*tasks)

    asyncio.run(streams_then_kill())
    rows = wait_ledger(db, gw.tenant, len(before) + STREAMS)
    for a in answers:
        assert a.status == 200 and a.error and not a.complete, (a.status, a.error)
        assert a.usage is not None, a.error  # the client learns what it is billed for
        assert CHUNKS_READ <= a.tokens_received < LONG
        assert a.usage["completion_tokens"] == a.tokens_received  # billed = delivered, exactly
        completion_tokens, cost_units, _status = rows[str(a.request_id)]
        assert completion_tokens == a.tokens_received
        assert Decimal(cost_units) / UNITS_PER_USD == Decimal(a.usage["cost_usd"])
    assert wait_until(lambda: budget(gw.server.base_url, gw.admin_key, gw.tenant)["reserved_units"] == 0, 30)
    print(
        f"\nworker SIGKILL mid-stream: {STREAMS} streams cut at "
        f"{[a.tokens_received for a in answers]} tokens; "
        f"each billed exactly those; reservations 0"
    )


KILL_AT_S = 6.0
LOAD_S = 9.0


def test_sigkill_under_load_loses_no_answered_usage(fleet: Fleet) -> None:
    gw = fleet.gateway
    data_dir = gw.server.data_dir
    db = data_dir / "gateway.db"
    earlier = set(ledger(db, gw.tenant))
    killed: list[bool] = []

    def kill(elapsed: float) -> None:
        if elapsed >= KILL_AT_S and not killed:
            gw.server.process.send_signal(signal.SIGKILL)
            gw.server.process.wait(timeout=20)
            killed.append(True)

    report: LoadReport = asyncio.run(
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
    again = start_gateway(data_dir, fleet.env)
    try:
        rows = ledger(db, gw.tenant)
        for a in full:
            assert a.request_id in rows, f"{a.request_id} answered in full but not in the ledger"
            completion_tokens, cost_units, _status = rows[a.request_id]
            assert a.usage is not None
            assert completion_tokens == a.usage["completion_tokens"]
            assert Decimal(cost_units) / UNITS_PER_USD == Decimal(a.usage["cost_usd"])
        # Records without an answer received in full belong to requests the kill interrupted.
        assert len(set(rows) - earlier - {a.request_id for a in full}) <= len(cut)
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
