"""The engine wrapper: spans from measured timestamps, TTFT/TPOT, usage on the request span."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from opentelemetry import context, trace

from gateway.telemetry.core import RequestScope, with_request
from gateway.telemetry.engine import TracedEngine
from inference.types import Finished, GenerationRequest, SamplingParams, TokenDelta, Usage
from tests.telemetry.helpers import Captured

PROMPT_TEXT = "the secret plan is purple elephants"


class FakeEngine:
    def __init__(self, tokens: int = 4, delay: float = 0.01) -> None:
        self.tokens, self.delay = tokens, delay
        self.closed = False
        self.context_length = 2048

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta | Finished]:
        if not request.prompt_token_ids:
            raise ValueError("the prompt is empty")
        return self._stream()

    async def _stream(self) -> AsyncIterator[TokenDelta | Finished]:
        try:
            await asyncio.sleep(self.delay * 3)  # queue + prefill
            for i in range(self.tokens):
                yield TokenDelta(text=f"{PROMPT_TEXT} {i}", token_ids=[i], reasoning=i == 0)
                await asyncio.sleep(self.delay)
            yield Finished("stop", Usage(12, 8, 4, self.tokens, 1))
        finally:
            self.closed = True


def _request() -> GenerationRequest:
    return GenerationRequest("chatcmpl-1", [1, 2, 3], SamplingParams(temperature=0.5, max_tokens=16))


def _in_request(captured: Captured) -> tuple[trace.Span, RequestScope, object]:
    server = captured.telemetry.tracer.start_span("POST /v1/chat/completions", kind=trace.SpanKind.SERVER)
    scope = RequestScope(server)
    token = context.attach(with_request(scope, trace.set_span_in_context(server)))
    return server, scope, token


async def test_generation_spans_metrics_and_usage(captured: Captured) -> None:
    tel = captured.telemetry
    engine = TracedEngine(FakeEngine(), tel, response_model="SmolLM2-135M-Instruct")
    assert engine.context_length == 2048  # everything else is delegated
    server, scope, token = _in_request(captured)
    try:
        tel.annotate_request(model="deepseek-v4-flash", variant="flash", mode="think-high", tenant_id="t1")
        events = [e async for e in engine.generate(_request())]
    finally:
        context.detach(token)
        server.end()
    assert isinstance(events[-1], Finished) and len(events) == 5
    gen = captured.span("inference.generate")
    prefill, decode = captured.span("inference.prefill"), captured.span("inference.decode")
    request_span = captured.span("POST /v1/chat/completions")
    assert gen.parent.span_id == request_span.context.span_id
    assert prefill.parent.span_id == gen.context.span_id == decode.parent.span_id
    assert gen.start_time == prefill.start_time and prefill.end_time == decode.start_time
    assert decode.end_time == gen.end_time and prefill.end_time - prefill.start_time >= 25_000_000
    assert gen.attributes["gen_ai.usage.input_tokens"] == 12
    assert gen.attributes["gateway.cache_hit_tokens"] == 8
    assert gen.attributes["gen_ai.request.temperature"] == 0.5
    for key, value in {
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 4,
        "gateway.cache_hit_tokens": 8,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.response.model": "SmolLM2-135M-Instruct",
        "gen_ai.request.model": "deepseek-v4-flash",
        "gateway.variant": "flash",
    }.items():
        assert request_span.attributes[key] == value, key
    labels = {
        "gen_ai.request.model": "deepseek-v4-flash",
        "gateway.variant": "flash",
        "gateway.mode": "think-high",
    }
    [ttft] = captured.points("gen_ai.server.time_to_first_token")
    assert ttft["attributes"] == {"gen_ai.operation.name": "chat", **labels}
    assert ttft["count"] == 1 and ttft["sum"] >= 0.025
    [tpot] = captured.points("gen_ai.server.time_per_output_token")
    assert tpot["count"] == 1 and 0.005 < tpot["sum"] < 1
    assert PROMPT_TEXT not in captured.dump()


async def test_an_early_exit_closes_the_engine_stream(captured: Captured) -> None:
    fake = FakeEngine(tokens=50)
    engine = TracedEngine(fake, captured.telemetry)
    stream = engine.generate(_request())
    async for event in stream:
        assert isinstance(event, TokenDelta)
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert fake.closed
    gen = captured.span("inference.generate")
    assert gen.attributes["gateway.cancelled"] is True
    assert gen.status.status_code is not trace.StatusCode.ERROR


async def test_validation_errors_raise_before_streaming(captured: Captured) -> None:
    engine = TracedEngine(FakeEngine(), captured.telemetry)
    with pytest.raises(ValueError):
        engine.generate(GenerationRequest("x", [], SamplingParams()))
    assert captured.finished() == []
