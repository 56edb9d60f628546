"""Errors of the compliance rules. Both are PolicyError subclasses, so the edge maps them
with the policy room's errors (``code`` and ``http_status`` say how)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from policy.errors import ComplianceViolation, PolicyError, PolicyValidationError

if TYPE_CHECKING:
    from policy.compliance_rules.evaluate import Exclusion


class ComplianceError(ComplianceViolation):
    """No deployment can serve the request under the tenant's compliance profile (403).

    ``rule`` names the rule that excluded the candidates (``compliance.patent_clearance``;
    when different candidates fell to different rules, the first in ``RULE_ORDER``), and
    ``rules`` lists every rule that excluded something. Never a silent fallback.
    """

    code = "compliance_violation"
    http_status = 403

    def __init__(
        self, message: str, *, rule: str, rules: Sequence[str] = (), excluded: Sequence[Exclusion] = ()
    ) -> None:
        super().__init__(message, rule=rule)
        self.rules = tuple(rules) or (rule,)
        self.excluded = tuple(excluded)


class ProfileValidationError(PolicyValidationError):
    """A compliance profile document does not match the schema; ``errors`` lists every
    problem as ``path: problem`` (for example ``retention.days: required when mode is full``).
    A PolicyValidationError, so the edge maps it like an invalid policy (400)."""

    code = "invalid_compliance_profile"
    http_status = 422

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else "invalid compliance profile"
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        PolicyError.__init__(self, f"invalid compliance profile: {first}{more}", rule=first.split(":", 1)[0])
