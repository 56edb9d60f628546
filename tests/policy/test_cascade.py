"""Confidence from logprobs and the escalation trigger."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from policy import CascadePlan, confidence_from_logprobs, should_escalate


def plan(threshold=0.6, method="mean", on_missing=True) -> CascadePlan:
    return CascadePlan(
        threshold=threshold,
        method=method,
        escalate_on_missing=on_missing,
        variant="pro",
        mode="think-high",
        model="deepseek-v4-pro",
        worst_case_cost_usd=Decimal("0.1"),
        price_version="p",
    )


def test_confidence_methods():
    lp = [math.log(0.9), math.log(0.5), math.log(0.8)]
    assert confidence_from_logprobs(lp) == pytest.approx((0.9 * 0.5 * 0.8) ** (1 / 3))
    assert confidence_from_logprobs(lp, "min") == pytest.approx(0.5)
    assert confidence_from_logprobs(lp, "tail") == pytest.approx(0.5)
    assert confidence_from_logprobs([]) is None
    assert confidence_from_logprobs([0.0001]) == 1.0  # positive rounding noise clamps to 0
    with pytest.raises(ValueError):
        confidence_from_logprobs(lp, "median")


@pytest.mark.parametrize(
    ("probs", "escalate"),
    [([0.99, 0.95, 0.97], False), ([0.61, 0.61], False), ([0.59, 0.59], True), ([0.9, 0.1, 0.9], True)],
)
def test_trigger_at_threshold(probs, escalate):
    verdict = should_escalate(plan(), [math.log(p) for p in probs])
    assert verdict.escalate is escalate
    assert verdict.confidence is not None


def test_missing_logprobs_and_no_plan():
    assert should_escalate(plan(), None).escalate is True
    assert should_escalate(plan(on_missing=False), []).escalate is False
    assert should_escalate(None, [0.0]).escalate is False
