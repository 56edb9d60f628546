"""What a request event may keep of the prompt and the answer, per the tenant's retention.

``retention_fields(profile, prompt, answer)`` returns the one field to merge into the
request's audit payload, and nothing beyond what the profile allows::

    none: {"retention": {"mode": "none"}}
    hash: {"retention": {"mode": "hash", "prompt_sha256": ..., "answer_sha256": ...}}
    full: {"retention": {"mode": "full", "prompt_sha256": ..., "answer_sha256": ...,
                         "expires_at": "<ISO time>", "prompt_text": ..., "answer_text": ...}}

The texts are *redactable*: the event hash covers their sha256 (which is in the payload)
but not the texts themselves (``hashed_payload``), so the retention job can delete a text
once it expires (``redact``) and the chain still verifies; ``gateway audit verify`` checks
that every text still present matches its hash and that none disappeared before expiry.

A prompt given as chat messages is hashed as canonical JSON of ``[{"role", "content"}]``
(sorted keys, no spaces, UTF-8), so a tenant can recompute the hash from their own copy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from policy.compliance_rules.profile import ComplianceProfile, RetentionMode

RETENTION_FIELD = "retention"
REDACTABLE = ("prompt_text", "answer_text")
_HASH_OF = {"prompt_text": "prompt_sha256", "answer_text": "answer_sha256"}

Prompt = str | Sequence[Mapping[str, Any]]


def canonical_text(value: Prompt | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    messages = [{"role": str(m.get("role", "")), "content": m.get("content", "")} for m in value]
    return json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def retention_fields(
    profile: ComplianceProfile, prompt: Prompt | None, answer: str | None, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The audit payload field for this request's prompt and answer (pure)."""
    mode = profile.retention.mode
    if mode is RetentionMode.NONE:
        return {RETENTION_FIELD: {"mode": "none"}}
    prompt_text, answer_text = canonical_text(prompt), answer or ""
    kept: dict[str, Any] = {
        "mode": mode.value,
        "prompt_sha256": sha256_text(prompt_text),
        "answer_sha256": sha256_text(answer_text),
    }
    if mode is RetentionMode.FULL:
        at = now or dt.datetime.now(dt.UTC)
        expires = at.astimezone(dt.UTC) + dt.timedelta(days=profile.retention.days or 0)
        kept.update(
            expires_at=expires.isoformat(timespec="seconds"), prompt_text=prompt_text, answer_text=answer_text
        )
    return {RETENTION_FIELD: kept}


def hashed_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as the event hash covers it: without the redactable texts."""
    kept = payload.get(RETENTION_FIELD)
    if not isinstance(kept, dict) or not any(k in kept for k in REDACTABLE):
        return payload
    return {**payload, RETENTION_FIELD: {k: v for k, v in kept.items() if k not in REDACTABLE}}


def expires_at(payload: Mapping[str, Any]) -> dt.datetime | None:
    kept = payload.get(RETENTION_FIELD)
    if not isinstance(kept, dict) or not isinstance(kept.get("expires_at"), str):
        return None
    try:
        return dt.datetime.fromisoformat(kept["expires_at"])
    except ValueError:
        return None


def has_text(payload: Mapping[str, Any]) -> bool:
    kept = payload.get(RETENTION_FIELD)
    return isinstance(kept, dict) and any(k in kept for k in REDACTABLE)


def redact(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with the texts removed (their hashes stay); marks when it was redacted."""
    kept = payload.get(RETENTION_FIELD)
    if not isinstance(kept, dict):
        return payload
    return {**payload, RETENTION_FIELD: {k: v for k, v in kept.items() if k not in REDACTABLE}}


def content_problems(payload: Mapping[str, Any], now: dt.datetime) -> list[str]:
    """Why the retained texts of one event are not as written (empty when they are)."""
    kept = payload.get(RETENTION_FIELD)
    if not isinstance(kept, dict):
        return []
    problems = []
    for text_key, hash_key in _HASH_OF.items():
        text = kept.get(text_key)
        if text is not None and (not isinstance(text, str) or sha256_text(text) != kept.get(hash_key)):
            problems.append(f"{text_key} does not match {hash_key}")
    if kept.get("mode") == "full" and not any(k in kept for k in REDACTABLE):
        expiry = expires_at(payload)
        if expiry is None or expiry > now:
            problems.append("texts removed before their retention expired")
    return problems
