"""Default active expert fractions per reasoning mode for the embedded engine's experts.

Chosen from the measured curve (docs/efficiency.md; bench/efficiency.py on held-out GSM8K
and MMLU text). Per-neuron gate-first routing (inference/moe/neurons.py) meets the quality
goals: top-1 agreement with the dense model 0.80 at 35% of the neurons (goal 0.75) and 0.98
at 92% (goal 0.97). It does not make a CPU decode faster: single-stream tokens/s 1.02x /
0.98x the dense path's at 35% / 92%, 0.76x / 0.79x at 32 streams (the gate is read whole,
70% of the up rows at 35%, and the scattered rows' reads cost more per byte). So every mode
defaults to dense (None): the routed modes would lose quality for no speed. The issue's
35/60/92% are `TARGET_EXPERT_FRACTIONS`, served by Flash with GATEWAY_FLASH_EXPERTS=modes
and usable per request (`expert_fraction`).
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
