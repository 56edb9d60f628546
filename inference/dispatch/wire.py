"""The pool worker's wire format, shared by the worker's server and the gateway's client.

Request: one JSON object (the GenerationRequest, the salt in hex). Response: NDJSON, one
event a line: {"t": "d", ...} a TokenDelta, {"t": "f", ...} the Finished with exact usage,
{"t": "e", "message": ..., "retryable": ...} an error (before or after the first token).
"""

from __future__ import annotations

import json
from typing import Any

from inference.types import Finished, GenerationRequest, SamplingParams, TokenDelta, Usage

PROTOCOL_VERSION = 1
GENERATE_PATH = "/internal/v1/generate"
HEALTH_PATH = "/internal/v1/health"
_SAMPLING_FIELDS = tuple(SamplingParams.__dataclass_fields__)


def request_to_json(request: GenerationRequest) -> bytes:
    s = request.sampling
    sampling = {name: getattr(s, name) for name in _SAMPLING_FIELDS}
    sampling["stop"] = list(s.stop)
    return json.dumps(
        {
            "v": PROTOCOL_VERSION,
            "request_id": request.request_id,
            "prompt_token_ids": request.prompt_token_ids,
            "sampling": sampling,
            "cache_salt": request.cache_salt.hex(),
            "reasoning_budget": request.reasoning_budget,
            "expert_fraction": request.expert_fraction,
        },
        separators=(",", ":"),
    ).encode()


def request_from_json(body: bytes) -> GenerationRequest:
    """Raises ValueError with what is wrong (the worker answers 400 with it)."""
    data = json.loads(body)
    if not isinstance(data, dict) or data.get("v") != PROTOCOL_VERSION:
        raise ValueError(f"expected protocol version {PROTOCOL_VERSION}")
    ids = data.get("prompt_token_ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and i >= 0 for i in ids):
        raise ValueError("prompt_token_ids must be a list of token ids")
    raw = data.get("sampling")
    if not isinstance(raw, dict) or set(raw) - set(_SAMPLING_FIELDS):
        raise ValueError("sampling must be an object of SamplingParams fields")
    raw = dict(raw)
    raw["stop"] = tuple(raw.get("stop") or ())
    budget = data.get("reasoning_budget")
    fraction = data.get("expert_fraction")
    try:
        return GenerationRequest(
            request_id=str(data["request_id"]),
            prompt_token_ids=ids,
            sampling=SamplingParams(**raw),
            cache_salt=bytes.fromhex(str(data.get("cache_salt", ""))),
            reasoning_budget=None if budget is None else int(budget),
            expert_fraction=None if fraction is None else float(fraction),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"invalid generation request: {exc}") from None


def event_to_line(event: TokenDelta | Finished) -> bytes:
    if isinstance(event, TokenDelta):
        out: dict[str, Any] = {"t": "d", "x": event.text, "i": event.token_ids}
        if event.reasoning:
            out["r"] = 1
        if event.logprobs is not None:
            out["l"] = event.logprobs
    else:
        u = event.usage
        out = {
            "t": "f",
            "reason": event.finish_reason,
            "usage": [
                u.prompt_tokens,
                u.prompt_cache_hit_tokens,
                u.prompt_cache_miss_tokens,
                u.completion_tokens,
                u.reasoning_tokens,
            ],
        }
    return json.dumps(out, separators=(",", ":")).encode() + b"\n"


def error_line(message: str, *, retryable: bool) -> bytes:
    return json.dumps({"t": "e", "message": message, "retryable": retryable}).encode() + b"\n"


def event_from_line(line: bytes) -> TokenDelta | Finished | dict[str, Any]:
    """A TokenDelta, a Finished, or the error object ({"t": "e", ...})."""
    data = json.loads(line)
    kind = data.get("t")
    if kind == "d":
        return TokenDelta(
            text=data["x"], token_ids=data["i"], reasoning=bool(data.get("r")), logprobs=data.get("l")
        )
    if kind == "f":
        p, hit, miss, completion, reasoning = data["usage"]
        return Finished(data["reason"], Usage(p, hit, miss, completion, reasoning))
    if kind == "e":
        return data
    raise ValueError(f"unknown event {kind!r}")
