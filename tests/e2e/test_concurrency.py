"""Concurrent requests share the engine; each gets its own answer and its own usage record."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.e2e.server import RunningGateway

pytestmark = pytest.mark.slow


def test_concurrent_requests_are_all_served_and_metered(gateway_server: RunningGateway, unique: str) -> None:
    tenant = f"busy-{unique}"
    key = gateway_server.create_key(tenant)["key"]
    api = openai.OpenAI(api_key=key, base_url=f"{gateway_server.base_url}/v1", max_retries=0, timeout=180)
    prompts = [f"Count from {i} to {i + 5}." for i in range(8)]

    def ask(prompt: str) -> openai.types.chat.ChatCompletion:
        return api.chat.completions.create(
            model="deepseek-v4-flash",
            messages=[{"role": "user", "content": prompt}],
            temperature=0,
            max_tokens=24,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, prompts))
    assert all(a.choices[0].message.content for a in answers)
    assert len({a.id for a in answers}) == 8
    # Greedy answers do not depend on what else was in the batch.
    assert ask(prompts[3]).choices[0].message.content == answers[3].choices[0].message.content

    deadline = time.monotonic() + 30
    count = 0
    while time.monotonic() < deadline and count < 9:
        with sqlite3.connect(gateway_server.data_dir / "gateway.db") as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM usage_records u JOIN tenants t ON t.id = u.tenant_id WHERE t.name = ?",
                (tenant,),
            ).fetchone()
        time.sleep(0.1)
    assert count == 9
