"""Concurrent clients for the fault tests: every answer is kept with its phase, so a test can
count what was served, refused and billed in each phase of a fault."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

BODY: dict[str, Any] = {
    "model": "deepseek-v4-flash",
    "max_tokens": 16,
    "temperature": 0,
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
}


@dataclass
class Answer:
    phase: str  # when it was sent
    phase_end: str  # when its answer (or error) came
    key: str
    status: int  # 0: no HTTP answer (transport error or client timeout)
    seconds: float
    code: str | None = None
    retry_after: str | None = None
    cost_usd: Decimal | None = None
    request_id: str | None = None
    error: str | None = None


@dataclass
class Load:
    """Clients that post chat completions in a loop until `stop()`; `phase` labels answers."""

    base_url: str
    keys: list[str]
    clients_per_key: int = 4
    timeout_s: float = 15.0
    phase: str = "before"
    answers: list[Answer] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=self.timeout_s, limits=httpx.Limits(max_connections=256)
        )
        for key in self.keys:
            for _ in range(self.clients_per_key):
                self._tasks.append(asyncio.create_task(self._run(key)))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self._client.aclose()

    async def _run(self, key: str) -> None:
        headers = {"authorization": f"Bearer {key}"}
        while not self._stop.is_set():
            phase, t0 = self.phase, time.monotonic()
            try:
                r = await self._client.post("/v1/chat/completions", json=BODY, headers=headers)
            except httpx.HTTPError as e:
                t = time.monotonic() - t0
                self.answers.append(Answer(phase, self.phase, key, 0, t, error=type(e).__name__))
                await asyncio.sleep(0.05)
                continue
            a = Answer(phase, self.phase, key, r.status_code, time.monotonic() - t0)
            a.retry_after = r.headers.get("retry-after")
            try:
                body = r.json()
            except ValueError:
                body = {}
            if r.status_code == 200:
                a.cost_usd = Decimal(str(body["usage"]["cost_usd"]))
                a.request_id = body["id"]
            else:
                err = body.get("error") or {}
                a.code, a.error = err.get("code"), err.get("message")
                await asyncio.sleep(0.02)  # a refused client backs off a little, as clients do
            self.answers.append(a)

    def summary(self) -> dict[str, dict[str, int]]:
        """Answers per phase by status (and error code for refusals)."""
        out: dict[str, Counter[str]] = {}
        for a in self.answers:
            label = str(a.status) if a.status == 200 else f"{a.status}:{a.code or a.error}"
            out.setdefault(a.phase, Counter())[label] += 1
        return {p: dict(c) for p, c in out.items()}

    def served(self, key: str | None = None) -> list[Answer]:
        return [a for a in self.answers if a.status == 200 and (key is None or a.key == key)]
