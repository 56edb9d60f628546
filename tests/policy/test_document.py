"""Policy documents: parsing, validation errors naming the field, compilation."""

from __future__ import annotations

import pytest

from policy import DEFAULT_POLICY_YAML, PolicyValidationError, compile_policy, load, parse_text
from tests.policy.conftest import TYPICAL_YAML


def errors_of(text: str) -> list[str]:
    with pytest.raises(PolicyValidationError) as err:
        load(text)
    return err.value.errors


def test_typical_and_default_documents_validate():
    doc = load(TYPICAL_YAML)
    assert set(doc.use_cases) == {"faq", "dispute", "chat"}
    assert str(doc.max_request_usd) == "0.50"
    load(DEFAULT_POLICY_YAML)
    load("")  # an empty document is the default rules


def test_json_is_accepted():
    doc = load('{"variants": {"allowed": ["flash"]}, "use_cases": {"faq": {"max_mode": "non-think"}}}')
    assert doc.allowed_variants == ("flash",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "use_cases: {faq: {max_mode: turbo}}",
            "use_cases.faq.max_mode: must be one of non-think, think-high, think-max (got 'turbo')",
        ),
        ("variants: {allowed: [flash, gpt]}", "variants.allowed: must be one of flash, pro (got 'gpt')"),
        ("variants: {allowed: []}", "variants.allowed: must be a non-empty list of flash, pro"),
        ("modes: {default: think-max, allowed: [non-think]}", "modes.default: must be one of modes.allowed"),
        ("modes: {default_thinking: non-think}", "modes.default_thinking: must be a thinking mode"),
        ("on_over_ask: ignore", "on_over_ask: must be one of downgrade, reject (got 'ignore')"),
        ("cost: {max_request_usd: lots}", "cost.max_request_usd: must be a decimal amount in USD"),
        ("cost: {max_request_usd: '-1'}", "cost.max_request_usd: must be a finite amount >= 0"),
        (
            "cost: {default_max_tokens: {think-max: 0}}",
            "cost.default_max_tokens.think-max: must be a positive integer",
        ),
        ("cascade: {threshold: 1.5}", "cascade.threshold: must be a number between 0 and 1"),
        ("cascade: {method: vibes}", "cascade.method: must be one of mean, min, tail"),
        ("cascade: {escalate_to: {variant: huge}}", "cascade.escalate_to.variant: must be one of flash, pro"),
        ("placement: {regions: eu}", "placement.regions: must be a list of names"),
        (
            "router: {tiers: [{below: 0.7, variant: pro, mode: non-think},"
            " {below: 0.5, variant: pro, mode: think-max}]}",
            "router.tiers[1].below: must be greater than the previous tier's (0.7)",
        ),
        (
            "router: {tiers: [{variant: flash, mode: non-think}, {variant: pro, mode: think-max}]}",
            "router.tiers[0].below: required on every tier but the last",
        ),
        ("router: {tiers: [{below: 0.5, variant: flash}]}", "router.tiers[0]: needs both variant and mode"),
        ("use_cases: {faq: {max_mode: non-think, colour: red}}", "use_cases.faq.colour: unknown field"),
        ("use_cases: {'Bad Name': {}}", "use_cases.Bad Name: use-case names are lower-case"),
        ("use_cases: [faq]", "use_cases: must be a mapping"),
        ("use_cases: {faq: {cascade: yes please}}", "use_cases.faq.cascade: must be true or false"),
        ("flavour: mint", "flavour: unknown field"),
        ("description: 2026-01-01", "description: must be a text"),
        (
            "variants: {allowed: [pro]}\nuse_cases: {faq: {max_variant: flash}}",
            "use_cases.faq.max_variant: leaves none of variants.allowed",
        ),
        (
            "modes: {allowed: [think-max], default: think-max}\nmax_mode: think-high",
            "max_mode: leaves none of modes.allowed",
        ),
        ("- a\n- b", "(document): must be a mapping"),
        ("variants: {allowed: [flash", "(document): not valid YAML or JSON"),
    ],
)
def test_validation_errors_name_the_field(text, expected):
    errs = errors_of(text)
    assert any(e.startswith(expected) for e in errs), errs


def test_all_errors_reported_at_once():
    errs = errors_of("on_over_ask: x\nuse_cases: {faq: {max_mode: y}}\ncascade: {threshold: 7}")
    assert len(errs) == 3
    with pytest.raises(PolicyValidationError) as err:
        load("on_over_ask: x\nuse_cases: {faq: {max_mode: y}}")
    assert "and 1 more" in err.value.message and err.value.code == "invalid_policy"
    assert err.value.rule == "on_over_ask"


def test_use_case_overrides_and_rule_names():
    p = compile_policy(load(TYPICAL_YAML), "3")
    faq = p.rules_for("faq")
    assert faq is not None
    assert faq.allowed_modes == ("non-think",) and faq.allowed_variants == ("flash",)
    assert faq.mode_block["think-high"] == "use_cases.faq.max_mode"
    dispute = p.rules_for("dispute")
    assert dispute is not None and dispute.allowed_modes[-1] == "think-max"
    top = p.rules_for(None)
    assert top is not None and top.mode_block["think-max"] == "max_mode"
    assert p.rules_for("nope") is top
    assert len(p.digest) == 64


def test_float_amounts_keep_their_decimal_text():
    assert str(load("cost: {max_request_usd: 0.1}").max_request_usd) == "0.1"


def test_parse_text_returns_mapping():
    assert parse_text("a: 1") == {"a": 1}
