"""One chat completion, end to end without HTTP: prepare, generate, record.

The HTTP layer only formats what this yields (JSON or server-sent events).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import transaction, utcnow
from billing.models import UsageRecord
from gateway.api.schemas import ChatCompletionRequest
from gateway.audit.log import append_event
from gateway.auth.service import Principal
from gateway.errors import InvalidRequestError
from gateway.service.catalog import resolve_model
from inference.types import (
    Finished,
    GenerationRequest,
    ModelArtifact,
    SamplingParams,
    TokenDelta,
    Usage,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 4096
MODE_NON_THINK = "non-think"
MODE_THINK_HIGH = "think-high"
MODE_THINK_MAX = "think-max"


class ChatModel(Protocol):
    context_length: int
    artifact: ModelArtifact

    def encode_chat(
        self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True
    ) -> list[int]: ...


class GenerationEngine(Protocol):
    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenDelta | Finished]: ...


@dataclass
class PreparedCompletion:
    request_id: str
    principal: Principal
    request: ChatCompletionRequest
    model_id: str
    variant: str
    mode: str
    generation: GenerationRequest
    started_at: dt.datetime


@dataclass
class Outcome:
    """What happened to a completion; filled in while it streams."""

    completion_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str | None = None
    usage: Usage | None = None
    status: str = "failed"
    record_written: asyncio.Event = field(default_factory=asyncio.Event)


def request_mode(request: ChatCompletionRequest) -> str:
    """DeepSeek semantics: thinking on/off, effort low/medium -> high, xhigh -> max."""
    effort = request.reasoning_effort
    # Without an explicit switch, asking for an effort turns thinking on.
    enabled = effort is not None if request.thinking is None else request.thinking.type == "enabled"
    if not enabled:
        return MODE_NON_THINK
    return MODE_THINK_MAX if effort in ("max", "xhigh") else MODE_THINK_HIGH


def cache_salt(tenant_id: str) -> bytes:
    """Prefix-cache entries are keyed by tenant so that tenants never share them."""
    return hashlib.sha256(b"gateway-prefix-cache\x00" + tenant_id.encode()).digest()


class CompletionService:
    def __init__(
        self,
        *,
        model: ChatModel,
        engine: GenerationEngine,
        sessions: async_sessionmaker[AsyncSession],
        reasoning_budgets: dict[str, int] | None = None,
    ):
        self._model = model
        self._engine = engine
        self._sessions = sessions
        self._reasoning_budgets = reasoning_budgets or {MODE_THINK_HIGH: 512, MODE_THINK_MAX: 2048}

    def prepare(self, principal: Principal, request: ChatCompletionRequest) -> PreparedCompletion:
        variant = resolve_model(request.model)
        mode = request_mode(request)
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        prompt_ids = self._model.encode_chat(messages, add_generation_prompt=True)
        context = self._model.context_length
        room = context - len(prompt_ids)
        asked = request.output_limit
        if room <= 0 or (asked is not None and asked > room):
            needed = len(prompt_ids) + (asked or 1)
            raise InvalidRequestError(
                f"This model's maximum context length is {context} tokens, but the request needs "
                f"{needed} ({len(prompt_ids)} in the messages, {asked or 1} for the completion). "
                "Shorten the messages or lower max_tokens.",
                param="messages",
                code="context_length_exceeded",
            )
        max_tokens = asked if asked is not None else min(DEFAULT_MAX_TOKENS, room)
        temperature = 1.0 if request.temperature is None else request.temperature
        sampling = SamplingParams(
            temperature=temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            top_k=request.top_k or 0,
            max_tokens=max_tokens,
            stop=request.stop_sequences,
            seed=request.seed,
            frequency_penalty=request.frequency_penalty or 0.0,
            presence_penalty=request.presence_penalty or 0.0,
            logprobs=bool(request.logprobs),
            top_logprobs=request.top_logprobs or 0,
        )
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        generation = GenerationRequest(
            request_id=request_id,
            prompt_token_ids=prompt_ids,
            sampling=sampling,
            cache_salt=cache_salt(principal.tenant_id),
            reasoning_budget=self._reasoning_budgets.get(mode),
        )
        return PreparedCompletion(
            request_id=request_id,
            principal=principal,
            request=request,
            model_id=request.model,
            variant=variant,
            mode=mode,
            generation=generation,
            started_at=utcnow(),
        )

    async def run(
        self, prepared: PreparedCompletion, outcome: Outcome
    ) -> AsyncIterator[TokenDelta | Finished]:
        """Generate, and record usage and audit exactly once however the stream ends
        (finished, client gone, or error)."""
        try:
            async for event in self._engine.generate(prepared.generation):
                if isinstance(event, TokenDelta):
                    outcome.completion_tokens += len(event.token_ids)
                    if event.reasoning:
                        outcome.reasoning_tokens += len(event.token_ids)
                else:
                    outcome.finish_reason = event.finish_reason
                    outcome.usage = event.usage
                    outcome.status = "cancelled" if event.finish_reason == "cancelled" else "completed"
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            outcome.status = "cancelled"
            raise
        finally:
            # Shielded: a disconnecting client cancels this task, but the record must land.
            await asyncio.shield(self._record(prepared, outcome))

    async def _record(self, prepared: PreparedCompletion, outcome: Outcome) -> None:
        usage = outcome.usage or Usage(
            prompt_tokens=len(prepared.generation.prompt_token_ids),
            prompt_cache_hit_tokens=0,
            prompt_cache_miss_tokens=len(prepared.generation.prompt_token_ids),
            completion_tokens=outcome.completion_tokens,
            reasoning_tokens=outcome.reasoning_tokens,
        )
        principal = prepared.principal
        artifact = self._model.artifact
        try:
            async with transaction(self._sessions) as session:
                session.add(
                    UsageRecord(
                        request_id=prepared.request_id,
                        attempt=1,
                        tenant_id=principal.tenant_id,
                        api_key_id=principal.key_id,
                        model=prepared.model_id,
                        variant=prepared.variant,
                        mode=prepared.mode,
                        artifact_id=artifact.name,
                        status=outcome.status,
                        finish_reason=outcome.finish_reason,
                        stream=prepared.request.stream,
                        prompt_tokens=usage.prompt_tokens,
                        prompt_cache_hit_tokens=usage.prompt_cache_hit_tokens,
                        prompt_cache_miss_tokens=usage.prompt_cache_miss_tokens,
                        completion_tokens=usage.completion_tokens,
                        reasoning_tokens=usage.reasoning_tokens,
                        started_at=prepared.started_at,
                        finished_at=utcnow(),
                    )
                )
                await append_event(
                    session,
                    kind="request.completed"
                    if outcome.status == "completed"
                    else f"request.{outcome.status}",
                    actor=f"key:{principal.key_id}",
                    tenant_id=principal.tenant_id,
                    request_id=prepared.request_id,
                    payload={
                        "model": prepared.model_id,
                        "variant": prepared.variant,
                        "mode": prepared.mode,
                        "artifact": {
                            "name": artifact.name,
                            "sha256": artifact.sha256,
                            "license": artifact.license,
                        },
                        "usage": {
                            "prompt_tokens": usage.prompt_tokens,
                            "prompt_cache_hit_tokens": usage.prompt_cache_hit_tokens,
                            "prompt_cache_miss_tokens": usage.prompt_cache_miss_tokens,
                            "completion_tokens": usage.completion_tokens,
                            "reasoning_tokens": usage.reasoning_tokens,
                        },
                        "finish_reason": outcome.finish_reason,
                        "status": outcome.status,
                    },
                )
        except Exception:
            # Never with prompt text: only ids and counts reach the log.
            log.exception("failed to record usage for request %s", prepared.request_id)
            raise
        finally:
            outcome.record_written.set()
