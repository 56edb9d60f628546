"""Mode-scaled experts from a dense FFN, per-request active fractions (docs/efficiency.md):
per-neuron gate-first routing (the engine's default) or neurons grouped into experts with a
low-rank router."""

from .build import EXPERT_KINDS, build_expert_ffn, build_routed_ffn
from .defaults import MODE_EXPERT_FRACTIONS, TARGET_EXPERT_FRACTIONS, expert_fraction_for_mode
from .experts import ExpertFFN, experts_for
from .fit import FitConfig, MoEPlan
from .neurons import NeuronFFN

RoutedFFN = NeuronFFN | ExpertFFN

__all__ = [
    "EXPERT_KINDS",
    "MODE_EXPERT_FRACTIONS",
    "TARGET_EXPERT_FRACTIONS",
    "ExpertFFN",
    "FitConfig",
    "MoEPlan",
    "NeuronFFN",
    "RoutedFFN",
    "build_expert_ffn",
    "build_routed_ffn",
    "expert_fraction_for_mode",
    "experts_for",
]
