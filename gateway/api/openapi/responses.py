"""Response bodies of the public and admin API, as msgspec Structs for the OpenAPI document.

The handlers build these bodies as dicts (gateway/api/formatting.py, the admin modules);
these types describe them, and tests/gateway/test_openapi_types.py converts real bodies
into them strictly (plus schemathesis checks every live response against the document),
so a field added to a handler and not here fails a test.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Struct = msgspec.Struct


class ErrorDetail(Struct, forbid_unknown_fields=True):
    message: str
    type: str
    param: str | None
    code: str | None


class Error(Struct, forbid_unknown_fields=True):
    """Every error, in the OpenAI shape."""

    error: ErrorDetail


# -- chat completions ------------------------------------------------------------------


class CostDetails(Struct, forbid_unknown_fields=True):
    cache_hit_usd: str
    cache_miss_usd: str
    output_usd: str


class PromptTokensDetails(Struct, forbid_unknown_fields=True):
    cached_tokens: int


class CompletionTokensDetails(Struct, forbid_unknown_fields=True):
    reasoning_tokens: int


class ComputeDetails(Struct, forbid_unknown_fields=True):
    """What the embedded engine computed for the answer (absent when a pool or upstream
    served it): tokens run through the model (cache misses, recomputation, decode), FLOPs
    (linear layers at the active expert share, plus attention), the KV cache bytes held."""

    tokens_run: int
    flops: int
    kv_cache_bytes: int


class CompletionUsage(Struct, forbid_unknown_fields=True):
    """DeepSeek usage: cache-hit and cache-miss prompt tokens (their sum is prompt_tokens),
    reasoning tokens inside completion_tokens, and the exact cost as decimal strings."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_cache_hit_tokens: int
    prompt_cache_miss_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails
    cost_usd: str
    cost_details: CostDetails
    price_version: str
    compute_details: ComputeDetails | None = None


class TopLogprob(Struct):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(Struct):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(Struct, forbid_unknown_fields=True):
    content: list[TokenLogprob] | None


class AssistantMessage(Struct, forbid_unknown_fields=True):
    role: Literal["assistant"]
    content: str
    # DeepSeek: the reasoning text, present when thinking is enabled.
    reasoning_content: str | msgspec.UnsetType = msgspec.UNSET


class Choice(Struct, forbid_unknown_fields=True):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: str


class ChatCompletion(Struct, forbid_unknown_fields=True):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[Choice]
    usage: CompletionUsage


class ChunkDelta(Struct, forbid_unknown_fields=True):
    role: Literal["assistant"] | msgspec.UnsetType = msgspec.UNSET
    content: str | msgspec.UnsetType = msgspec.UNSET
    reasoning_content: str | msgspec.UnsetType = msgspec.UNSET


class ChunkChoice(Struct, forbid_unknown_fields=True):
    index: int
    delta: ChunkDelta
    logprobs: ChoiceLogprobs | None
    finish_reason: str | None


class ChatCompletionChunk(Struct, forbid_unknown_fields=True):
    """One `data:` event of a stream (`text/event-stream`); the stream ends with
    `data: [DONE]`. The last chunk before it carries `usage` (and no choices) when
    `stream_options.include_usage` is true. An error after the headers were sent comes as
    one `data:` event in the Error shape."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | msgspec.UnsetType = msgspec.UNSET


# -- models ----------------------------------------------------------------------------


class ModelArtifact(Struct, forbid_unknown_fields=True):
    name: str
    sha256: str
    license: str
    architecture: str
    quantization: str
    parameters: int
    context_length: int


class Model(Struct, forbid_unknown_fields=True):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    variant: Literal["flash", "pro"]
    # The artifact that serves it (absent in processes that load no model).
    artifact: ModelArtifact | msgspec.UnsetType = msgspec.UNSET


class ModelList(Struct, forbid_unknown_fields=True):
    object: Literal["list"]
    data: list[Model]


# -- usage -----------------------------------------------------------------------------


class UsageLineItem(Struct, forbid_unknown_fields=True):
    token_class: Literal["cache_hit", "cache_miss", "output"]
    tokens: int
    cost_usd: str


class UsageDay(Struct, forbid_unknown_fields=True):
    date: str
    variant: str
    mode: str
    requests: int
    reasoning_tokens: int
    line_items: list[UsageLineItem]
    cost_usd: str


class UsageReport(Struct, forbid_unknown_fields=True):
    """Exact up to the last settled request (`format=csv`: the same rows as CSV)."""

    object: Literal["usage"]
    start: str
    end: str
    data: list[UsageDay]
    total_cost_usd: str


# -- admin: tenants and keys -----------------------------------------------------------


class TenantOut(Struct, forbid_unknown_fields=True):
    id: str
    name: str
    active: bool
    created_at: str


class TenantList(Struct, forbid_unknown_fields=True):
    object: Literal["list"]
    data: list[TenantOut]


class KeyOut(Struct, forbid_unknown_fields=True):
    id: str
    name: str
    prefix: str
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None


class KeyList(Struct, forbid_unknown_fields=True):
    object: Literal["list"]
    data: list[KeyOut]


class IssuedKey(Struct, forbid_unknown_fields=True):
    """The only response that carries the secret."""

    id: str
    tenant: str
    key: str
    expires_at: str | None


class RevokedKey(Struct, forbid_unknown_fields=True):
    id: str
    revoked_at: str | None


class TenantLimits(Struct, forbid_unknown_fields=True):
    tenant: str
    tenant_id: str
    rpm: int | None
    tpm: int | None


class KeyLimits(Struct, forbid_unknown_fields=True):
    key_id: str
    key_prefix: str
    tenant: str
    tenant_id: str
    revoked_at: str | None
    rpm: int | None
    tpm: int | None


# -- admin: budgets, billing -----------------------------------------------------------


class BudgetView(Struct, forbid_unknown_fields=True):
    scope: str
    scope_id: str
    limit_usd: str
    period: str
    mode: str
    alert_thresholds: list[int]
    limit_units: int
    current_period: str
    spent_usd: str
    spent_units: int
    reserved_usd: str
    reserved_units: int
    remaining_usd: str
    remaining_units: int
    key_prefix: str | None | msgspec.UnsetType = msgspec.UNSET


class BudgetSet(Struct, forbid_unknown_fields=True):
    """The budget as stored (the audited change)."""

    scope: str
    scope_id: str
    limit_usd: str
    period: str
    mode: str
    alert_thresholds: list[int]


class TenantBudget(Struct, forbid_unknown_fields=True):
    tenant: str
    tenant_id: str
    as_of: str
    budget: BudgetView | None
    key_budgets: list[BudgetView]


class KeyBudget(Struct, forbid_unknown_fields=True):
    key_id: str
    key_prefix: str
    tenant: str
    tenant_id: str
    revoked_at: str | None
    as_of: str
    budget: BudgetView | None


class TenantBudgetRemoved(Struct, forbid_unknown_fields=True):
    tenant: str
    tenant_id: str
    removed: bool


class KeyBudgetRemoved(Struct, forbid_unknown_fields=True):
    key_id: str
    removed: bool


class InvoiceLine(Struct):
    variant: str
    mode: str
    token_class: str
    tokens: int
    amount_units: int


class Invoice(Struct, forbid_unknown_fields=True):
    tenant_id: str
    period_start: str
    period_end: str
    status: str
    currency: Literal["USD"]
    lines: list[InvoiceLine]
    subtotal_exact_usd: str
    total_usd: str
    rounding: str


class ComparatorSavings(Struct, forbid_unknown_fields=True):
    comparator: str
    name: str
    cost_usd: str
    savings_usd: str
    savings_pct: str


class SavingsReport(Struct, forbid_unknown_fields=True):
    tenant_id: str
    start: str
    end: str
    input_tokens: int
    output_tokens: int
    actual_cost_usd: str
    comparators: list[ComparatorSavings]


class JobResult(Struct, forbid_unknown_fields=True):
    task: str
    result: Any


# -- admin: policy ---------------------------------------------------------------------


class StoredPolicy(Struct, forbid_unknown_fields=True):
    version: int
    active: bool
    digest: str
    comment: str | None
    created_by: str | None
    created_at: str
    document: dict[str, Any]


class PolicyVersions(Struct, forbid_unknown_fields=True):
    object: Literal["list"]
    data: list[StoredPolicy]


# -- admin: objects owned by other rooms, described by their top level ------------------


class ObjectList(Struct):
    object: Literal["list"]
    data: list[dict[str, Any]]


class ReplicaDeleted(Struct, forbid_unknown_fields=True):
    pool: str
    url: str
    deleted: bool


class DeploymentCreated(Struct, forbid_unknown_fields=True):
    name: str
    model_id: str
    pool: str


# The price catalog (billing/catalog/io.py), compliance profiles and reports, artifacts,
# pools and the audit verification are JSON objects whose fields those rooms document
# (docs/billing.md, docs/compliance.md, docs/audit.md).
JsonObject = dict[str, Any]
