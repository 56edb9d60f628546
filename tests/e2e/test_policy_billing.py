"""Policy, budgets and rate limits through HTTP with the real openai client."""

from __future__ import annotations

import json
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.server import RunningGateway

pytestmark = pytest.mark.slow

POLICY = """
modes: {allowed: [non-think, think-high, think-max], default: non-think}
on_over_ask: downgrade
use_cases:
  faq: {max_mode: non-think}
  dispute: {max_mode: think-max, default_mode: think-max}
"""


def audit_payloads(server: RunningGateway, request_id: str) -> list[dict]:
    """Request events are committed by the batched audit writer a few ms after the answer:
    wait for the first, then a little longer for any later batch of the same request."""
    deadline = time.monotonic() + 30
    rows: list[tuple] = []
    while not rows and time.monotonic() < deadline:
        time.sleep(0.05)
        with sqlite3.connect(server.data_dir / "gateway.db") as conn:
            rows = conn.execute(
                "SELECT payload FROM audit_events WHERE request_id = ?", (request_id,)
            ).fetchall()
    time.sleep(0.3)
    with sqlite3.connect(server.data_dir / "gateway.db") as conn:
        rows = conn.execute("SELECT payload FROM audit_events WHERE request_id = ?", (request_id,)).fetchall()
    return [json.loads(r[0]) for r in rows]


def client_with_policy(
    server: RunningGateway, tenant: str, policy_yaml: str, tmp_path: Path
) -> openai.OpenAI:
    """A new tenant with `policy_yaml` active, and an openai client with one of its keys."""
    issued = server.create_key(tenant)
    policy = tmp_path / f"{tenant}.yaml"
    policy.write_text(policy_yaml)
    server.cli("policy", "set", "--tenant", tenant, str(policy))
    return openai.OpenAI(api_key=issued["key"], base_url=f"{server.base_url}/v1", max_retries=0)


def wait_for_attempts(server: RunningGateway, request_id: str, count: int) -> list[tuple]:
    """(attempt, variant, completion_tokens, cost_total) of a request's usage records, once
    `count` of them have landed (the writer batches them)."""
    rows: list[tuple] = []
    deadline = time.monotonic() + 30
    while len(rows) < count and time.monotonic() < deadline:
        with sqlite3.connect(server.data_dir / "gateway.db") as conn:
            rows = conn.execute(
                "SELECT attempt, variant, completion_tokens, cost_total FROM usage_records "
                "WHERE request_id = ? ORDER BY attempt",
                (request_id,),
            ).fetchall()
        time.sleep(0.1)
    return rows


def test_faq_runs_non_think_and_dispute_runs_think_max(
    gateway_server: RunningGateway, tmp_path: Path, unique: str
) -> None:
    api = client_with_policy(gateway_server, f"support-{unique}", POLICY, tmp_path)

    faq = api.chat.completions.with_raw_response.create(
        model="deepseek-v4-flash",
        messages=[{"role": "user", "content": "How do I reset my password?"}],
        max_tokens=16,
        reasoning_effort="max",  # asks for more than the FAQ cap: downgraded
        extra_body={"thinking": {"type": "enabled"}, "metadata": {"use_case": "faq"}},
    )
    assert faq.headers["x-gateway-mode"] == "non-think"
    assert faq.headers["x-gateway-variant"] == "flash"
    assert faq.headers["x-gateway-policy-version"] == "1"
    answer = faq.parse()
    assert answer.usage.completion_tokens_details.reasoning_tokens == 0

    dispute = api.chat.completions.with_raw_response.create(
        model="deepseek-v4-pro",
        messages=[
            {"role": "user", "content": "I was charged twice for one order. Explain what may have happened."}
        ],
        max_tokens=64,
        extra_headers={"x-gateway-use-case": "dispute"},
    )
    assert dispute.headers["x-gateway-mode"] == "think-max"
    assert dispute.headers["x-gateway-variant"] == "pro"
    disputed = dispute.parse()
    assert disputed.usage.completion_tokens_details.reasoning_tokens > 0

    faq_audit = audit_payloads(gateway_server, answer.id)[0]["decision"]
    dispute_audit = audit_payloads(gateway_server, disputed.id)[0]["decision"]
    assert (faq_audit["mode"], faq_audit["use_case"], faq_audit["policy_version"]) == (
        "non-think",
        "faq",
        "1",
    )
    assert (dispute_audit["mode"], dispute_audit["use_case"]) == ("think-max", "dispute")
    assert any("faq" in reason or "max_mode" in reason for reason in faq_audit["reasons"])


def test_rate_limit_gives_429_with_retry_after(gateway_server: RunningGateway, unique: str) -> None:
    tenant = f"limited-{unique}"
    gateway_server.cli("tenant", "create", tenant)
    issued = json.loads(
        gateway_server.cli("key", "create", "--tenant", tenant, "--rpm", "2", "--json").stdout
    )
    body = {"model": "deepseek-v4-flash", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    headers = {"authorization": f"Bearer {issued['key']}"}
    url = f"{gateway_server.base_url}/v1/chat/completions"
    first = httpx.post(url, json=body, headers=headers, timeout=60)
    assert first.status_code == 200 and first.headers["x-ratelimit-limit-requests"] == "2"
    httpx.post(url, json=body, headers=headers, timeout=60)
    third = httpx.post(url, json=body, headers=headers, timeout=60)
    assert third.status_code == 429, third.text
    assert third.json()["error"]["type"] == "rate_limit_error"
    assert int(third.headers["retry-after"]) >= 1
    assert third.headers["x-ratelimit-remaining-requests"] == "0"


def test_hard_budget_refuses_what_it_cannot_cover(gateway_server: RunningGateway, unique: str) -> None:
    tenant = f"broke-{unique}"
    gateway_server.cli("tenant", "create", tenant, "--budget-usd", "0.000001")
    issued = json.loads(gateway_server.cli("key", "create", "--tenant", tenant, "--json").stdout)
    api = openai.OpenAI(api_key=issued["key"], base_url=f"{gateway_server.base_url}/v1", max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        api.chat.completions.create(
            model="deepseek-v4-pro", messages=[{"role": "user", "content": "hi"}], max_tokens=500
        )
    assert info.value.code == "budget_exceeded"
    assert "budget" in str(info.value)
    time.sleep(0.3)
    with sqlite3.connect(gateway_server.data_dir / "gateway.db") as conn:
        rows = conn.execute(
            "SELECT count(*) FROM usage_records u JOIN tenants t ON t.id = u.tenant_id WHERE t.name = ?",
            (tenant,),
        ).fetchone()
    assert rows == (0,)  # refused before dispatch: nothing served, nothing billed


def test_a_keys_own_rate_limit_and_budget_apply_apart_from_its_tenant(
    gateway_server: RunningGateway, unique: str
) -> None:
    tenant = f"keylimits-{unique}"
    limited, budgeted, free = (gateway_server.create_key(tenant) for _ in range(3))
    gateway_server.cli("key", "limits", limited["id"], "--rpm", "1")
    gateway_server.cli("key", "budget", budgeted["id"], "--budget-usd", "0.000001")

    def ask(issued: dict[str, str]) -> openai.types.chat.ChatCompletion:
        api = openai.OpenAI(api_key=issued["key"], base_url=f"{gateway_server.base_url}/v1", max_retries=0)
        return api.chat.completions.create(
            model="deepseek-v4-flash", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )

    ask(limited)
    with pytest.raises(openai.RateLimitError) as limit:
        ask(limited)
    assert int(limit.value.response.headers["retry-after"]) >= 1
    with pytest.raises(openai.RateLimitError) as budget:
        ask(budgeted)
    assert budget.value.code == "budget_exceeded"
    for _ in range(2):  # the tenant's third key has neither limit
        assert ask(free).choices[0].finish_reason in ("stop", "length")


def test_auto_model_is_routed_and_the_score_is_audited(gateway_server: RunningGateway, unique: str) -> None:
    issued = gateway_server.create_key(f"auto-{unique}")
    api = openai.OpenAI(api_key=issued["key"], base_url=f"{gateway_server.base_url}/v1", max_retries=0)
    response = api.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is 2 + 2?"}], max_tokens=8
    )
    answer = response.parse()
    assert response.headers["x-gateway-variant"] in ("flash", "pro")
    assert answer.model in ("deepseek-v4-flash", "deepseek-v4-pro")
    decision = audit_payloads(gateway_server, answer.id)[0]["decision"]
    assert decision["requested_model"] == "auto"
    assert 0.0 <= decision["router_score"] <= 1.0
    assert any(reason.startswith("auto: score") for reason in decision["reasons"])


CASCADE_POLICY = """
cascade:
  enabled: true
  threshold: 0.999
  method: mean
  escalate_to: {variant: pro}
  models: [deepseek-v4-flash]
"""


def test_cascade_escalates_and_meters_both_attempts(
    gateway_server: RunningGateway, tmp_path: Path, unique: str
) -> None:
    api = client_with_policy(gateway_server, f"cascade-{unique}", CASCADE_POLICY, tmp_path)
    raw = api.chat.completions.with_raw_response.create(
        model="deepseek-v4-flash",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=8,
        temperature=0,
    )
    answer = raw.parse()
    # A 0.999 confidence threshold is never met by this model: Pro answers again.
    assert raw.headers["x-gateway-escalated"] == "true"
    assert answer.model == "deepseek-v4-pro" and raw.headers["x-gateway-variant"] == "pro"
    assert answer.choices[0].logprobs is None  # used by the cascade, not asked for by the client
    rows = wait_for_attempts(gateway_server, answer.id, 2)
    assert [(r[0], r[1]) for r in rows] == [(1, "flash"), (2, "pro")]
    extra = answer.usage.model_extra or {}
    assert answer.usage.completion_tokens == rows[0][2] + rows[1][2]
    assert Decimal(extra["cost_usd"]) == Decimal(rows[0][3] + rows[1][3]) / 10**12
    audited = audit_payloads(gateway_server, answer.id)
    assert sorted(p["attempt"] for p in audited) == [1, 2]
    assert any(p["escalation"] and "escalate" in p["escalation"]["reason"] for p in audited)


def test_cascade_on_a_stream_sends_the_answer_that_stands(
    gateway_server: RunningGateway, tmp_path: Path, unique: str
) -> None:
    api = client_with_policy(gateway_server, f"cascade-stream-{unique}", CASCADE_POLICY, tmp_path)
    with api.chat.completions.with_streaming_response.create(
        model="deepseek-v4-flash",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as raw:
        headers = raw.headers
        chunks = list(raw.parse())
    assert headers["x-gateway-escalated"] == "true" and headers["x-gateway-variant"] == "pro"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert all(c.model == "deepseek-v4-pro" for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    usage = chunks[-1].usage
    request_id = chunks[0].id
    rows = wait_for_attempts(gateway_server, request_id, 2)
    assert [(r[0], r[1]) for r in rows] == [(1, "flash"), (2, "pro")]
    assert usage.completion_tokens == rows[0][2] + rows[1][2]
    assert Decimal((usage.model_extra or {})["cost_usd"]) == Decimal(rows[0][3] + rows[1][3]) / 10**12


def test_streaming_and_non_streaming_meter_the_same(gateway_server: RunningGateway, unique: str) -> None:
    records = []
    for stream in (False, True):
        issued = gateway_server.create_key(f"same-{stream}-{unique}")  # own tenant: no shared cache
        api = openai.OpenAI(api_key=issued["key"], base_url=f"{gateway_server.base_url}/v1", max_retries=0)
        kwargs = {
            "model": "deepseek-v4-flash",
            "temperature": 0,
            "max_tokens": 12,
            "messages": [{"role": "user", "content": "Say hello to the team."}],
        }
        if stream:
            chunks = list(
                api.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
            )
            usage = chunks[-1].usage
        else:
            usage = api.chat.completions.create(**kwargs).usage
        records.append(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                (usage.model_extra or {})["cost_usd"],
                (usage.model_extra or {})["prompt_cache_hit_tokens"],
            )
        )
    assert records[0] == records[1]
