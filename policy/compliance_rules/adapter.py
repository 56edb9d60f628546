"""The profile and the candidate deployments as ``policy.compliance.ComplianceLike``,
so that ``policy.decide(..., compliance=...)`` respects the tenant's compliance profile.

Placement rules (regions, sovereign hardware, vendors, software stacks) do not depend on
the use case: they become the ``regions``/``hardware``/``pools`` sets that decide()
intersects with the policy's placement. The patent rule depends on the use case: it is
answered by ``blocked(variant, use_case)``, which names the rule when no deployment of
that variant is eligible. Hardware labels of a pool are its device kind, its vendor and
its software stack, lower-cased (``cpu``, ``intel``, ``cpu``; ``npu``, ``huawei``, ``cann``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from policy.compliance_rules.evaluate import Candidate, deciding_rule, evaluate, placement_breaches
from policy.compliance_rules.profile import ComplianceProfile
from policy.types import MODEL_OF_VARIANT


def hardware_labels(c: Candidate) -> frozenset[str]:
    p = c.pool
    return frozenset({p.device_kind.lower(), p.vendor.lower(), p.software_stack.lower()})


@dataclass(slots=True)
class ProfileCompliance:
    """Implements ComplianceLike for one tenant's profile over the registered deployments."""

    profile: ComplianceProfile
    candidates: tuple[Candidate, ...]
    today: dt.date | None = None
    _blocked: dict[tuple[str, str | None], str | None] = field(default_factory=dict)
    _placed: tuple[Candidate, ...] | None = None

    def _placeable(self) -> tuple[Candidate, ...]:
        if self._placed is None:
            self._placed = tuple(c for c in self.candidates if not placement_breaches(self.profile, c.pool))
        return self._placed

    def _restricts_placement(self) -> bool:
        p = self.profile
        return bool(
            p.allowed_regions is not None
            or p.sovereign_hardware
            or p.allowed_vendors is not None
            or p.allowed_software_stacks is not None
        )

    @property
    def profile_version(self) -> str | None:
        return self.profile.version

    @property
    def regions(self) -> frozenset[str] | None:
        if not self._restricts_placement():
            return None
        return frozenset(c.pool.region for c in self._placeable())

    @property
    def hardware(self) -> frozenset[str] | None:
        if not self._restricts_placement():
            return None
        return frozenset().union(*(hardware_labels(c) for c in self._placeable()))

    @property
    def pools(self) -> frozenset[str] | None:
        if not self._restricts_placement():
            return None
        return frozenset(c.pool.name for c in self._placeable())

    @property
    def sovereign_only(self) -> bool:
        return self.profile.sovereign_hardware

    def blocked(self, variant: str, use_case: str | None) -> str | None:
        key = (variant, use_case)
        if key not in self._blocked:
            # The served model id of the variant (deepseek-v4-flash / -pro): what decide() returns.
            model = MODEL_OF_VARIANT.get(variant)
            mine = tuple(c for c in self.candidates if c.variant == variant and model in (None, c.model_id))
            if not mine:
                self._blocked[key] = "compliance.no_deployment"
            else:
                result = evaluate(self.profile, mine, use_case, today=self.today)
                self._blocked[key] = None if result.eligible else deciding_rule(result.excluded)[0]
        return self._blocked[key]
