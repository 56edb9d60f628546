"""What decide() needs from the compliance room (issue 6), as a Protocol.

The compliance room builds an object satisfying ``ComplianceLike`` from the tenant's
profile and the artifact/pool registry (I/O happens there, before decide()); decide()
only reads it. ``StaticCompliance`` is a plain implementation for tests and simple setups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class ComplianceLike(Protocol):
    @property
    def profile_version(self) -> str | None: ...
    @property
    def regions(self) -> frozenset[str] | None: ...
    @property
    def hardware(self) -> frozenset[str] | None: ...
    @property
    def pools(self) -> frozenset[str] | None: ...
    @property
    def sovereign_only(self) -> bool: ...

    def blocked(self, variant: str, use_case: str | None) -> str | None:
        """The rule that forbids serving ``variant`` for ``use_case``, or None if allowed."""
        ...


@dataclass(frozen=True, slots=True)
class StaticCompliance:
    """Fixed constraints; ``blocked_variants`` maps (variant, use case or "*") to a rule name."""

    regions: frozenset[str] | None = None
    hardware: frozenset[str] | None = None
    pools: frozenset[str] | None = None
    sovereign_only: bool = False
    profile_version: str | None = None
    blocked_variants: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def blocked(self, variant: str, use_case: str | None) -> str | None:
        rule = self.blocked_variants.get((variant, use_case or "*"))
        return rule if rule is not None else self.blocked_variants.get((variant, "*"))
