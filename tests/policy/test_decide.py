"""Decision tables: explicit requests, auto, downgrade vs reject, ceilings, caps, cascade."""

from __future__ import annotations

from decimal import Decimal

import pytest

from policy import (
    ComplianceViolation,
    CostCeilingExceeded,
    DecisionRequest,
    InvalidRequest,
    Mode,
    PolicyForbidden,
    PriceUnavailable,
    StaticCompliance,
    compile_policy,
    decide,
    default_policy,
    load,
    requested_mode,
)


def req(model="deepseek-v4-flash", thinking=None, effort=None, use_case=None, prompt=1000, max_tokens=None):
    return DecisionRequest(
        model=model,
        prompt_tokens=prompt,
        thinking=thinking,
        reasoning_effort=effort,
        use_case=use_case,
        max_tokens=max_tokens,
    )


@pytest.mark.parametrize(
    ("thinking", "effort", "expected"),
    [
        (None, None, None),
        ("disabled", None, Mode.NON_THINK),
        ("disabled", "max", Mode.NON_THINK),
        ("enabled", None, Mode.THINK_HIGH),
        ("enabled", "low", Mode.THINK_HIGH),
        ("enabled", "medium", Mode.THINK_HIGH),
        ("enabled", "high", Mode.THINK_HIGH),
        ("enabled", "max", Mode.THINK_MAX),
        ("enabled", "xhigh", Mode.THINK_MAX),
        (None, "high", Mode.THINK_HIGH),
        (None, "xhigh", Mode.THINK_MAX),
    ],
)
def test_request_mode_mapping(thinking, effort, expected):
    assert requested_mode(thinking, effort, Mode.THINK_HIGH) == expected


@pytest.mark.parametrize(
    ("thinking", "effort", "rule"), [("on", None, "thinking.type"), ("enabled", "huge", "reasoning_effort")]
)
def test_bad_request_values(thinking, effort, rule, typical, prices):
    with pytest.raises(InvalidRequest) as err:
        decide(typical, req(thinking=thinking, effort=effort), prices)
    assert err.value.rule == rule and err.value.code == "invalid_request"


@pytest.mark.parametrize(
    ("prompt", "max_tokens", "rule"), [(-1, None, "prompt_tokens"), (10, 0, "max_tokens")]
)
def test_bad_token_counts(prompt, max_tokens, rule, typical, prices):
    with pytest.raises(InvalidRequest) as err:
        decide(typical, req(prompt=prompt, max_tokens=max_tokens), prices)
    assert err.value.rule == rule


def test_unknown_model(typical, prices):
    with pytest.raises(InvalidRequest, match="unknown model"):
        decide(typical, req(model="gpt-5"), prices)


# (model, thinking, effort, use_case) -> (variant, mode)
EXPLICIT = [
    (("deepseek-v4-flash", None, None, None), ("flash", "non-think")),
    (("deepseek-v4-pro", None, None, None), ("pro", "non-think")),
    (("deepseek-v4-pro", "enabled", "high", None), ("pro", "think-high")),
    # top-level max_mode think-high, downgrade
    (("deepseek-v4-pro", "enabled", "max", None), ("pro", "think-high")),
    # dispute may use think-max, and defaults to it
    (("deepseek-v4-pro", "enabled", "max", "dispute"), ("pro", "think-max")),
    (("deepseek-v4-pro", None, None, "dispute"), ("pro", "think-max")),
    (("deepseek-v4-flash", "disabled", None, "dispute"), ("flash", "non-think")),
    # faq: non-think, flash; a request that asks for nothing more is served
    (("deepseek-v4-flash", None, None, "faq"), ("flash", "non-think")),
    (("deepseek-v4-flash", "disabled", None, "faq"), ("flash", "non-think")),
    # unknown use case: top-level rules
    (("deepseek-v4-pro", "enabled", "max", "unknown"), ("pro", "think-high")),
]


@pytest.mark.parametrize(("args", "expected"), EXPLICIT)
def test_explicit_requests(args, expected, typical, prices):
    model, thinking, effort, use_case = args
    d = decide(typical, req(model, thinking, effort, use_case, prompt=100, max_tokens=1000), prices)
    assert (d.variant, d.mode) == expected
    assert d.model == f"deepseek-v4-{expected[0]}"
    assert d.policy_version == "7"
    assert d.cascade is None  # explicit models are not in cascade.models


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (("deepseek-v4-flash", "enabled", "high", "faq"), "use_cases.faq.max_mode"),
        (("deepseek-v4-pro", None, None, "faq"), "use_cases.faq.max_variant"),
    ],
)
def test_over_ask_rejected_when_rule_says_reject(args, rule, typical, prices):
    model, thinking, effort, use_case = args
    with pytest.raises(PolicyForbidden) as err:
        decide(typical, req(model, thinking, effort, use_case), prices)
    assert err.value.rule == rule and err.value.http_status == 403


def test_over_ask_downgraded_with_reason(typical, prices):
    d = decide(typical, req("deepseek-v4-pro", "enabled", "max", max_tokens=100), prices)
    assert d.mode == "think-high"
    assert any("not allowed by max_mode" in r for r in d.reasons)


def test_auto_in_faq_is_clamped_not_rejected(typical, prices):
    # the router picked pro/think-high, not the client: clamp silently (with a reason)
    d = decide(typical, req("auto", use_case="faq", max_tokens=100), prices, router_score=0.95)
    assert (d.variant, d.mode) == ("flash", "non-think")


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.0, ("flash", "non-think")),
        (0.499, ("flash", "non-think")),
        (0.5, ("flash", "think-high")),
        (0.79, ("flash", "think-high")),
        (0.8, ("pro", "think-high")),
        (1.0, ("pro", "think-high")),
        (None, ("flash", "non-think")),
    ],
)
def test_auto_tiers(score, expected, typical, prices):
    d = decide(typical, req("auto", max_tokens=500), prices, router_score=score)
    assert (d.variant, d.mode) == expected
    assert d.router_score == score


def test_auto_respects_explicit_mode(typical, prices):
    d = decide(typical, req("auto", "disabled", max_tokens=500), prices, router_score=0.9)
    assert (d.variant, d.mode) == ("pro", "non-think")


def test_auto_disabled(prices):
    p = compile_policy(load("router: {enabled: false}"), "1")
    with pytest.raises(PolicyForbidden) as err:
        decide(p, req("auto"), prices, router_score=0.1)
    assert err.value.rule == "router.enabled"


def test_unknown_use_case_rejected_when_configured(prices):
    p = compile_policy(load("unknown_use_case: reject\nuse_cases: {faq: {}}"), "1")
    assert decide(p, req(use_case="faq"), prices).variant == "flash"
    with pytest.raises(PolicyForbidden):
        decide(p, req(use_case="other"), prices)


def test_explicit_request_is_never_raised_to_a_stronger_choice(prices):
    p = compile_policy(
        load("variants: {allowed: [pro]}\nmodes: {allowed: [think-high], default: think-high}"), "1"
    )
    with pytest.raises(PolicyForbidden) as err:
        decide(p, req("deepseek-v4-flash"), prices)
    assert err.value.rule == "variants.allowed" and "nothing below it" in err.value.message
    with pytest.raises(PolicyForbidden) as err:
        decide(p, req("deepseek-v4-pro", "disabled"), prices)
    assert err.value.rule == "modes.allowed"
    # what the client did not name (defaults, the router) is fitted either way
    assert decide(p, req("deepseek-v4-pro"), prices).mode == "think-high"
    d = decide(p, req("auto", max_tokens=10), prices, router_score=0.1)
    assert (d.variant, d.mode) == ("pro", "think-high")


def test_nan_router_score_counts_as_absent(typical, prices):
    d = decide(typical, req("auto", max_tokens=10), prices, router_score=float("nan"))
    assert (d.variant, d.mode, d.router_score) == ("flash", "non-think", None)


def test_worst_case_cost_is_exact(typical, prices):
    d = decide(typical, req("deepseek-v4-pro", prompt=1234, max_tokens=567), prices)
    assert d.worst_case_cost_usd == (1234 * Decimal("1.32") + 567 * Decimal("3.96")) / 1_000_000
    assert d.max_output_tokens == 567
    assert d.price_version == "2026-08-16-peak"
    d = decide(typical, req("deepseek-v4-flash", prompt=10), prices)
    assert d.max_output_tokens == 8192  # non-think default cap


# Ceiling "chat" = $0.01. Pro non-think, 1000 prompt + max_tokens:
#   pro:   1000*1.32e-6 + t*3.96e-6 ; flash: 1000*0.44e-6 + t*1.32e-6
def test_cost_ceiling_boundary_exactly_at_ceiling_passes(typical, prices):
    # pro: 0.00132 + t * 0.00000396 <= 0.01  <=>  t <= 2191.9
    d = decide(typical, req("deepseek-v4-pro", "disabled", use_case="chat", max_tokens=2191), prices)
    assert d.variant == "pro" and d.worst_case_cost_usd <= Decimal("0.01")
    d = decide(typical, req("deepseek-v4-pro", "disabled", use_case="chat", max_tokens=2192), prices)
    assert d.variant == "flash" and any("cost ceiling" in r for r in d.reasons)
    # a worst case exactly equal to the ceiling is allowed: 2500 * 1.32e-6 + 10 * 3.96e-6
    p_exact = compile_policy(load('cost: {max_request_usd: "0.0033396"}'), "1")
    d = decide(p_exact, req("deepseek-v4-pro", "disabled", prompt=2500, max_tokens=10), prices)
    assert d.worst_case_cost_usd == Decimal("0.0033396") and d.variant == "pro"
    d = decide(p_exact, req("deepseek-v4-pro", "disabled", prompt=2500, max_tokens=11), prices)
    assert d.variant == "flash"


def test_cost_ceiling_downgrades_mode_then_variant(prices):
    p = compile_policy(load('cost: {max_request_usd: "0.05"}'), "1")
    # no max_tokens: caps 8192 / 32768 / 65536 per mode.
    # pro think-max: 65536*3.96e-6 = 0.2595 > 0.05; think-high 0.1297 > ; non-think 0.0324 + prompt ok
    d = decide(p, req("deepseek-v4-pro", "enabled", "max", prompt=1000), prices)
    assert (d.variant, d.mode) == ("pro", "non-think")
    assert any("cost ceiling" in r for r in d.reasons)
    # with an explicit max_tokens, lowering the mode does not help: the variant goes down
    d = decide(p, req("deepseek-v4-pro", "enabled", "max", prompt=1000, max_tokens=20000), prices)
    assert (d.variant, d.mode) == ("flash", "think-max")
    assert d.worst_case_cost_usd <= Decimal("0.05")


def test_cost_ceiling_rejects_when_nothing_fits(typical, prices):
    with pytest.raises(CostCeilingExceeded) as err:
        decide(typical, req("deepseek-v4-flash", use_case="chat", prompt=30000, max_tokens=10), prices)
    assert err.value.rule == "use_cases.chat.max_request_usd"
    assert "0.01" in err.value.message and err.value.code == "cost_ceiling_exceeded"


def test_cost_ceiling_reject_rule(prices):
    p = compile_policy(load('cost: {max_request_usd: "0.05", on_exceeded: reject}'), "1")
    with pytest.raises(CostCeilingExceeded):
        decide(p, req("deepseek-v4-pro", "enabled", "max"), prices)


def test_cascade_plan_for_auto_flash(typical, prices):
    d = decide(typical, req("auto", prompt=500, max_tokens=1000), prices, router_score=0.6)
    assert d.variant == "flash" and d.cascade is not None
    assert d.cascade.variant == "pro" and d.cascade.mode == "think-high" and d.cascade.threshold == 0.6
    assert d.worst_case_total_usd == d.worst_case_cost_usd + d.cascade.worst_case_cost_usd


def test_cascade_off_when_already_pro_or_disabled_or_too_costly(typical, prices):
    assert decide(typical, req("auto", max_tokens=100), prices, router_score=0.9).cascade is None
    assert (
        decide(typical, req("auto", use_case="faq", max_tokens=100), prices, router_score=0.1).cascade is None
    )
    d = decide(typical, req("auto", use_case="chat", max_tokens=2000), prices, router_score=0.1)
    assert d.cascade is None and any("cascade off" in r for r in d.reasons)


def test_cascade_off_when_pro_not_allowed(prices):
    p = compile_policy(load("variants: {allowed: [flash]}\ncascade: {enabled: true}"), "1")
    d = decide(p, req("auto"), prices, router_score=0.1)
    assert d.cascade is None and any("pro not allowed" in r for r in d.reasons)


def test_placement_intersects_with_compliance(typical, prices):
    c = StaticCompliance(regions=frozenset({"eu-west", "us-east"}), sovereign_only=True)
    d = decide(typical, req(), prices, compliance=c)
    assert d.placement.regions == {"eu-west"} and d.placement.hardware == {"gpu", "npu"}
    assert d.placement.sovereign_only
    with pytest.raises(ComplianceViolation) as err:
        decide(typical, req(), prices, compliance=StaticCompliance(regions=frozenset({"us-east"})))
    assert err.value.rule == "placement.regions" and "us-east" in err.value.message


def test_compliance_blocks_variant(typical, prices):
    c = StaticCompliance(blocked_variants={("pro", "dispute"): "patent_grant_required"})
    with pytest.raises(ComplianceViolation) as err:
        decide(typical, req("deepseek-v4-pro", use_case="dispute"), prices, compliance=c)
    assert err.value.rule == "patent_grant_required" and err.value.http_status == 403
    d = decide(
        typical, req("auto", use_case="dispute", max_tokens=10), prices, router_score=0.99, compliance=c
    )
    assert d.variant == "flash" and d.cascade is None


def test_missing_price(typical, prices):
    del prices["pro"]
    with pytest.raises(PriceUnavailable):
        decide(typical, req("deepseek-v4-pro"), prices)


def test_default_policy_serves_everything(prices):
    p = default_policy()
    d = decide(p, req("deepseek-v4-pro", "enabled", "max"), prices)
    assert (d.variant, d.mode, d.policy_version) == ("pro", "think-max", "default")
    assert d.reasoning_effort == "max" and d.thinking_enabled


def test_audit_dict_is_json_ready(typical, prices):
    import json

    d = decide(typical, req("auto", max_tokens=100), prices, router_score=0.6)
    data = json.loads(json.dumps(d.audit_dict()))
    assert data["variant"] == "flash" and data["cascade"]["model"] == "deepseek-v4-pro"
