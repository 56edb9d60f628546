"""Default active expert fractions per reasoning mode for the embedded engine's experts.

Chosen from the measured curve (docs/efficiency.md; bench/efficiency.py on held-out GSM8K
and MMLU text): no fraction below 1.0 meets the quality goals with savings. Top-1 agreement
with the dense model was 0.23 at 35% and 0.81 at 92%; Think Max needs >= 0.97 (only the dense
FFN), and Non-think >= 0.75 is met only at 92%, where the router and the whole-read down
projection cost more FLOPs than the dense FFN (1.03x). So every mode defaults to dense
(None). `TARGET_EXPERT_FRACTIONS` are the issue's targets, for operators who accept the
measured loss (e.g. for load tests of the mechanism).
"""

from __future__ import annotations

MODE_EXPERT_FRACTIONS: dict[str, float | None] = {
    "non-think": None,
    "think-high": None,
    "think-max": None,
}

TARGET_EXPERT_FRACTIONS: dict[str, float] = {
    "non-think": 0.35,
    "think-high": 0.60,
    "think-max": 0.92,
}


def expert_fraction_for_mode(mode: str, table: dict[str, float | None] | None = None) -> float | None:
    """The fraction for a mode name (`non-think`, `think-high`, `think-max`; `_` and case
    ignored) from `table` (default MODE_EXPERT_FRACTIONS); None (dense) for an unknown mode."""
    t = MODE_EXPERT_FRACTIONS if table is None else table
    return t.get(mode.strip().lower().replace("_", "-"))
