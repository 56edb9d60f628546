"""Streams through the gateway to a real `gateway worker` (the embedded engine in its own
process), cut in the middle from either side:

- clients that hang up after 3 chunks: the gateway cancels the worker's sequences, whose
  KV-cache blocks return to the idle level (the worker's health report); each stream is
  billed for what the gateway sent (at least what the client read, far less than asked);
- the worker SIGKILLed while 8 streams are decoding: each client gets an error event and a
  usage chunk, then [DONE]; the usage it is given and the ledger bill exactly the tokens it
  received (one logprobs entry per token), and no budget reservation is left.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.server import start_gateway
from tests.e2e.workers import RunningWorker, start_workers, worker_pools_file
from tests.load.conftest import QUIET, LoadGateway, bearer, provision
from tests.load.harness import (
    UNITS_PER_USD,
    Answer,
    budget,
    chat_body,
    ledger,
    one_request,
    wait_ledger,
    wait_until,
)

pytestmark = pytest.mark.slow

TOKEN = "worker-token-for-load-tests-0123456789"
POOL = "cpu-midstream"
LONG = 200
STREAMS = 8
CHUNKS_READ = 3


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoadGateway, RunningWorker]]:
    tmp = tmp_path_factory.mktemp("midstream")
    (worker,) = start_workers(tmp, POOL, 1, TOKEN)
    try:
        pools = worker_pools_file(tmp / "pools.yaml", POOL, [worker])
        env = {
            "GATEWAY_POOLS_FILE": str(pools),
            "GATEWAY_EMBEDDED_ENGINE": "false",
            "GATEWAY_WORKER_TOKEN": TOKEN,
            "GATEWAY_DISPATCH_HEALTH_INTERVAL_S": "1",
            **QUIET,
        }
        server = start_gateway(tmp / "gw", env)
        try:
            key, admin = provision(server, "midstream")
            yield LoadGateway(server, "midstream", key, admin), worker
        finally:
            server.stop()
    finally:
        worker.stop()


def _worker_health(worker: RunningWorker) -> dict[str, Any]:
    response = httpx.get(f"{worker.url}/internal/v1/health", headers=bearer(TOKEN), timeout=10)
    response.raise_for_status()
    return dict(response.json())


def _long(i: int) -> dict[str, Any]:
    return chat_body(i, stream=True, max_tokens=LONG, logprobs=True)


def test_clients_gone_mid_stream_free_the_workers_kv_blocks(fleet: tuple[LoadGateway, RunningWorker]) -> None:
    gw, worker = fleet
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


def test_worker_killed_mid_stream_bills_the_delivered_tokens(
    fleet: tuple[LoadGateway, RunningWorker],
) -> None:
    gw, worker = fleet
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
