"""Default active expert fractions per reasoning mode (the embedded engine's experts).

Chosen from the measured curve in docs/efficiency.md (bench/efficiency.py, held-out GSM8K
and MMLU text): Non-think at 35% of the experts, Think High at 60%, Think Max at 92%.
None = the dense FFN.
"""

from __future__ import annotations

MODE_EXPERT_FRACTIONS: dict[str, float | None] = {
    "non-think": 0.35,
    "think-high": 0.60,
    "think-max": 0.92,
}


def expert_fraction_for_mode(mode: str) -> float | None:
    """The default fraction for a mode name (`non-think`, `think-high`, `think-max`; `_`
    and case are ignored); None for an unknown mode (dense)."""
    return MODE_EXPERT_FRACTIONS.get(mode.strip().lower().replace("_", "-"))
