"""What one completion carries through the service: the prepared request, each attempt's
outcome, the finished answer (the HTTP layer formats these)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from billing.budgets.types import Reservation
from billing.catalog.model import PriceQuote
from billing.cost import Cost
from gateway.api.schemas import ChatCompletionRequest
from gateway.auth.service import Principal
from gateway.compliance.service import TenantCompliance
from inference.dispatch import Placement
from inference.types import Compute, GenerationRequest, Usage
from policy.cascade import Escalation
from policy.compliance_rules import Candidate
from policy.types import Decision


@dataclass
class PreparedCompletion:
    request_id: str
    principal: Principal
    request: ChatCompletionRequest
    decision: Decision
    quotes: dict[str, PriceQuote]
    generation: GenerationRequest
    started_at: dt.datetime
    compliance: TenantCompliance
    deployment: Candidate  # the first eligible one; the one that served, once placed
    messages: list[dict[str, Any]]
    use_case: str | None = None
    reservation: Reservation | None = None
    client_logprobs: bool = False  # the client asked for them (the cascade may need them anyway)
    rate_limit_headers: dict[str, str] = field(default_factory=dict)
    estimated_tokens: int = 0  # charged to token rate limits at admission, corrected at the end
    # Every eligible deployment of the decided model: their pools are where it may run.
    deployments: list[Candidate] = field(default_factory=list)

    @property
    def model_id(self) -> str:
        return self.decision.model

    @property
    def variant(self) -> str:
        return str(self.decision.variant)

    @property
    def mode(self) -> str:
        return str(self.decision.mode)

    @property
    def quote(self) -> PriceQuote:
        return self.quotes[self.variant]


@dataclass
class Outcome:
    """What happened to one attempt; filled in while it streams."""

    completion_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str | None = None
    usage: Usage | None = None
    status: str = "failed"
    cost: Cost | None = None
    answer_parts: list[str] = field(default_factory=list)  # for retention: full
    placement: Placement = field(default_factory=Placement)
    usage_source: str = "measured"
    compute: Compute | None = None  # what the embedded engine measured (None from elsewhere)


@dataclass
class Answer:
    """A finished non-streaming completion (after any cascade escalation)."""

    prepared: PreparedCompletion  # of the attempt whose answer is returned
    content: str
    reasoning: str | None
    logprobs: list[dict[str, Any]] | None
    finish_reason: str
    usage: Usage  # all attempts together: the tenant pays for all of them
    cost: Cost
    escalation: Escalation | None = None
    attempts: list[Outcome] = field(default_factory=list)
    compute: Compute | None = None  # all attempts together, when every one was measured


def add_compute(a: Compute | None, b: Compute | None) -> Compute | None:
    if a is None or b is None:
        return None
    # Work adds up; the attempts' caches are separate sequences, so the larger is the peak.
    return Compute(tokens=a.tokens + b.tokens, flops=a.flops + b.flops, kv_bytes=max(a.kv_bytes, b.kv_bytes))


def cache_salt(tenant_id: str) -> bytes:
    """Prefix-cache entries are keyed by tenant so that tenants never share them."""
    return hashlib.sha256(b"gateway-prefix-cache\x00" + tenant_id.encode()).digest()


def add_usage(a: Usage, b: Usage) -> Usage:
    return Usage(
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        prompt_cache_hit_tokens=a.prompt_cache_hit_tokens + b.prompt_cache_hit_tokens,
        prompt_cache_miss_tokens=a.prompt_cache_miss_tokens + b.prompt_cache_miss_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        reasoning_tokens=a.reasoning_tokens + b.reasoning_tokens,
    )
