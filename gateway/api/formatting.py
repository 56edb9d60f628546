"""OpenAI/DeepSeek response shapes for chat completions (JSON and stream chunks)."""

from __future__ import annotations

from typing import Any

from billing.cost import Cost
from gateway.service.completion_types import PreparedCompletion
from inference.types import Compute, Usage

# The same for every backend: the first chunk of a stream goes out before a replica is chosen.
SYSTEM_FINGERPRINT = "fp_deepseek_gateway"


def usage_body(usage: Usage, cost: Cost, compute: Compute | None = None) -> dict[str, Any]:
    body = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_cache_hit_tokens": usage.prompt_cache_hit_tokens,
        "prompt_cache_miss_tokens": usage.prompt_cache_miss_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.prompt_cache_hit_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        # Exact decimal strings (never floats): what this request costs the tenant.
        "cost_usd": cost.total_usd,
        "cost_details": {k: v for k, v in cost.as_usd_str().items() if k != "cost_usd"},
        "price_version": cost.price_version,
    }
    if compute is not None:  # the embedded engine's own count: what the mode and variant cost
        body["compute_details"] = {
            "tokens_run": compute.tokens,
            "flops": compute.flops,
            "kv_cache_bytes": compute.kv_bytes,
        }
    return body


def completion_body(
    prepared: PreparedCompletion,
    *,
    content: str,
    reasoning: str | None,
    logprobs: list[dict[str, Any]] | None,
    finish_reason: str,
    usage: Usage,
    cost: Cost,
    compute: Compute | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return {
        "id": prepared.request_id,
        "object": "chat.completion",
        "created": int(prepared.started_at.timestamp()),
        "model": prepared.model_id,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": {"content": logprobs} if logprobs is not None else None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_body(usage, cost, compute),
    }


def chunk_body(
    prepared: PreparedCompletion,
    delta: dict[str, Any],
    *,
    finish_reason: str | None = None,
    logprobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": prepared.request_id,
        "object": "chat.completion.chunk",
        "created": int(prepared.started_at.timestamp()),
        "model": prepared.model_id,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "logprobs": {"content": logprobs} if logprobs is not None else None,
                "finish_reason": finish_reason,
            }
        ],
    }


def usage_chunk_body(
    prepared: PreparedCompletion, usage: Usage, cost: Cost, compute: Compute | None = None
) -> dict[str, Any]:
    return {
        "id": prepared.request_id,
        "object": "chat.completion.chunk",
        "created": int(prepared.started_at.timestamp()),
        "model": prepared.model_id,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [],
        "usage": usage_body(usage, cost, compute),
    }
