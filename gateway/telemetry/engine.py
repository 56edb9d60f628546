"""Engine instrumentation without touching the engine: a wrapper around `generate()`.

For each generation it emits `inference.generate` with two children built from measured
timestamps, `inference.prefill` (submit to first token, queueing included) and
`inference.decode` (first token to end); records time to first token and time per output
token; and sets the GenAI usage attributes on the request span. Labels for the histograms
(model, variant, mode) come from what the request path annotated before generating.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from gateway.telemetry import names as n
from gateway.telemetry.core import Telemetry, current_request, record_error
from inference.types import Finished, GenerationRequest, TokenDelta

_LABELS = (n.REQUEST_MODEL, n.VARIANT, n.MODE)


class TracedEngine:
    """Delegates everything to the wrapped engine; `generate()` is instrumented."""

    def __init__(self, engine: Any, telemetry: Telemetry, response_model: str | None = None) -> None:
        self._engine = engine
        self._telemetry = telemetry
        self._response_model = response_model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta | Finished]:
        stream = self._engine.generate(request)  # validation errors raise here, as before
        return self._traced(request, stream)

    async def _traced(
        self, request: GenerationRequest, stream: AsyncIterator[TokenDelta | Finished]
    ) -> AsyncIterator[TokenDelta | Finished]:
        parent = otel_context.get_current()
        start_ns = time.time_ns()
        start = time.perf_counter()
        first: float | None = None
        first_ns = 0
        tokens = 0
        finished: Finished | None = None
        error: BaseException | None = None
        try:
            async for event in stream:
                if isinstance(event, TokenDelta):
                    if first is None and event.token_ids:
                        first, first_ns = time.perf_counter(), time.time_ns()
                    tokens += len(event.token_ids)
                else:
                    finished = event
                yield event
        except BaseException as exc:
            error = exc
            raise
        finally:
            end, end_ns = time.perf_counter(), time.time_ns()
            try:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()  # an early exit cancels the sequence in the engine
            finally:
                self._observe(request, parent, start, first, end, tokens, finished)
                self._spans(request, parent, (start_ns, first_ns, end_ns), tokens, finished, error)

    def _observe(
        self,
        request: GenerationRequest,
        parent: otel_context.Context,
        start: float,
        first: float | None,
        end: float,
        tokens: int,
        finished: Finished | None,
    ) -> None:
        req = current_request(parent)
        labels: dict[str, Any] = {n.OPERATION: "chat"}
        if req is not None:
            labels.update({k: req.attributes[k] for k in _LABELS if k in req.attributes})
        if first is not None:
            self._telemetry.ttft.record(first - start, labels)
            if tokens > 1:
                self._telemetry.tpot.record((end - first) / (tokens - 1), labels)
        if req is not None and finished is not None:
            usage = finished.usage
            values: dict[str, Any] = {
                n.INPUT_TOKENS: usage.prompt_tokens,
                n.OUTPUT_TOKENS: usage.completion_tokens,
                n.CACHE_HIT_TOKENS: usage.prompt_cache_hit_tokens,
                n.REASONING_TOKENS: usage.reasoning_tokens,
                n.FINISH_REASONS: (finished.finish_reason,),
                n.RESPONSE_ID: request.request_id,
            }
            if self._response_model:
                values[n.RESPONSE_MODEL] = self._response_model
            req.attributes.update(values)
            if req.span.is_recording():
                req.span.set_attributes(values)

    def _spans(
        self,
        request: GenerationRequest,
        parent: otel_context.Context,
        times: tuple[int, int, int],
        tokens: int,
        finished: Finished | None,
        error: BaseException | None,
    ) -> None:
        if not self._telemetry.tracing:
            return
        start_ns, first_ns, end_ns = times
        sampling = request.sampling
        attributes: dict[str, Any] = {
            n.OPERATION: "chat",
            n.RESPONSE_ID: request.request_id,
            n.TEMPERATURE: sampling.temperature,
            n.TOP_P: sampling.top_p,
            "gateway.prompt_tokens_submitted": len(request.prompt_token_ids),
            n.OUTPUT_TOKENS: tokens,
        }
        if sampling.max_tokens is not None:
            attributes[n.MAX_TOKENS] = sampling.max_tokens
        if request.reasoning_budget is not None:
            attributes["gateway.reasoning_budget"] = request.reasoning_budget
        if finished is not None:
            usage = finished.usage
            attributes.update(
                {
                    n.INPUT_TOKENS: usage.prompt_tokens,
                    n.OUTPUT_TOKENS: usage.completion_tokens,
                    n.CACHE_HIT_TOKENS: usage.prompt_cache_hit_tokens,
                    n.CACHE_MISS_TOKENS: usage.prompt_cache_miss_tokens,
                    n.REASONING_TOKENS: usage.reasoning_tokens,
                    n.FINISH_REASONS: (finished.finish_reason,),
                }
            )
        if self._response_model:
            attributes[n.RESPONSE_MODEL] = self._response_model
        tracer = self._telemetry.tracer
        span = tracer.start_span(
            "inference.generate", context=parent, attributes=attributes, start_time=start_ns
        )
        inner = trace.set_span_in_context(span, parent)
        prefill_end = first_ns or end_ns
        prefill = tracer.start_span("inference.prefill", context=inner, start_time=start_ns)
        prefill.set_attribute("gateway.includes_queueing", True)
        prefill.end(end_time=prefill_end)
        if first_ns:
            decode = tracer.start_span("inference.decode", context=inner, start_time=first_ns)
            decode.set_attribute(n.OUTPUT_TOKENS, tokens)
            decode.end(end_time=end_ns)
        if error is not None:
            record_error(span, error)
        span.end(end_time=end_ns)


def engine_gauges(stats: dict[str, Any]) -> dict[str, int]:
    """The engine's stats() snapshot as the gauges Telemetry.observe_engine() expects."""
    if "num_blocks" not in stats:
        return {}
    return {
        "queue_depth": int(stats.get("waiting", 0)),
        "running": int(stats.get("running", 0)),
        "kv_blocks_used": int(stats["num_blocks"]) - int(stats.get("free_blocks", 0)),
        "kv_blocks_total": int(stats["num_blocks"]),
    }
