"""Escalation cascade: answer confidence from token log-probabilities, and the escalate rule.

Confidence is a probability-like number in [0, 1] computed from the natural-log
probabilities of the answer's sampled tokens (pass the answer tokens, not the reasoning):

- ``mean``: exp(mean logprob), the geometric mean of the token probabilities;
- ``min``: exp(min logprob), the least likely token;
- ``tail``: exp(mean of the lowest 10% of logprobs, at least one token).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from policy.types import CascadePlan

METHODS = ("mean", "min", "tail")


def confidence_from_logprobs(logprobs: Sequence[float], method: str = "mean") -> float | None:
    """Confidence in [0, 1], or None when there are no usable log-probabilities."""
    values = [float(x) for x in logprobs if x is not None and not math.isnan(x)]
    if not values:
        return None
    values = [min(0.0, x) for x in values]  # a logprob above 0 is rounding noise
    if method == "mean":
        score = sum(values) / len(values)
    elif method == "min":
        score = min(values)
    elif method == "tail":
        k = max(1, math.ceil(len(values) * 0.1))
        score = sum(sorted(values)[:k]) / k
    else:
        raise ValueError(f"unknown confidence method {method!r}; use one of {', '.join(METHODS)}")
    return math.exp(score)


@dataclass(frozen=True, slots=True)
class Escalation:
    escalate: bool
    confidence: float | None
    reason: str


def should_escalate(plan: CascadePlan | None, logprobs: Sequence[float] | None) -> Escalation:
    """Decide, after the first answer, whether to answer again with the escalation model."""
    if plan is None:
        return Escalation(False, None, "no cascade in the decision")
    conf = confidence_from_logprobs(logprobs or (), plan.method)
    if conf is None:
        if plan.escalate_on_missing:
            return Escalation(True, None, "no logprobs: escalate (escalate_on_missing_logprobs)")
        return Escalation(False, None, "no logprobs: keep the first answer")
    if conf < plan.threshold:
        return Escalation(True, conf, f"confidence {conf:.3f} < {plan.threshold}: escalate to {plan.model}")
    return Escalation(False, conf, f"confidence {conf:.3f} >= {plan.threshold}: keep the first answer")
