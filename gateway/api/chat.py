"""POST /v1/chat/completions: JSON and server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from gateway.api.auth import authenticate, header
from gateway.api.errors import as_gateway_error, error_body
from gateway.api.formatting import chunk_body, completion_body, usage_chunk_body
from gateway.api.schemas import decode_chat_request
from gateway.errors import ServiceUnavailableError
from gateway.service.completion_types import Answer, Outcome, PreparedCompletion
from gateway.service.completions import CompletionService
from inference.types import TokenDelta

USE_CASE_HEADER = b"x-gateway-use-case"
_encode = msgspec.json.encode


def decision_headers(prepared: PreparedCompletion) -> dict[str, str]:
    return {
        **prepared.rate_limit_headers,
        "x-request-id": prepared.request_id,
        "x-gateway-variant": prepared.variant,
        "x-gateway-mode": prepared.mode,
        "x-gateway-policy-version": prepared.decision.policy_version,
    }


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
    telemetry = request.app.state.services.telemetry
    with telemetry.span("gateway.auth"):
        principal = await authenticate(request)
    telemetry.annotate_request(tenant_id=principal.tenant_id)
    body = decode_chat_request(await request.body())
    service: CompletionService | None = request.app.state.services.completions
    if service is None:
        raise ServiceUnavailableError("This gateway process serves no models (GATEWAY_LOAD_MODEL=false).")
    prepared = await service.prepare(principal, body, use_case=header(request, USE_CASE_HEADER))
    if body.stream and prepared.decision.cascade is not None:
        # The first answer is judged whole before anything is sent (the escalation headers
        # too): run the cascade, then stream the answer that stands as one burst of chunks.
        answer = await service.complete(prepared)
        return Stream(
            _sse_answer(answer),
            media_type="text/event-stream",
            headers={**_answer_headers(answer), "cache-control": "no-cache"},
        )
    if body.stream:
        return Stream(
            _sse(service, prepared),
            media_type="text/event-stream",
            headers={**decision_headers(prepared), "cache-control": "no-cache"},
        )
    answer = await service.complete(prepared)
    return Response(_answer_body(answer), headers=_answer_headers(answer))


def _answer_headers(answer: Answer) -> dict[str, str]:
    headers = decision_headers(answer.prepared)
    if answer.escalation is not None and answer.escalation.escalate:
        headers["x-gateway-escalated"] = "true"
    return headers


def _answer_body(answer: Answer) -> dict[str, Any]:
    prepared = answer.prepared
    return completion_body(
        prepared,
        content=answer.content,
        reasoning=answer.reasoning,
        logprobs=answer.logprobs if prepared.client_logprobs else None,
        finish_reason=answer.finish_reason,
        usage=answer.usage,
        cost=answer.cost,
        compute=answer.compute,
    )


def _sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


async def _sse_answer(answer: Answer) -> AsyncIterator[bytes]:
    """A finished answer as the chunks a stream of it would have carried."""
    prepared = answer.prepared
    yield _sse_event(chunk_body(prepared, {"role": "assistant", "content": ""}))
    if answer.reasoning:
        yield _sse_event(chunk_body(prepared, {"reasoning_content": answer.reasoning}))
    if answer.content:
        logprobs = answer.logprobs if prepared.client_logprobs else None
        yield _sse_event(chunk_body(prepared, {"content": answer.content}, logprobs=logprobs))
    yield _sse_event(chunk_body(prepared, {}, finish_reason=answer.finish_reason))
    if prepared.request.include_usage:
        yield _sse_event(usage_chunk_body(prepared, answer.usage, answer.cost, answer.compute))
    yield b"data: [DONE]\n\n"


async def _sse(service: CompletionService, prepared: PreparedCompletion) -> AsyncIterator[bytes]:
    outcome = Outcome()
    yield _sse_event(chunk_body(prepared, {"role": "assistant", "content": ""}))
    try:
        async for event in service.stream(prepared, outcome):
            if isinstance(event, TokenDelta):
                if not event.text and not event.logprobs:
                    continue
                key = "reasoning_content" if event.reasoning else "content"
                logprobs = event.logprobs if prepared.client_logprobs and not event.reasoning else None
                yield _sse_event(chunk_body(prepared, {key: event.text}, logprobs=logprobs))
            else:
                yield _sse_event(chunk_body(prepared, {}, finish_reason=event.finish_reason))
                if prepared.request.include_usage and outcome.cost is not None:
                    yield _sse_event(usage_chunk_body(prepared, event.usage, outcome.cost, event.compute))
    except Exception as exc:  # headers are sent: the error goes in the stream
        error = as_gateway_error(exc)
        yield _sse_event(error_body(error.message, error.type, error.param, error.code))
        # A replica that failed mid-answer: the client still learns what it is billed for.
        if prepared.request.include_usage and outcome.usage is not None and outcome.cost is not None:
            yield _sse_event(usage_chunk_body(prepared, outcome.usage, outcome.cost))
    yield b"data: [DONE]\n\n"
