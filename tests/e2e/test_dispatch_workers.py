"""Gateway -> two real pool workers: the OpenAI client end to end, and one worker killed
under load (every request completes on the other or ends with a clear error; nothing hangs,
nothing is billed twice, every reservation is released)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import openai
import pytest

from tests.e2e.server import RunningGateway, start_gateway
from tests.e2e.workers import RunningWorker, start_workers, worker_pools_file

pytestmark = pytest.mark.slow

TOKEN = "worker-token-for-tests-0123456789abcdef"
POOL = "cpu-workers"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, list[RunningWorker]]]:
    tmp = tmp_path_factory.mktemp("fleet")
    workers = start_workers(tmp, POOL, 2, TOKEN)
    try:
        pools = worker_pools_file(tmp / "pools.yaml", POOL, workers)
        server = start_gateway(
            tmp / "gw",
            {
                "GATEWAY_POOLS_FILE": str(pools),
                "GATEWAY_EMBEDDED_ENGINE": "false",
                "GATEWAY_WORKER_TOKEN": TOKEN,
                "GATEWAY_DISPATCH_HEALTH_INTERVAL_S": "1",
            },
        )
        try:
            yield server, workers
        finally:
            server.stop()
    finally:
        for w in workers:
            w.stop()


def _rows(server: RunningGateway, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(server.data_dir / "gateway.db") as conn:
        return conn.execute(sql, args).fetchall()


def _wait_rows(server: RunningGateway, count: int, sql: str, *args: object) -> list[tuple]:
    deadline = time.monotonic() + 30
    rows = _rows(server, sql, *args)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = _rows(server, sql, *args)
    return rows


def test_openai_client_through_a_remote_worker(fleet: tuple[RunningGateway, list[RunningWorker]]) -> None:
    server, workers = fleet
    key = server.create_key("remote-one")["key"]
    api = openai.OpenAI(api_key=key, base_url=f"{server.base_url}/v1", max_retries=0, timeout=120)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    answer = api.chat.completions.create(
        model="deepseek-v4-flash", messages=question, temperature=0, max_tokens=24
    )
    assert "Paris" in (answer.choices[0].message.content or "")
    usage = answer.usage
    assert usage is not None
    extra = usage.model_extra or {}
    assert extra["prompt_cache_hit_tokens"] + extra["prompt_cache_miss_tokens"] == usage.prompt_tokens
    # The same prompt again: the worker that holds it (prefix affinity) reports cache hits.
    again = api.chat.completions.create(
        model="deepseek-v4-flash", messages=question, temperature=0, max_tokens=24
    )
    assert (again.usage.model_extra or {})["prompt_cache_hit_tokens"] > 0
    # Streaming with usage, through the same worker protocol.
    chunks = list(
        api.chat.completions.create(
            model="deepseek-v4-flash",
            messages=question,
            temperature=0,
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text and chunks[-1].usage is not None
    # The audit event says where it ran.
    events = _wait_rows(server, 3, "SELECT payload FROM audit_events WHERE kind = 'request.completed'")
    placed = [json.loads(p)["dispatch"] for (p,) in events]
    assert {d["pool"] for d in placed} == {POOL}
    assert {d["replica"] for d in placed} <= {f"{POOL}/{w.url}" for w in workers}
    assert all(d["backend"] == "worker" and d["usage_source"] == "measured" for d in placed)


async def _one(
    client: httpx.AsyncClient, i: int, started: asyncio.Queue[int] | None = None
) -> dict[str, object]:
    body = {
        "model": "deepseek-v4-flash",
        "messages": [{"role": "user", "content": f"Count from {i} upwards, one number a line."}],
        "max_tokens": 48,
        "temperature": 0,
        "stream": i % 2 == 0,
        "stream_options": {"include_usage": True},
    }
    if body["stream"]:
        return await _streamed(client, i, body, started)
    try:
        response = await client.post("/v1/chat/completions", json=body)
    except httpx.HTTPError as exc:
        return {"i": i, "outcome": f"transport:{type(exc).__name__}"}
    # Nothing was sent before the answer finished: a replica dying mid-answer is retried.
    assert response.status_code == 200, response.text
    return {"i": i, "outcome": "ok", "cost": response.json()["usage"]["cost_usd"]}


async def _streamed(
    client: httpx.AsyncClient, i: int, body: dict[str, object], started: asyncio.Queue[int] | None
) -> dict[str, object]:
    lines: list[str] = []
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                lines.append(line)
                if started is not None and '"content":"' in line and '"content":""' not in line:
                    started.put_nowait(i)  # this stream has its first token
                    started = None
    except httpx.HTTPError as exc:
        return {"i": i, "outcome": f"transport:{type(exc).__name__}"}
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert [line for line in lines if line][-1] == "data: [DONE]"
    errors = [e for e in events if "error" in e]
    usage = [e["usage"] for e in events if e.get("usage")]
    if errors:
        assert errors[0]["error"]["message"]
        return {"i": i, "outcome": "interrupted", "cost": usage[-1]["cost_usd"] if usage else None}
    return {"i": i, "outcome": "ok", "cost": usage[-1]["cost_usd"]}


def test_a_worker_killed_under_load(fleet: tuple[RunningGateway, list[RunningWorker]]) -> None:
    server, workers = fleet
    key = server.create_key("remote-load")["key"]
    admin = json.loads(server.cli("admin", "key", "create", "ops-fleet", "--json").stdout)["key"]
    server.cli("tenant", "budget", "remote-load", "--budget-usd", "5", "--budget-period", "month")

    async def run() -> list[dict[str, object]]:
        async with httpx.AsyncClient(
            base_url=server.base_url, headers={"authorization": f"Bearer {key}"}, timeout=120
        ) as client:
            started: asyncio.Queue[int] = asyncio.Queue()
            tasks = [asyncio.create_task(_one(client, i, started)) for i in range(16)]
            for _ in range(6):  # most of the 8 streams are mid-answer, on both workers
                await asyncio.wait_for(started.get(), timeout=120)
            await asyncio.to_thread(workers[0].kill)
            done = await asyncio.wait_for(asyncio.gather(*tasks), timeout=180)  # none hangs
            # After the kill, new requests go to the survivor.
            after = await asyncio.gather(*(_one(client, 100 + i) for i in range(4)))
            return [*done, *after]

    results = asyncio.run(run())
    outcomes = [r["outcome"] for r in results]
    print("outcomes:", {o: outcomes.count(o) for o in set(outcomes)})
    assert not [o for o in outcomes if str(o).startswith("transport")], outcomes
    assert all(r["outcome"] == "ok" for r in results[16:]), results[16:]
    # Interrupted streams carried an error event and the usage of what they delivered.
    assert all(r["cost"] is not None for r in results if r["outcome"] == "interrupted")
    # Nothing billed twice: one usage record per attempt, and the costs the clients were told
    # are exactly the ledger's.
    rows = _wait_rows(
        server,
        len(results),
        "SELECT u.request_id, u.attempt, u.cost_total FROM usage_records u "
        "JOIN tenants t ON t.id = u.tenant_id WHERE t.name = 'remote-load'",
    )
    ids = [(r[0], r[1]) for r in rows]
    assert len(ids) == len(set(ids)) == len(results)
    told = sum(Decimal(str(r["cost"])) for r in results)
    ledger = sum(Decimal(r[2]) for r in rows) / Decimal(10**12)
    assert told == ledger
    # Reservations released: nothing is held once every answer is in.
    budget = httpx.get(
        f"{server.base_url}/admin/tenants/remote-load/budget", headers={"authorization": f"Bearer {admin}"}
    ).json()
    assert budget["budget"]["reserved_units"] == 0
    assert budget["budget"]["spent_units"] == sum(int(r[2]) for r in rows)
    # The gateway marked the dead replica.
    pools = httpx.get(f"{server.base_url}/admin/pools", headers={"authorization": f"Bearer {admin}"}).json()
    states = {r["url"]: r["state"] for p in pools["data"] if p["name"] == POOL for r in p["replicas"]}
    assert states[workers[0].url]["healthy"] is False or states[workers[0].url]["breaker"] != "closed"
