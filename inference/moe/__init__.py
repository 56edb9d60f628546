"""Mode-scaled experts from a dense FFN: each layer's neurons grouped into experts, a
low-rank router, and per-request active fractions (docs/efficiency.md)."""

from .build import build_expert_ffn
from .defaults import MODE_EXPERT_FRACTIONS, TARGET_EXPERT_FRACTIONS, expert_fraction_for_mode
from .experts import ExpertFFN, experts_for
from .fit import FitConfig, MoEPlan

__all__ = [
    "MODE_EXPERT_FRACTIONS",
    "TARGET_EXPERT_FRACTIONS",
    "ExpertFFN",
    "FitConfig",
    "MoEPlan",
    "build_expert_ffn",
    "expert_fraction_for_mode",
    "experts_for",
]
