"""The OpenAI client end to end: gateway -> upstream adapter -> fake vLLM / DeepSeek servers.

The gateway runs with no engine of its own (GATEWAY_EMBEDDED_ENGINE=false) and a pools file:
flash on a vLLM pool of two replicas in eu-west (plus dead ones: vLLM in us-east, AMD in
eu-west), pro on the DeepSeek API in us-east and on an SGLang pool in eu-west with no replica.
What the client is told equals what the upstream reported, the ledger and the usage report
agree, the audit event names the pool and replica, failures before the first token (or of a
whole answer not yet sent) go to the other replica, and the upstream keys appear in no log and
no audit event. Compliance placement: a pool the tenant's profile forbids is never chosen,
even when it is the only healthy one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.dispatch.fake_upstream import FakeUpstream, Fault, Received
from tests.e2e.dispatch_server import dead_url, start_upstream_gateway, upstream_pool
from tests.e2e.server import RunningGateway

pytestmark = pytest.mark.slow

VLLM_KEY = "sk-vllm-upstream-secret-4f1c9e"
DEEPSEEK_KEY = "sk-deepseek-upstream-secret-8b2d77"
VLLM_MODEL = "deepseek-ai/DeepSeek-V4-Flash"
FIRST_TOKEN_TIMEOUT_S = 2  # seconds (an integer setting)
QUESTION = [
    {"role": "system", "content": "You answer geography questions in one sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]


@dataclass
class Fleet:
    server: RunningGateway
    vllms: list[FakeUpstream]  # the two replicas of vllm-eu
    deepseek: FakeUpstream
    dead: str
    admin: str  # an admin key: tenants, keys and profiles over HTTP (a CLI call costs seconds)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    vllms = [FakeUpstream("vllm", api_key=VLLM_KEY, models=(VLLM_MODEL,)).start() for _ in range(2)]
    deepseek = FakeUpstream("deepseek", api_key=DEEPSEEK_KEY).start()
    dead = dead_url()
    pools = [
        upstream_pool(
            "vllm-eu",
            "vllm",
            [u.base_url for u in vllms],
            region="eu-west",
            variants=["flash"],
            models={"flash": VLLM_MODEL},
            api_key_env="GATEWAY_UPSTREAM_KEY_VLLM_EU",
        ),
        upstream_pool("vllm-us", "vllm", [dead], region="us-east", variants=["flash"]),
        upstream_pool(
            "rocm-eu", "vllm", [dead], region="eu-west", variants=["flash"], vendor="amd", device_kind="rocm"
        ),
        upstream_pool(
            "deepseek-api",
            "deepseek",
            [deepseek.base_url.removesuffix("/v1")],  # the DeepSeek API's base has no /v1
            region="us-east",
            variants=["pro"],
            api_key_env="GATEWAY_UPSTREAM_KEY_DEEPSEEK",
        ),
        upstream_pool("sglang-eu", "sglang", [], region="eu-west", variants=["pro"]),
    ]
    try:
        server = start_upstream_gateway(
            tmp_path_factory.mktemp("upstream-gw"),
            pools,
            {
                "GATEWAY_UPSTREAM_KEY_VLLM_EU": VLLM_KEY,
                "GATEWAY_UPSTREAM_KEY_DEEPSEEK": DEEPSEEK_KEY,
                "GATEWAY_LOG_LEVEL": "debug",
                "GATEWAY_DISPATCH_FIRST_TOKEN_TIMEOUT_S": str(FIRST_TOKEN_TIMEOUT_S),
            },
        )
    except BaseException:
        for up in (*vllms, deepseek):
            up.stop()
        raise
    admin = json.loads(server.cli("admin", "key", "create", "ops-upstream", "--json").stdout)["key"]
    yield Fleet(server, vllms, deepseek, dead, admin)
    server.stop()
    for up in (*vllms, deepseek):
        up.stop()


def client(fleet: Fleet, tenant: str, profile: str | None = None) -> openai.OpenAI:
    """A new tenant's OpenAI client (with its compliance profile, if given)."""
    admin = httpx.Client(
        base_url=f"{fleet.server.base_url}/admin",
        headers={"authorization": f"Bearer {fleet.admin}"},
        timeout=30,
    )
    with admin:
        assert admin.post("/tenants", json={"name": tenant}).status_code == 201
        key = admin.post(f"/tenants/{tenant}/keys", json={}).json()["key"]
        if profile is not None:
            put = admin.put(f"/tenants/{tenant}/compliance/profile", content=profile)
            assert put.status_code == 200, put.text
    return openai.OpenAI(api_key=key, base_url=f"{fleet.server.base_url}/v1", max_retries=0, timeout=60)


def flash(api: openai.OpenAI, **kw: Any) -> Any:
    return api.chat.completions.create(
        model="deepseek-v4-flash",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=40,
        extra_body={"thinking": {"type": "disabled"}},
        **kw,
    )


def vllm_requests(fleet: Fleet) -> int:
    return sum(len(u.chat_requests()) for u in fleet.vllms)


def last_chat(fleet: Fleet) -> tuple[FakeUpstream, Received]:
    """The vLLM replica that received the latest chat request, and that request."""
    return max(((u, r) for u in fleet.vllms for r in u.chat_requests()), key=lambda ur: ur[1].at)


def probe(fleet: Fleet, api: openai.OpenAI) -> FakeUpstream:
    """The replica prefix affinity sends this tenant's QUESTION to (one request to find out)."""
    flash(api)
    return last_chat(fleet)[0]


def other(fleet: Fleet, up: FakeUpstream) -> FakeUpstream:
    return next(u for u in fleet.vllms if u is not up)


def rows(server: RunningGateway, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(server.data_dir / "gateway.db") as conn:
        return conn.execute(sql, args).fetchall()


def wait_rows(server: RunningGateway, count: int, sql: str, *args: object) -> list[tuple]:
    deadline = time.monotonic() + 20
    found = rows(server, sql, *args)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        found = rows(server, sql, *args)
    return found


def completed_event(server: RunningGateway, request_id: str) -> dict:
    found = wait_rows(
        server,
        1,
        "SELECT payload FROM audit_events WHERE request_id = ? AND kind = 'request.completed'",
        request_id,
    )
    assert found, f"no audit event for {request_id}"
    return dict(json.loads(found[0][0]))


def assert_usage_is_upstreams(usage: object, sent: dict) -> None:
    """The client's usage object equals what the upstream reported, in both spellings."""
    got = usage if isinstance(usage, dict) else usage.model_dump()  # type: ignore[attr-defined]
    hit = sent.get(
        "prompt_cache_hit_tokens", (sent.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    )
    assert got["prompt_tokens"] == sent["prompt_tokens"]
    assert got["completion_tokens"] == sent["completion_tokens"]
    assert got["prompt_cache_hit_tokens"] == hit == got["prompt_tokens_details"]["cached_tokens"]
    assert got["prompt_cache_miss_tokens"] == sent["prompt_tokens"] - hit
    assert (
        got["completion_tokens_details"]["reasoning_tokens"]
        == sent["completion_tokens_details"]["reasoning_tokens"]
    )


def test_vllm_pool_streaming_and_not(fleet: Fleet) -> None:
    api = client(fleet, "upstream-vllm")
    answer = flash(api)
    assert answer.choices[0].message.content == "The capital of France is Paris."
    served, first = last_chat(fleet)
    assert first.body["model"] == VLLM_MODEL and first.body["chat_template_kwargs"]["thinking"] is False
    assert first.body["cache_salt"]
    # Asked as a stream all the same: the first-token timeout then means the first token.
    assert first.body["stream"] is True and first.body["stream_options"] == {"include_usage": True}
    assert_usage_is_upstreams(answer.usage, first.usage_sent)

    chunks = list(flash(api, stream=True, stream_options={"include_usage": True}))
    again, second = last_chat(fleet)
    assert again is served  # prefix affinity: the replica that holds this tenant's prefix
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer.choices[0].message.content
    assert chunks[-1].usage is not None and second.body["stream"] is True
    assert second.body["cache_salt"] == first.body["cache_salt"]  # one tenant, one salt
    assert_usage_is_upstreams(chunks[-1].usage, second.usage_sent)
    assert chunks[-1].usage.prompt_cache_hit_tokens > 0  # the upstream's cache

    # The audit names the pool and replica; the ledger holds the upstream's counts.
    for rid, sent in ((answer.id, first.usage_sent), (chunks[0].id, second.usage_sent)):
        event = completed_event(fleet.server, rid)
        assert event["dispatch"]["pool"] == "vllm-eu"
        assert event["dispatch"]["replica"] == f"vllm-eu/{served.base_url}"
        assert event["dispatch"]["backend"] == "vllm" and event["dispatch"]["usage_source"] == "measured"
        assert event["deployment"]["pool"]["region"] == "eu-west"
        (hit, miss, out) = wait_rows(
            fleet.server,
            1,
            "SELECT prompt_cache_hit_tokens, prompt_cache_miss_tokens, completion_tokens FROM usage_records "
            "WHERE request_id = ?",
            rid,
        )[0]
        assert sent is not None and (hit + miss, out) == (sent["prompt_tokens"], sent["completion_tokens"])


def test_deepseek_pool_thinking_and_the_usage_report(fleet: Fleet) -> None:
    api = client(fleet, "upstream-deepseek")
    answer = api.chat.completions.create(
        model="deepseek-v4-pro",
        messages=QUESTION,
        max_tokens=64,
        reasoning_effort="high",
        extra_body={"thinking": {"type": "enabled"}},
    )
    sent = fleet.deepseek.chat_requests()[-1]
    assert sent.path == "/chat/completions" and sent.body["model"] == "deepseek-v4-pro"
    assert sent.body["thinking"] == {"type": "enabled"} and sent.body["reasoning_effort"] == "high"
    assert sent.body["user_id"] and "cache_salt" not in sent.body
    message = answer.choices[0].message
    assert (message.model_extra or {})["reasoning_content"].startswith("The user asks")
    assert message.content == "The capital of France is Paris."
    assert_usage_is_upstreams(answer.usage, sent.usage_sent)  # type: ignore[arg-type]
    assert answer.usage.completion_tokens_details.reasoning_tokens > 0  # type: ignore[union-attr]
    event = completed_event(fleet.server, answer.id)
    assert event["dispatch"]["pool"] == "deepseek-api" and event["dispatch"]["backend"] == "deepseek"

    # The usage report says what the client was told, line by line.
    report = httpx.get(
        f"{fleet.server.base_url}/v1/usage", headers={"authorization": f"Bearer {api.api_key}"}, timeout=30
    ).json()
    (day,) = report["data"]
    lines = {item["token_class"]: item["tokens"] for item in day["line_items"]}
    usage = answer.usage.model_dump()  # type: ignore[union-attr]
    assert day["variant"] == "pro" and day["requests"] == 1
    assert sum(lines.values()) == usage["prompt_tokens"] + usage["completion_tokens"], lines
    assert Decimal(report["total_cost_usd"]) == Decimal(usage["cost_usd"])


def test_a_long_json_answer_is_generated_once(fleet: Fleet) -> None:
    """A non-streaming answer that takes longer than the first-token timeout in all is served
    by the replica that started it, not generated again elsewhere."""
    api = client(fleet, "upstream-long")
    target = probe(fleet, api)
    before = vllm_requests(fleet)
    target.script(Fault("slow_words", delay_s=FIRST_TOKEN_TIMEOUT_S * 0.35))  # 6 words: 2.1x the timeout
    answer = flash(api)
    assert answer.choices[0].message.content == "The capital of France is Paris."
    assert vllm_requests(fleet) == before + 1 and last_chat(fleet)[0] is target
    assert completed_event(fleet.server, answer.id)["dispatch"]["failed_replicas"] == []


def test_a_whole_answer_cut_mid_answer_comes_from_the_other_replica(fleet: Fleet) -> None:
    """Nothing of a non-streaming answer has reached the client: a replica dropping it halfway
    is retried on the other one, and only the completed answer is billed."""
    api = client(fleet, "upstream-halfway")
    target = probe(fleet, api)
    target.script(Fault("drop", after_words=3))
    answer = flash(api)
    assert answer.choices[0].message.content == "The capital of France is Paris."
    served, rec = last_chat(fleet)
    assert served is other(fleet, target)
    assert_usage_is_upstreams(answer.usage, rec.usage_sent)
    event = completed_event(fleet.server, answer.id)
    assert event["dispatch"]["replica"] == f"vllm-eu/{served.base_url}"
    assert [f.split(": ")[0] for f in event["dispatch"]["failed_replicas"]] == [f"vllm-eu/{target.base_url}"]
    sql = "SELECT completion_tokens FROM usage_records WHERE request_id = ?"
    assert rec.usage_sent is not None
    assert wait_rows(fleet.server, 1, sql, answer.id) == [(rec.usage_sent["completion_tokens"],)]


def test_a_stream_refused_before_its_first_token_comes_from_the_other_replica(fleet: Fleet) -> None:
    api = client(fleet, "upstream-early")
    target = probe(fleet, api)
    target.script(Fault("status", status=503))
    chunks = list(flash(api, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The capital of France is Paris."
    served, rec = last_chat(fleet)
    assert served is other(fleet, target)
    assert_usage_is_upstreams(chunks[-1].usage, rec.usage_sent)


def test_no_usage_is_estimated_and_recorded_so(fleet: Fleet) -> None:
    api = client(fleet, "upstream-nousage")
    probe(fleet, api).script(Fault("no_usage"))
    answer = flash(api)
    assert last_chat(fleet)[1].usage_sent is None
    assert answer.usage is not None and answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    event = completed_event(fleet.server, answer.id)
    assert event["dispatch"]["usage_source"] == "estimated"


def test_an_upstream_failure_mid_stream_ends_with_an_error(fleet: Fleet) -> None:
    api = client(fleet, "upstream-broken")
    key = api.api_key
    probe(fleet, api).script(Fault("drop", after_words=2))
    before = vllm_requests(fleet)
    response = httpx.post(
        f"{fleet.server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={
            "model": "deepseek-v4-flash",
            "messages": QUESTION,
            "max_tokens": 40,
            "stream": True,
            "stream_options": {"include_usage": True},
            "thinking": {"type": "disabled"},
        },
        timeout=60,
    )
    assert response.status_code == 200
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices"))
    assert text == "The capital"  # what was delivered before the drop
    assert any("error" in e for e in events) and response.text.rstrip().endswith("data: [DONE]")
    usage = [e["usage"] for e in events if e.get("usage")]
    assert usage and usage[-1]["completion_tokens"] == 2  # billed for what was delivered, once
    assert vllm_requests(fleet) == before + 1  # not retried after the first token
    request_id = events[0]["id"]
    ledger = wait_rows(
        fleet.server,
        1,
        "SELECT status, completion_tokens, cost_total FROM usage_records WHERE request_id = ?",
        request_id,
    )
    assert len(ledger) == 1 and ledger[0][:2] == ("failed", 2)  # one record, what was delivered
    assert Decimal(ledger[0][2]) / 10**12 == Decimal(usage[-1]["cost_usd"])
    found = wait_rows(
        fleet.server, 1, "SELECT kind, payload FROM audit_events WHERE request_id = ?", request_id
    )
    dispatch = [json.loads(p)["dispatch"] for _, p in found if "dispatch" in json.loads(p)]
    assert dispatch and dispatch[0]["pool"] == "vllm-eu" and dispatch[0]["usage_source"] == "estimated"


def test_a_refusal_is_a_502_naming_the_upstream(fleet: Fleet) -> None:
    api = client(fleet, "upstream-refused")
    probe(fleet, api).script(
        Fault("status", status=400, message="This model's maximum context length is 8 tokens.")
    )
    before = vllm_requests(fleet)
    with pytest.raises(openai.APIStatusError) as err:
        flash(api)
    assert err.value.status_code == 502 and "maximum context length" in str(err.value.message)
    assert vllm_requests(fleet) == before + 1  # the other replica was not asked


def test_a_forbidden_pool_is_never_chosen(fleet: Fleet) -> None:
    vllm_before, ds_before = vllm_requests(fleet), len(fleet.deepseek.chat_requests())
    # us-east only: flash may run on vllm-us alone, which is dead; vllm-eu is the only healthy
    # flash pool and stays untouched.
    us = client(fleet, "us-only", "allowed_regions: [us-east]\n")
    with pytest.raises(openai.APIStatusError) as err:
        us.chat.completions.create(model="deepseek-v4-flash", messages=QUESTION, max_tokens=8)
    assert err.value.status_code == 503 and "vllm-us" in str(err.value.message)
    assert "vllm-eu" not in str(err.value.message)
    # eu-west only: pro may run on sglang-eu alone, which has no replica; the DeepSeek API in
    # us-east is healthy and is not used.
    eu = client(fleet, "eu-only", "allowed_regions: [eu-west]\n")
    with pytest.raises(openai.APIStatusError) as err:
        eu.chat.completions.create(model="deepseek-v4-pro", messages=QUESTION, max_tokens=8)
    assert err.value.status_code == 503 and "sglang-eu" in str(err.value.message)
    # Hardware: AMD only. Flash may run on rocm-eu alone, which is dead; the healthy NVIDIA
    # pool in the same region is not used.
    amd = client(fleet, "amd-only", "allowed_vendors: [amd]\n")
    with pytest.raises(openai.APIStatusError) as err:
        amd.chat.completions.create(model="deepseek-v4-flash", messages=QUESTION, max_tokens=8)
    assert err.value.status_code == 503 and "rocm-eu" in str(err.value.message)
    assert "vllm-eu" not in str(err.value.message)
    # A region no pool is in: 403 naming the rule.
    ap = client(fleet, "ap-only", "allowed_regions: [ap-south]\n")
    with pytest.raises(openai.PermissionDeniedError) as err:
        ap.chat.completions.create(model="deepseek-v4-flash", messages=QUESTION, max_tokens=8)
    assert "compliance.allowed_regions" in str(err.value.message)
    # Hardware: every pool is NVIDIA/CUDA.
    npu = client(fleet, "npu-only", "allowed_vendors: [huawei]\n")
    with pytest.raises(openai.PermissionDeniedError) as err:
        npu.chat.completions.create(model="deepseek-v4-pro", messages=QUESTION, max_tokens=8)
    assert "compliance.allowed_vendors" in str(err.value.message)
    assert vllm_requests(fleet) == vllm_before and len(fleet.deepseek.chat_requests()) == ds_before
    # The 503s cost nothing: no replica served those attempts, so their records bill no tokens.
    for tenant in ("us-only", "eu-only", "amd-only"):
        billed = wait_rows(
            fleet.server,
            1,
            "SELECT u.status, u.prompt_cache_miss_tokens, u.completion_tokens, u.cost_total "
            "FROM usage_records u JOIN tenants t ON t.id = u.tenant_id WHERE t.name = ?",
            tenant,
        )
        assert billed == [("failed", 0, 0, 0)], (tenant, billed)


def test_upstream_keys_appear_in_no_log_and_no_audit_event(fleet: Fleet) -> None:
    api = client(fleet, "upstream-keys")
    api.chat.completions.create(model="deepseek-v4-flash", messages=QUESTION, max_tokens=8)
    api.chat.completions.create(model="deepseek-v4-pro", messages=QUESTION, max_tokens=8)
    for up, key in [*((u, VLLM_KEY) for u in fleet.vllms), (fleet.deepseek, DEEPSEEK_KEY)]:
        assert up.received and all(r.headers.get("authorization") == f"Bearer {key}" for r in up.received)
        assert not any(key in r.raw.decode() for r in up.received)
    time.sleep(0.5)  # the last audit rows and log lines land
    audit = "\n".join(str(r) for r in rows(fleet.server, "SELECT * FROM audit_events"))
    assert "vllm-eu" in audit and "api_key_env" in audit  # the pools were audited, by the variable's name
    log = fleet.server.log_text()
    for key in (VLLM_KEY, DEEPSEEK_KEY):
        assert key not in audit and key not in log
