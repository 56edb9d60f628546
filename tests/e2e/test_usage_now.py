"""`GET /v1/usage` right after the last answer equals, to 1e-12 USD, the sum of the costs
the `openai` client was given (issue 18: it used to report 0 until the rollup ran)."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import openai
import pytest

from tests.e2e.server import RunningGateway

pytestmark = pytest.mark.slow


def test_usage_matches_the_answers_at_once(gateway_server: RunningGateway) -> None:
    issued = gateway_server.create_key("e2e-usage-now")
    api = openai.OpenAI(
        api_key=issued["key"], base_url=f"{gateway_server.base_url}/v1", max_retries=0, timeout=120
    )
    costs: list[Decimal] = []
    tokens = 0
    for i, model in enumerate(["deepseek-v4-flash", "deepseek-v4-pro", "deepseek-v4-flash"]):
        answer = api.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"Count to {i + 2}."}], max_tokens=8
        )
        assert answer.usage is not None
        costs.append(Decimal((answer.usage.model_extra or {})["cost_usd"]))
        tokens += answer.usage.completion_tokens
    stream = api.chat.completions.create(
        model="deepseek-v4-flash",
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage_chunks = [c.usage for c in stream if c.usage is not None]
    assert len(usage_chunks) == 1
    costs.append(Decimal((usage_chunks[0].model_extra or {})["cost_usd"]))
    tokens += usage_chunks[0].completion_tokens
    answered = time.monotonic()

    report = httpx.get(
        f"{gateway_server.base_url}/v1/usage",
        headers={"authorization": f"Bearer {issued['key']}"},
        timeout=30,
    )
    elapsed = time.monotonic() - answered
    assert report.status_code == 200, report.text
    body = report.json()
    assert sum(costs) > 0
    assert Decimal(body["total_cost_usd"]) == sum(costs), (body, costs)
    assert sum(d["requests"] for d in body["data"]) == 4
    outputs = [li["tokens"] for d in body["data"] for li in d["line_items"] if li["token_class"] == "output"]
    assert sum(outputs) == tokens
    assert elapsed < 1.0
    print(f"\n/v1/usage answered {elapsed * 1000:.0f} ms after the last answer: {body['total_cost_usd']} USD")
