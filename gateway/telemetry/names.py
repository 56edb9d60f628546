"""Attribute and instrument names: OpenTelemetry GenAI semantic conventions plus the gateway's own.

Keyword arguments of `Telemetry.span()` and `Telemetry.annotate_request()` are short names
looked up in `ALIASES`; a name not listed becomes `gateway.<name>`; a name with a dot is used
as it is (`**{"gen_ai.request.top_p": 0.9}`).
"""

from __future__ import annotations

# GenAI semantic conventions (gen_ai.*)
OPERATION = "gen_ai.operation.name"
SYSTEM = "gen_ai.system"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
MAX_TOKENS = "gen_ai.request.max_tokens"
TEMPERATURE = "gen_ai.request.temperature"
TOP_P = "gen_ai.request.top_p"
# The gateway's own
TENANT = "gateway.tenant_id"
VARIANT = "gateway.variant"
MODE = "gateway.mode"
STATUS = "gateway.status"
FINISH_REASON = "gateway.finish_reason"
CACHE_HIT_TOKENS = "gateway.cache_hit_tokens"
CACHE_MISS_TOKENS = "gateway.cache_miss_tokens"
REASONING_TOKENS = "gateway.reasoning_tokens"
COST_USD = "gateway.cost_usd"
TOKEN_CLASS = "gateway.token.class"  # noqa: S105 - an attribute name
REJECTION_KIND = "gateway.rejection.kind"
# HTTP semantic conventions
HTTP_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_STATUS = "http.response.status_code"
URL_PATH = "url.path"
ERROR_TYPE = "error.type"

ALIASES: dict[str, str] = {
    "operation": OPERATION,
    "system": SYSTEM,
    "model": REQUEST_MODEL,
    "request_model": REQUEST_MODEL,
    "response_model": RESPONSE_MODEL,
    "response_id": RESPONSE_ID,
    "request_id": RESPONSE_ID,
    "finish_reasons": FINISH_REASONS,
    "input_tokens": INPUT_TOKENS,
    "output_tokens": OUTPUT_TOKENS,
    "max_tokens": MAX_TOKENS,
    "temperature": TEMPERATURE,
    "top_p": TOP_P,
    "tenant_id": TENANT,
    "variant": VARIANT,
    "mode": MODE,
    "status": STATUS,
    "cache_hit_tokens": CACHE_HIT_TOKENS,
    "cache_miss_tokens": CACHE_MISS_TOKENS,
    "reasoning_tokens": REASONING_TOKENS,
    "cost_usd": COST_USD,
}


def attribute_name(key: str) -> str:
    if "." in key:
        return key
    return ALIASES.get(key, f"gateway.{key}")


# Rejection kinds accepted by Telemetry.record_rejection (anything else is counted as "other").
REJECTION_KINDS = frozenset({"budget", "rate_limit", "policy", "compliance", "auth"})

# Histogram bucket boundaries (seconds). Latency of a whole completion runs to minutes in
# Think Max; time per output token is tens of milliseconds.
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)
TTFT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40)
TPOT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1, 2.5)
HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
RATIO_BUCKETS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
