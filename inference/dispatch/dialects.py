"""How each OpenAI-compatible engine spells what the gateway decided, and how its usage reads.

Request side: the mode (DeepSeek: `thinking` + `reasoning_effort`; vLLM and SGLang: the chat
template's thinking switch in `chat_template_kwargs`, the budget as `max_tokens`) and the
tenant's cache salt (vLLM/SGLang `cache_salt`, DeepSeek `user_id`), so an upstream's prefix
cache never serves one tenant's prefix to another. Response side: usage mapped exactly
(DeepSeek `prompt_cache_hit_tokens`/`prompt_cache_miss_tokens`, OpenAI-style
`prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`).
"""

from __future__ import annotations

from typing import Any

from inference.dispatch.types import DispatchRequest
from inference.types import Usage

FINISH_REASONS = frozenset({"stop", "length"})
OPENAI_EFFORTS = frozenset({"low", "medium", "high"})


def request_body(dialect: str, request: DispatchRequest, model: str) -> dict[str, Any]:
    s = request.generation.sampling
    thinking = request.mode != "non-think"
    body: dict[str, Any] = {
        "model": model,
        "messages": request.messages,
        # Always a stream, also when the client awaits the whole answer (the dispatcher holds it):
        # a JSON answer arrives only when the whole generation is done, so the first-token
        # timeout took a long answer for a dead replica and had it generated again elsewhere.
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": s.temperature,
        "top_p": s.top_p,
    }
    if s.max_tokens is not None:
        body["max_tokens"] = s.max_tokens
    if s.stop:
        body["stop"] = list(s.stop)
    if s.seed is not None:
        body["seed"] = s.seed
    if s.frequency_penalty:
        body["frequency_penalty"] = s.frequency_penalty
    if s.presence_penalty:
        body["presence_penalty"] = s.presence_penalty
    if s.logprobs:
        body["logprobs"] = True
        if s.top_logprobs:
            body["top_logprobs"] = s.top_logprobs
    effort = request.reasoning_effort or ("max" if request.mode == "think-max" else "high")
    if dialect == "deepseek":
        body["thinking"] = {"type": "enabled" if thinking else "disabled"}
        if thinking:
            body["reasoning_effort"] = effort
        if request.salt_text:
            body["user_id"] = request.salt_text
        return body
    # vLLM and SGLang: the chat template decides; DeepSeek templates read `thinking`, Qwen-style
    # ones `enable_thinking` (an unused kwarg is ignored by the template).
    body["chat_template_kwargs"] = {"thinking": thinking, "enable_thinking": thinking}
    if thinking:
        # vLLM's request schema takes only low/medium/high (anything else is a 400); SGLang
        # also takes "max". The template gets the effort itself through its kwargs.
        body["chat_template_kwargs"]["reasoning_effort"] = effort
        body["reasoning_effort"] = effort if dialect == "sglang" or effort in OPENAI_EFFORTS else "high"
    if s.top_k:
        body["top_k"] = s.top_k
    if request.salt_text:
        body["cache_salt"] = request.salt_text
    if dialect == "sglang":
        body["separate_reasoning"] = True
    return body


def usage_from(raw: dict[str, Any] | None) -> Usage | None:
    """The upstream's usage object in the ledger's terms; None when it sent none."""
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if not _count(prompt) or not _count(completion):  # absent or malformed: meter it ourselves
        return None
    assert isinstance(prompt, int) and isinstance(completion, int)
    if "prompt_cache_hit_tokens" in raw:  # DeepSeek: both parts given; they sum to prompt_tokens
        hit = _int(raw.get("prompt_cache_hit_tokens"))
    else:
        details = raw.get("prompt_tokens_details") or {}
        hit = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    hit = min(hit, prompt)
    out_details = raw.get("completion_tokens_details") or {}
    reasoning = _int(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0
    return Usage(
        prompt_tokens=prompt,
        prompt_cache_hit_tokens=hit,
        prompt_cache_miss_tokens=prompt - hit,
        completion_tokens=completion,
        reasoning_tokens=min(reasoning, completion),
    )


def finish_reason(raw: object) -> str:
    return raw if isinstance(raw, str) and raw in FINISH_REASONS else "stop"


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _int(value: object) -> int:
    return value if _count(value) else 0  # type: ignore[return-value]
