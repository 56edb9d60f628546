"""The decision with a tenant's router calibration: tiers in the tenant's percentiles, and
the cascade replaced by the escalation model where the calibration expects escalation."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

import pytest

from policy import DecisionRequest, compile_policy, decide, load
from policy.router.calibration import Calibration, Observation, fit_calibration
from tests.policy.conftest import TYPICAL_YAML, Quote


def auto(max_tokens: int | None = 100) -> DecisionRequest:
    return DecisionRequest(model="auto", prompt_tokens=1000, max_tokens=max_tokens)


def fitted(observations: list[Observation], version: int = 1) -> Calibration:
    return Calibration.from_document(fit_calibration(observations), version=version)


@pytest.fixture(scope="module")
def escalates_above_03() -> Calibration:
    """A tenant whose every cascaded prompt scoring above 0.3 escalated, and none below."""
    rng = random.Random(7)
    scores = [rng.random() for _ in range(600)]
    return fitted([Observation(s, s > 0.3) for s in scores], version=3)


def test_fitted_threshold_of_a_tenant_that_escalates_everything_above_03(escalates_above_03):
    t = escalates_above_03.direct_threshold
    assert t is not None and 0.25 < t < 0.45
    assert escalates_above_03.escalation_probability(0.9) > 0.95
    assert escalates_above_03.escalation_probability(0.05) < 0.15  # the ridge keeps the curve soft


def test_direct_routing_above_the_fitted_threshold(typical, prices, escalates_above_03):
    cal = escalates_above_03
    t = cal.direct_threshold
    assert t is not None
    above, below = t + 0.02, t - 0.02
    # Without the calibration both scores are Flash non-think with a cascade to Pro.
    for score in (above, below):
        plain = decide(typical, auto(), prices, router_score=score)
        assert plain.variant == "flash" and plain.cascade is not None and plain.router_calibration is None
    d = decide(typical, auto(), prices, router_score=above, calibration=cal)
    assert (d.variant, d.model, d.cascade) == ("pro", "deepseek-v4-pro", None)
    assert d.worst_case_total_usd == d.worst_case_cost_usd  # one attempt reserved, not two
    assert d.router_score == above  # the shipped score is what later fits read
    use = d.router_calibration
    assert use is not None and use.direct and use.version == 3
    assert use.break_even == pytest.approx(2 / 3)  # Flash costs a third of Pro at these prices
    assert use.escalation_probability > 2 / 3
    assert any("router calibration v3" in r and "directly, no cascade" in r for r in d.reasons)
    kept = decide(typical, auto(), prices, router_score=below, calibration=cal)
    assert kept.variant == "flash" and kept.cascade is not None
    assert kept.router_calibration is not None and not kept.router_calibration.direct
    record = d.audit_dict()["router_calibration"]
    assert record["version"] == 3 and record["direct"] is True


def test_break_even_comes_from_the_quotes_in_force(typical, prices, escalates_above_03):
    """At launch prices Flash cost about a tenth of Pro: the cascade pays up to p ~ 0.9."""
    launch = {
        "flash": Quote("2026-04-24", Decimal("0.028"), Decimal("0.14"), Decimal("0.28")),
        "pro": Quote("2026-04-24", Decimal("0.145"), Decimal("1.74"), Decimal("3.48")),
    }
    cal = escalates_above_03
    score = next(s / 100 for s in range(100) if 0.75 < cal.escalation_probability(s / 100) < 0.85)
    assert decide(typical, auto(), prices, router_score=score, calibration=cal).cascade is None
    d = decide(typical, auto(), launch, router_score=score, calibration=cal)
    assert d.variant == "flash" and d.cascade is not None
    use = d.router_calibration
    assert use is not None and use.break_even is not None and use.break_even > 0.9


def test_tiers_read_the_tenant_percentile(typical, prices):
    """A tenant whose traffic all scores below 0.4: 0.35 is its 87th percentile -> the top tier."""
    quantiles = tuple(round(0.4 * k / 20, 6) for k in range(21))
    cal = Calibration(intercept=-3.0, slope=0.0, direct_threshold=None, score_quantiles=quantiles, version=1)
    plain = decide(typical, auto(), prices, router_score=0.35)
    assert (plain.variant, plain.mode) == ("flash", "non-think")
    d = decide(typical, auto(), prices, router_score=0.35, calibration=cal)
    assert (d.variant, d.mode) == ("pro", "think-high")
    assert d.router_calibration is not None
    assert d.router_calibration.tenant_percentile == pytest.approx(0.875)
    assert d.router_calibration.break_even is None  # Pro already: no cascade to weigh
    assert any("tenant percentile 0.875 (router calibration v1)" in r for r in d.reasons)
    low = decide(typical, auto(), prices, router_score=0.05, calibration=cal)
    assert (low.variant, low.mode) == ("flash", "non-think") and low.cascade is not None


def test_no_cascade_no_direct_routing(prices, escalates_above_03):
    no_cascade = compile_policy(load(TYPICAL_YAML.replace("enabled: true", "enabled: false")), "8")
    d = decide(no_cascade, auto(), prices, router_score=0.45, calibration=escalates_above_03)
    assert (d.variant, d.cascade) == ("flash", None)
    assert d.router_calibration is not None and not d.router_calibration.direct
    assert not any("directly" in r for r in d.reasons)


def test_calibration_ignored_without_a_score_or_for_named_models(typical, prices, escalates_above_03):
    cal = escalates_above_03
    none = decide(typical, auto(), prices, router_score=None, calibration=cal)
    assert none.router_calibration is None and none.variant == "flash"
    named = decide(
        typical, replace(auto(), model="deepseek-v4-flash"), prices, router_score=0.9, calibration=cal
    )
    assert named.router_calibration is None and named.variant == "flash"


def test_ceiling_that_forbids_the_cascade_forbids_nothing_new(typical, prices, escalates_above_03):
    """use case chat: $0.01 ceiling, both attempts do not fit: cascade off, Flash stays."""
    req = replace(auto(max_tokens=2000), use_case="chat")
    d = decide(typical, req, prices, router_score=0.9, calibration=escalates_above_03)
    assert d.cascade is None and d.worst_case_total_usd <= Decimal("0.01")
    assert d.router_calibration is not None and not d.router_calibration.direct


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other/1"}, "not a gateway-router-calibration/1"),
        ({"score_quantiles": [0.5, 0.2]}, "unsorted"),
        ({"slope": "nan"}, "non-finite"),
        ({"intercept": None}, "document"),
    ],
)
def test_unusable_documents_are_refused(change, message):
    doc = fit_calibration([Observation(k / 100, k > 50) for k in range(100)])
    with pytest.raises(ValueError, match=message):
        Calibration.from_document({**doc, **change})


def test_percentiles_come_from_all_scored_traffic_not_only_the_cascaded():
    """The default tiers cascade only below 0.8: quantiles of the cascaded requests alone
    would call a 0.79 prompt the tenant's hardest and send it to Pro at the next refit."""
    cascaded = [Observation(k / 125, k > 50) for k in range(100)]  # scores 0 .. 0.79
    traffic = [k / 199 for k in range(200)]  # every scored auto request, 0 .. 1
    only_cascaded = Calibration.from_document(fit_calibration(cascaded))
    whole = Calibration.from_document(fit_calibration(cascaded, traffic_scores=traffic))
    assert only_cascaded.tenant_percentile(0.79) > 0.99
    assert whole.tenant_percentile(0.79) == pytest.approx(0.79, abs=0.01)
    assert fit_calibration(cascaded, traffic_scores=traffic)["traffic_scores"] == 200
