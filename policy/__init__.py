"""Tenant policies, the decision, the router and the escalation cascade."""

from policy.cascade import Escalation, confidence_from_logprobs, should_escalate
from policy.compiled import CompiledPolicy, compile_policy
from policy.compliance import ComplianceLike, StaticCompliance
from policy.decide import decide, requested_mode, worst_case_cost
from policy.defaults import DEFAULT_POLICY_YAML, default_policy
from policy.document import PolicyDocument, load, parse_text, validate
from policy.errors import (
    ComplianceViolation,
    CostCeilingExceeded,
    InvalidRequest,
    PolicyError,
    PolicyForbidden,
    PolicyNotFound,
    PolicyValidationError,
    PriceUnavailable,
)
from policy.types import (
    CascadePlan,
    Decision,
    DecisionRequest,
    Mode,
    OverAsk,
    Placement,
    PriceQuoteLike,
    Variant,
)

__all__ = [
    "CascadePlan",
    "CompiledPolicy",
    "ComplianceLike",
    "ComplianceViolation",
    "CostCeilingExceeded",
    "DEFAULT_POLICY_YAML",
    "Decision",
    "DecisionRequest",
    "Escalation",
    "InvalidRequest",
    "Mode",
    "OverAsk",
    "Placement",
    "PolicyDocument",
    "PolicyError",
    "PolicyForbidden",
    "PolicyNotFound",
    "PolicyValidationError",
    "PriceQuoteLike",
    "PriceUnavailable",
    "StaticCompliance",
    "Variant",
    "compile_policy",
    "confidence_from_logprobs",
    "decide",
    "default_policy",
    "load",
    "parse_text",
    "requested_mode",
    "should_escalate",
    "validate",
    "worst_case_cost",
]
