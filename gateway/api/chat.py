"""POST /v1/chat/completions: JSON and server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from gateway.api.auth import authenticate
from gateway.api.errors import as_gateway_error, error_body
from gateway.api.formatting import chunk_body, completion_body, usage_chunk_body
from gateway.api.schemas import decode_chat_request
from gateway.errors import ServiceUnavailableError
from gateway.service.completions import CompletionService, Outcome, PreparedCompletion
from inference.types import Finished, TokenDelta

_encode = msgspec.json.encode


def decision_headers(prepared: PreparedCompletion) -> dict[str, str]:
    return {
        "x-request-id": prepared.request_id,
        "x-gateway-variant": prepared.variant,
        "x-gateway-mode": prepared.mode,
    }


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
    principal = await authenticate(request)
    body = decode_chat_request(await request.body())
    service: CompletionService | None = request.app.state.services.completions
    if service is None:
        raise ServiceUnavailableError("This gateway process serves no models (GATEWAY_LOAD_MODEL=false).")
    prepared = service.prepare(principal, body)
    if body.stream:
        return Stream(
            _sse(service, prepared),
            media_type="text/event-stream",
            headers={**decision_headers(prepared), "cache-control": "no-cache"},
        )
    return await _complete(service, prepared)


async def _complete(service: CompletionService, prepared: PreparedCompletion) -> Response[Any]:
    outcome = Outcome()
    content: list[str] = []
    reasoning: list[str] = []
    logprobs: list[dict[str, Any]] | None = [] if prepared.generation.sampling.logprobs else None
    finished: Finished | None = None
    async for event in service.run(prepared, outcome):
        if isinstance(event, TokenDelta):
            (reasoning if event.reasoning else content).append(event.text)
            if logprobs is not None and event.logprobs and not event.reasoning:
                logprobs.extend(event.logprobs)
        else:
            finished = event
    assert finished is not None  # the engine always ends with Finished
    body = completion_body(
        prepared,
        content="".join(content),
        reasoning="".join(reasoning) if prepared.generation.reasoning_budget is not None else None,
        logprobs=logprobs,
        finish_reason=finished.finish_reason,
        usage=finished.usage,
    )
    return Response(body, headers=decision_headers(prepared))


def _sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


async def _sse(service: CompletionService, prepared: PreparedCompletion) -> AsyncIterator[bytes]:
    outcome = Outcome()
    yield _sse_event(chunk_body(prepared, {"role": "assistant", "content": ""}))
    try:
        async for event in service.run(prepared, outcome):
            if isinstance(event, TokenDelta):
                if not event.text and not event.logprobs:
                    continue
                key = "reasoning_content" if event.reasoning else "content"
                yield _sse_event(chunk_body(prepared, {key: event.text}, logprobs=event.logprobs))
            else:
                yield _sse_event(chunk_body(prepared, {}, finish_reason=event.finish_reason))
                if prepared.request.include_usage:
                    yield _sse_event(usage_chunk_body(prepared, event.usage))
    except Exception as exc:  # headers are sent: the error goes in the stream
        error = as_gateway_error(exc)
        yield _sse_event(error_body(error.message, error.type, error.param, error.code))
    yield b"data: [DONE]\n\n"
