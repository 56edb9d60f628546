"""The safety net for telemetry and logs: key material is redacted, content attributes dropped.

The code never puts prompt or answer text into logs, span attributes or metric labels; this
module makes a mistake harmless for the things that look like secrets (gateway API keys,
admin keys, bearer tokens) and refuses the span attributes that carry message content.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, cast

REDACTED = "[REDACTED]"

# `sk-gw-` / `sk-gwa-` keys (43 URL-safe base64 characters). A display prefix of 6 characters
# ("sk-gw-AbC123") is not a secret and is kept; anything longer is redacted.
_KEY = re.compile(r"sk-gwa?-[A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
_AUTH_HEADER = re.compile(r"(?i)(['\"]?(?:authorization|x-api-key|api-key)['\"]?\s*[:=]\s*['\"]?)[^\s\"',;]+")

# GenAI semantic conventions define these for message content: opt-in only, never set here.
CONTENT_ATTRIBUTES = frozenset(
    {
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    }
)

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]


def scrub(text: str) -> str:
    """Redact key material in free text (log messages, exception messages, tracebacks)."""
    if "sk-gw" in text:
        text = _KEY.sub(lambda m: m.group(0)[: m.group(0).index("-", 3) + 1] + REDACTED, text)
    lowered = text.lower()
    if "bearer" in lowered:
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    if "authorization" in lowered or "api-key" in lowered or "api_key" in lowered:
        text = _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def clean_value(value: Any) -> AttributeValue | None:
    """An OpenTelemetry attribute value with key material scrubbed; None drops it."""
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, Decimal):
        return float(value)  # observation only; the ledger keeps exact amounts
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list | tuple):
        items = [clean_value(v) for v in value if v is not None]
        if all(isinstance(v, str) for v in items):
            return tuple(str(v) for v in items)
        if all(isinstance(v, bool | int | float) and not isinstance(v, str) for v in items):
            return cast(AttributeValue, tuple(items))
        return tuple(str(v) for v in items)
    return scrub(str(value))  # enums, ids...: their text form


def clean_attributes(attributes: Mapping[str, Any]) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if key in CONTENT_ATTRIBUTES:
            continue
        cleaned = clean_value(value)
        if cleaned is not None:
            out[key] = cleaned
    return out
