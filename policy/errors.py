"""Domain errors of the policy room.

Every error has a stable machine ``code``, the ``rule`` (a dotted path into the policy
document, or a compliance rule name) that caused it, and a human message. The gateway maps
them to HTTP once, at the edge: ``http_status`` is a hint for that mapping.
"""

from __future__ import annotations


class PolicyError(Exception):
    code = "policy_error"
    http_status = 400

    def __init__(self, message: str, *, rule: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.rule = rule
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class InvalidRequest(PolicyError):
    """The request names a model, thinking type or effort that does not exist."""

    code = "invalid_request"
    http_status = 400


class PolicyForbidden(PolicyError):
    """The policy forbids what the request asks for (and the rule says reject)."""

    code = "policy_forbidden"
    http_status = 403


class CostCeilingExceeded(PolicyError):
    """Even the cheapest allowed choice is above the per-request cost ceiling."""

    code = "cost_ceiling_exceeded"
    http_status = 402


class ComplianceViolation(PolicyError):
    """No choice satisfies the tenant's compliance profile."""

    code = "compliance_violation"
    http_status = 403


class PriceUnavailable(PolicyError):
    """The caller gave no price quote for a variant the decision needs to cost."""

    code = "price_unavailable"
    http_status = 500


class PolicyValidationError(PolicyError):
    """A policy document does not match the schema; ``errors`` lists every problem.

    Each entry reads ``path: problem``, for example
    ``use_cases.faq.max_mode: must be one of non-think, think-high, think-max``.
    """

    code = "invalid_policy"
    http_status = 422

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else "invalid policy"
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(f"invalid policy: {first}{more}", rule=first.split(":", 1)[0])


class PolicyNotFound(PolicyError):
    code = "policy_not_found"
    http_status = 404
