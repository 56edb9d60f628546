"""The upstream adapter against a real HTTP server speaking each engine's dialect: usage mapped
exactly (streaming and not), the mode mapped onto the engine's own controls, the tenant's
cache salt sent and cache hits isolated per tenant, credentials only in the header."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from inference.dispatch import UpstreamBackend
from inference.dispatch.types import DispatchRequest
from inference.types import Finished, TokenDelta, Usage
from tests.dispatch.conftest import dispatch_request, words
from tests.dispatch.fake_upstream import DEFAULT_ANSWER, DEFAULT_REASONING, FakeUpstream

Make = Callable[..., FakeUpstream]
CASES = [
    pytest.param("vllm", "reasoning_content", id="vllm"),
    pytest.param("vllm", "reasoning", id="vllm-reasoning-field"),
    pytest.param("sglang", "reasoning_content", id="sglang"),
    pytest.param("deepseek", "reasoning_content", id="deepseek"),
]
KEY = "sk-upstream-secret-0123456789"


async def run(backend: UpstreamBackend, request: DispatchRequest) -> tuple[list[TokenDelta], Finished]:
    deltas: list[TokenDelta] = []
    finished: list[Finished] = []
    async for event in backend.generate(request):
        (deltas if isinstance(event, TokenDelta) else finished).append(event)  # type: ignore[arg-type]
    assert len(finished) == 1
    return deltas, finished[0]


def expected(sent: dict | None) -> Usage:
    """The ledger's reading of the usage object the server sent, by the dialect's documented fields."""
    assert sent is not None
    if "prompt_cache_hit_tokens" in sent:
        hit = sent["prompt_cache_hit_tokens"]
        assert hit + sent["prompt_cache_miss_tokens"] == sent["prompt_tokens"]
    else:
        hit = sent["prompt_tokens_details"]["cached_tokens"]
    return Usage(
        prompt_tokens=sent["prompt_tokens"],
        prompt_cache_hit_tokens=hit,
        prompt_cache_miss_tokens=sent["prompt_tokens"] - hit,
        completion_tokens=sent["completion_tokens"],
        reasoning_tokens=sent["completion_tokens_details"]["reasoning_tokens"],
    )


def backend_for(up: FakeUpstream, **kw: object) -> UpstreamBackend:
    return UpstreamBackend(up.dialect, up.base_url, encode=words, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize(("dialect", "field"), CASES)
async def test_usage_and_reasoning_mapped_exactly(
    upstreams: Make, dialect: str, field: str, stream: bool
) -> None:
    up = upstreams(dialect, reasoning_field=field)
    backend = backend_for(up)
    try:
        first_deltas, first = await run(backend, dispatch_request(mode="think-high", stream=stream))
        _, second = await run(backend, dispatch_request(mode="think-high", stream=stream))
    finally:
        await backend.close()
    sent = [r.usage_sent for r in up.chat_requests()]
    assert first.usage == expected(sent[0]) and second.usage == expected(sent[1])
    assert first.usage_source == second.usage_source == "measured"
    assert first.usage.prompt_cache_hit_tokens == 0 and second.usage.prompt_cache_hit_tokens > 0
    assert first.usage.reasoning_tokens == len(DEFAULT_REASONING.split()) > 0
    reasoning = "".join(d.text for d in first_deltas if d.reasoning)
    content = "".join(d.text for d in first_deltas if not d.reasoning)
    assert reasoning == DEFAULT_REASONING and content == DEFAULT_ANSWER
    assert first.finish_reason == "stop"
    if stream:  # usage only in the last chunk, and only because the adapter asked for it
        assert up.chat_requests()[0].body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("dialect", ["vllm", "sglang", "deepseek"])
async def test_mode_mapped_onto_the_engine_controls(upstreams: Make, dialect: str) -> None:
    up = upstreams(dialect)
    backend = backend_for(up)
    try:
        off_deltas, off = await run(backend, dispatch_request(mode="non-think", max_tokens=50))
        await run(backend, dispatch_request(mode="think-high", max_tokens=300))
        await run(backend, dispatch_request(mode="think-max", max_tokens=900))
    finally:
        await backend.close()
    non, high, top = (r.body for r in up.chat_requests())
    assert [b["max_tokens"] for b in (non, high, top)] == [50, 300, 900]  # the budget, as max_tokens
    if dialect == "deepseek":
        assert non["thinking"] == {"type": "disabled"} and "reasoning_effort" not in non
        assert high["thinking"] == {"type": "enabled"} and high["reasoning_effort"] == "high"
        assert top["thinking"] == {"type": "enabled"} and top["reasoning_effort"] == "max"
        assert not {"chat_template_kwargs", "cache_salt", "separate_reasoning"} & set(high)
    else:
        assert non["chat_template_kwargs"]["thinking"] is False
        assert high["chat_template_kwargs"]["thinking"] is True
        assert top["chat_template_kwargs"]["thinking"] is True
        assert "thinking" not in high and "user_id" not in high
        assert high["reasoning_effort"] == "high" and "reasoning_effort" not in non
        # think-max: vLLM's schema stops at "high"; the template hears "max" through its kwargs.
        assert top["reasoning_effort"] == ("max" if dialect == "sglang" else "high")
        assert top["chat_template_kwargs"]["reasoning_effort"] == "max"
        assert high.get("separate_reasoning") is (True if dialect == "sglang" else None)
    assert off.usage.reasoning_tokens == 0 and not any(d.reasoning for d in off_deltas)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_the_budget_truncates_to_length(upstreams: Make, stream: bool) -> None:
    up = upstreams("vllm")
    backend = backend_for(up)
    try:
        deltas, fin = await run(backend, dispatch_request(mode="think-high", max_tokens=5, stream=stream))
    finally:
        await backend.close()
    assert fin.finish_reason == "length" and fin.usage.completion_tokens == 5 == fin.usage.reasoning_tokens
    assert all(d.reasoning for d in deltas)


@pytest.mark.parametrize("dialect", ["vllm", "sglang", "deepseek"])
async def test_cache_salt_sent_and_hits_isolated_per_tenant(upstreams: Make, dialect: str) -> None:
    up = upstreams(dialect)
    backend = backend_for(up)
    try:
        _, a1 = await run(backend, dispatch_request(salt="tenant-a"))
        _, b1 = await run(backend, dispatch_request(salt="tenant-b"))  # same prompt, another tenant
        _, a2 = await run(backend, dispatch_request(salt="tenant-a"))
        _, b2 = await run(backend, dispatch_request(salt="tenant-b"))
    finally:
        await backend.close()
    field = "user_id" if dialect == "deepseek" else "cache_salt"
    assert [r.body[field] for r in up.chat_requests()] == ["tenant-a", "tenant-b", "tenant-a", "tenant-b"]
    assert a1.usage.prompt_cache_hit_tokens == 0
    assert b1.usage.prompt_cache_hit_tokens == 0  # tenant a's prefix is not served to tenant b
    assert a2.usage.prompt_cache_hit_tokens > 0 and b2.usage.prompt_cache_hit_tokens > 0
    assert a2.usage.prompt_cache_miss_tokens == a2.usage.prompt_tokens - a2.usage.prompt_cache_hit_tokens


async def test_upstream_model_name_and_key_only_in_the_authorization_header(upstreams: Make) -> None:
    up = upstreams("deepseek", api_key=KEY)
    backend = backend_for(up, api_key=KEY, models={"flash": "deepseek-v4-flash", "pro": "deepseek-v4-pro"})
    try:
        await run(backend, dispatch_request(variant="pro"))
        assert (await backend.health()).ok
    finally:
        await backend.close()
    chat = up.chat_requests()[0]
    assert chat.body["model"] == "deepseek-v4-pro" and chat.status == 200
    for rec in up.received:
        assert rec.headers["authorization"] == f"Bearer {KEY}"
        assert KEY not in rec.raw.decode()
        assert not any(KEY in v for k, v in rec.headers.items() if k != "authorization")


async def test_a_wrong_key_is_an_error_without_the_key(upstreams: Make) -> None:
    up = upstreams("vllm", api_key=KEY)
    backend = backend_for(up, api_key="sk-wrong-key-987654321")
    try:
        with pytest.raises(Exception) as err:
            await run(backend, dispatch_request())
    finally:
        await backend.close()
    assert "401" in str(err.value) and "sk-wrong-key" not in str(err.value)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_no_usage_is_estimated_with_our_tokenizer(upstreams: Make, tokenizer, stream: bool) -> None:
    up = upstreams("vllm")
    from tests.dispatch.fake_upstream import Fault

    up.script(Fault("no_usage"))
    prompt_ids = tokenizer.encode_chat(dispatch_request().messages)
    backend = UpstreamBackend("vllm", up.base_url, encode=tokenizer.encode)
    try:
        deltas, fin = await run(
            backend, dispatch_request(mode="think-high", stream=stream, prompt_ids=prompt_ids)
        )
    finally:
        await backend.close()
    assert up.chat_requests()[0].usage_sent is None
    assert fin.usage_source == "estimated"
    content = "".join(d.text for d in deltas if not d.reasoning)
    reasoning = "".join(d.text for d in deltas if d.reasoning)
    assert fin.usage == Usage(
        prompt_tokens=len(prompt_ids),
        prompt_cache_hit_tokens=0,
        prompt_cache_miss_tokens=len(prompt_ids),
        completion_tokens=len(tokenizer.encode(content)) + len(tokenizer.encode(reasoning)),
        reasoning_tokens=len(tokenizer.encode(reasoning)),
    )


async def test_health_follows_the_models_endpoint(upstreams: Make) -> None:
    up = upstreams("sglang")
    backend = backend_for(up)
    try:
        assert (await backend.health()).ok
        up.healthy = False
        assert not (await backend.health()).ok
    finally:
        await backend.close()
