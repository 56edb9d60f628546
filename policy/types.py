"""Value types of the decision: modes, variants, the request, the decision itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from billing.types import Variant


class Mode(StrEnum):
    NON_THINK = "non-think"
    THINK_HIGH = "think-high"
    THINK_MAX = "think-max"


class OverAsk(StrEnum):
    """What happens when a request asks for more than the policy allows."""

    DOWNGRADE = "downgrade"
    REJECT = "reject"


# Cheapest / weakest first. Index = rank.
MODE_ORDER: tuple[Mode, ...] = (Mode.NON_THINK, Mode.THINK_HIGH, Mode.THINK_MAX)
VARIANT_ORDER: tuple[Variant, ...] = (Variant("flash"), Variant("pro"))
MODE_RANK = {m: i for i, m in enumerate(MODE_ORDER)}
VARIANT_RANK = {v: i for i, v in enumerate(VARIANT_ORDER)}

AUTO_MODEL = "auto"
MODEL_OF_VARIANT: dict[str, str] = {"flash": "deepseek-v4-flash", "pro": "deepseek-v4-pro"}
VARIANT_OF_MODEL: dict[str, Variant] = {m: Variant(v) for v, m in MODEL_OF_VARIANT.items()}


class PriceQuoteLike(Protocol):
    """What decide() needs of a price: USD per 1M tokens (billing.PriceQuote fits)."""

    @property
    def version_id(self) -> str: ...
    @property
    def cache_hit(self) -> Decimal: ...
    @property
    def cache_miss(self) -> Decimal: ...
    @property
    def output(self) -> Decimal: ...


class RouterCalibrationLike(Protocol):
    """What decide() needs of a tenant's router calibration (policy.router.calibration fits)."""

    @property
    def version(self) -> int | None: ...
    def tenant_percentile(self, score: float) -> float: ...
    def escalation_probability(self, score: float) -> float: ...


@dataclass(frozen=True, slots=True)
class CalibrationUse:
    """How a tenant's router calibration shaped an ``auto`` decision (for the audit record)."""

    version: int | None
    tenant_percentile: float  # the score the tiers were read with
    escalation_probability: float
    break_even: float | None  # the probability above which direct beats the cascade; None: no cascade
    direct: bool  # the cascade was replaced by the escalation model

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "tenant_percentile": round(self.tenant_percentile, 6),
            "escalation_probability": round(self.escalation_probability, 6),
            "break_even": None if self.break_even is None else round(self.break_even, 6),
            "direct": self.direct,
        }


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """The parts of a chat request that the decision reads, as the client sent them.

    ``thinking`` is the value of ``thinking.type`` (``"enabled"``/``"disabled"``) or None;
    ``reasoning_effort`` is the raw string or None; ``prompt_tokens`` is the gateway's count.
    """

    model: str
    prompt_tokens: int
    thinking: str | None = None
    reasoning_effort: str | None = None
    use_case: str | None = None
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the request may run; None means unrestricted."""

    regions: frozenset[str] | None = None
    hardware: frozenset[str] | None = None
    pools: frozenset[str] | None = None
    sovereign_only: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "regions": sorted(self.regions) if self.regions is not None else None,
            "hardware": sorted(self.hardware) if self.hardware is not None else None,
            "pools": sorted(self.pools) if self.pools is not None else None,
            "sovereign_only": self.sovereign_only,
        }


@dataclass(frozen=True, slots=True)
class CascadePlan:
    """Answer first as decided; if confidence < threshold, answer again as escalated."""

    threshold: float
    method: str
    escalate_on_missing: bool
    variant: Variant
    mode: Mode
    model: str
    worst_case_cost_usd: Decimal
    price_version: str


@dataclass(frozen=True, slots=True)
class Decision:
    variant: Variant
    mode: Mode
    model: str  # the model id the response reports
    requested_model: str
    policy_version: str
    use_case: str | None
    max_output_tokens: int  # the gateway must not let the first attempt produce more
    cost_ceiling_usd: Decimal | None
    worst_case_cost_usd: Decimal  # first attempt, every prompt token a cache miss
    worst_case_total_usd: Decimal  # including a cascade escalation, for budget reservations
    price_version: str
    placement: Placement
    cascade: CascadePlan | None
    router_score: float | None  # the shipped router's score (calibrations are fitted on it)
    reasons: tuple[str, ...] = field(default=())
    router_calibration: CalibrationUse | None = None

    @property
    def thinking_enabled(self) -> bool:
        return self.mode is not Mode.NON_THINK

    @property
    def reasoning_effort(self) -> str | None:
        """The upstream ``reasoning_effort`` for this mode (None for non-think)."""
        return {Mode.THINK_HIGH: "high", Mode.THINK_MAX: "max"}.get(self.mode)

    def audit_dict(self) -> dict[str, Any]:
        """A JSON-ready record of the decision (money as strings)."""
        cascade = None
        if self.cascade is not None:
            c = self.cascade
            cascade = {
                "threshold": c.threshold,
                "method": c.method,
                "variant": str(c.variant),
                "mode": str(c.mode),
                "model": c.model,
                "worst_case_cost_usd": str(c.worst_case_cost_usd),
            }
        return {
            "variant": str(self.variant),
            "mode": str(self.mode),
            "model": self.model,
            "requested_model": self.requested_model,
            "policy_version": self.policy_version,
            "use_case": self.use_case,
            "max_output_tokens": self.max_output_tokens,
            "cost_ceiling_usd": None if self.cost_ceiling_usd is None else str(self.cost_ceiling_usd),
            "worst_case_cost_usd": str(self.worst_case_cost_usd),
            "worst_case_total_usd": str(self.worst_case_total_usd),
            "price_version": self.price_version,
            "placement": self.placement.as_dict(),
            "cascade": cascade,
            "router_score": self.router_score,
            "router_calibration": None
            if self.router_calibration is None
            else self.router_calibration.as_dict(),
            "reasons": list(self.reasons),
        }
