"""Clients for the load and fault tests: many concurrent chat completions over HTTP (half of
them streamed with `include_usage`), each answer's status and the usage it carried, and
readers of what the gateway stored (its SQLite ledger, the budget's counters)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

UNITS_PER_USD = Decimal(10) ** 12


@dataclass
class Answer:
    """What one client got for one request."""

    stream: bool
    status: int | None = None  # None: the connection failed before a status line
    request_id: str | None = None
    complete: bool = False  # the whole answer: the JSON body, or a stream up to [DONE] without error
    usage: dict[str, Any] | None = None
    error: str | None = None
    tokens_received: int = 0  # answer tokens seen (one logprobs entry per token, when asked)
    chunks_received: int = 0

    @property
    def cost(self) -> Decimal:
        return Decimal(self.usage["cost_usd"]) if self.usage else Decimal(0)


@dataclass
class LoadReport:
    answers: list[Answer] = field(default_factory=list)
    duration_s: float = 0.0

    def statuses(self) -> Counter[int | None]:
        return Counter(a.status for a in self.answers)

    def complete(self) -> list[Answer]:
        return [a for a in self.answers if a.complete]


def chat_body(i: int, *, stream: bool, max_tokens: int, logprobs: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "deepseek-v4-flash",
        "messages": [{"role": "user", "content": f"Name a colour. ({i})"}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "thinking": {"type": "disabled"},  # every token is an answer token the client sees
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if logprobs:
        body["logprobs"] = True
    return body


async def one_request(
    client: httpx.AsyncClient, body: dict[str, Any], *, stop_after: int = 0, into: Answer | None = None
) -> Answer:
    """One chat completion. `stop_after` > 0: close the connection after that many content
    chunks of a stream (a client gone mid-answer). `into`: fill this Answer as chunks arrive
    (another task may watch it)."""
    answer = into or Answer(stream=bool(body.get("stream")))
    try:
        if not answer.stream:
            response = await client.post("/v1/chat/completions", json=body)
            answer.status = response.status_code
            doc = response.json()
            if response.status_code == 200:
                answer.request_id = doc["id"]
                answer.usage = doc["usage"]
                answer.complete = True
            else:
                answer.error = str(doc.get("error", {}).get("message"))
            return answer
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            answer.status = response.status_code
            if response.status_code != 200:
                await response.aread()
                answer.error = response.text[:300]
                return answer
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    answer.complete = answer.error is None
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    answer.error = str(chunk["error"].get("message"))
                    continue
                answer.request_id = chunk.get("id", answer.request_id)
                if chunk.get("usage"):
                    answer.usage = chunk["usage"]
                for choice in chunk.get("choices", []):
                    delta = choice.get("delta", {})
                    if delta.get("content"):
                        answer.chunks_received += 1
                    lp = choice.get("logprobs") or {}
                    answer.tokens_received += len(lp.get("content") or [])
                if stop_after and answer.chunks_received >= stop_after:
                    break  # leaving the block closes the connection
    except (httpx.HTTPError, ValueError) as exc:
        answer.error = f"{type(exc).__name__}: {exc}"
    return answer


async def run_load(
    base_url: str,
    key: str,
    *,
    clients: int,
    duration_s: float,
    max_tokens: int,
    timeout_s: float = 120.0,
    on_tick: Callable[[float], None] | None = None,
) -> LoadReport:
    """`clients` concurrent loops for `duration_s`, each sending its next request when the
    last one ends; even-numbered clients stream, odd ones do not."""
    report = LoadReport()
    started = time.monotonic()
    stop_at = started + duration_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"authorization": f"Bearer {key}"}

    async def loop(n: int, client: httpx.AsyncClient) -> None:
        i = 0
        while time.monotonic() < stop_at:
            answer = await one_request(
                client, chat_body(n * 100_000 + i, stream=n % 2 == 0, max_tokens=max_tokens)
            )
            report.answers.append(answer)
            i += 1
            if answer.status is None:  # the server is gone: wait a little, as a client would
                await asyncio.sleep(0.2)

    async def ticker() -> None:
        while on_tick is not None and time.monotonic() < stop_at:
            await asyncio.sleep(0.1)
            on_tick(time.monotonic() - started)

    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=timeout_s
    ) as client:
        tick = asyncio.create_task(ticker())
        try:
            await asyncio.gather(*(loop(n, client) for n in range(clients)))
        finally:
            tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tick
    report.duration_s = time.monotonic() - started
    return report


# -- what the gateway stored ------------------------------------------------------------------


Rows = dict[str, tuple[int, int, str]]


def ledger(db_path: Path, tenant: str) -> Rows:
    """request_id -> (completion tokens, cost in 1e-12 USD, status) of a tenant's usage
    records (attempt 1: no cascade in these tests)."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        rows = conn.execute(
            "SELECT r.request_id, r.completion_tokens, r.cost_total, r.status FROM usage_records r "
            "JOIN tenants t ON t.id = r.tenant_id WHERE t.name = ?",
            (tenant,),
        ).fetchall()
    return {str(r[0]): (int(r[1]), int(r[2]), str(r[3])) for r in rows}


def wait_ledger(
    db_path: Path, tenant: str, count: int, timeout_s: float = 30
) -> dict[str, tuple[int, int, str]]:
    deadline = time.monotonic() + timeout_s
    rows = ledger(db_path, tenant)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = ledger(db_path, tenant)
    return rows


def audited_requests(db_path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        rows = conn.execute("SELECT request_id FROM audit_events WHERE request_id IS NOT NULL").fetchall()
    return {str(r[0]) for r in rows}


def budget(base_url: str, admin_key: str, tenant: str) -> dict[str, Any]:
    response = httpx.get(
        f"{base_url}/admin/tenants/{tenant}/budget",
        headers={"authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    response.raise_for_status()
    return dict(response.json()["budget"])


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)


def prometheus_gauge(base_url: str, name: str) -> float:
    """One gauge's value from GET /metrics (GATEWAY_METRICS=prometheus), summed over labels."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#") and line[len(name)] in " {"
    ]
    if not values:
        raise AssertionError(f"{name} not in /metrics")
    return sum(values)
