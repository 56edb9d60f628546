"""Clients that hang up mid-stream on the embedded engine: each stream is billed for the tokens
the gateway sent (at least what the client read, far fewer than it asked for), its budget
reservation is returned and its KV-cache blocks are freed (the Prometheus gauge back at its
idle level, nothing left running)."""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

import httpx
import pytest

from tests.load.conftest import LoadGateway
from tests.load.harness import (
    Answer,
    budget,
    chat_body,
    ledger,
    one_request,
    prometheus_gauge,
    wait_ledger,
    wait_until,
)

pytestmark = pytest.mark.slow

KV_USED = "gateway_engine_kv_blocks_used"


STREAMS = 16
LONG = 200  # far more than is generated before the hang-up reaches the engine
CHUNKS_READ = 3


def test_clients_gone_mid_stream(engine_gateway: LoadGateway) -> None:
    gw = engine_gateway
    base = gw.server.base_url
    db = gw.server.data_dir / "gateway.db"
    idle = prometheus_gauge(base, KV_USED)
    before = set(ledger(db, gw.tenant))

    async def hang_ups() -> list[Answer]:
        headers = {"authorization": f"Bearer {gw.key}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
            return await asyncio.gather(
                *(
                    one_request(
                        client,
                        chat_body(i, stream=True, max_tokens=LONG, logprobs=True),
                        stop_after=CHUNKS_READ,
                    )
                    for i in range(STREAMS)
                )
            )

    answers = asyncio.run(hang_ups())
    assert all(a.status == 200 and not a.complete and a.request_id for a in answers), answers
    assert all(a.chunks_received >= CHUNKS_READ and a.tokens_received >= CHUNKS_READ for a in answers)

    rows = wait_ledger(db, gw.tenant, len(before) + STREAMS)
    gaps = []
    for a in answers:
        assert a.request_id in rows, a.request_id
        completion_tokens, cost_units, status = rows[a.request_id]
        assert status == "cancelled"
        assert a.tokens_received <= completion_tokens < LONG
        assert cost_units > 0
        gaps.append(completion_tokens - a.tokens_received)
    assert wait_until(lambda: budget(base, gw.admin_key, gw.tenant)["reserved_units"] == 0, 30)
    assert wait_until(lambda: prometheus_gauge(base, KV_USED) == idle, 30), prometheus_gauge(base, KV_USED)
    assert wait_until(lambda: prometheus_gauge(base, "gateway_engine_running") == 0, 30)
    print(
        f"\nhang-ups: {STREAMS} streams closed after {CHUNKS_READ} chunks; billed tokens minus tokens read: "
        f"median {statistics.median(gaps)}, max {max(gaps)} (of {LONG} asked); KV blocks back to {idle:.0f}"
    )


def _long_stream(i: int) -> dict[str, Any]:
    return chat_body(i, stream=True, max_tokens=LONG, logprobs=True)
