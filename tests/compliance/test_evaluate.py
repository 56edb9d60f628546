"""The pure evaluator: eligibility, the rule named for each exclusion, the 403 error."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest

from policy import DecisionRequest, decide, default_policy
from policy.compliance_rules import (
    RULE_LICENSES,
    RULE_PATENT,
    RULE_REGIONS,
    RULE_SOVEREIGN,
    RULE_STACKS,
    RULE_VENDORS,
    ComplianceError,
    ProfileCompliance,
    evaluate,
    load,
    require_eligible,
)
from policy.errors import ComplianceViolation
from tests.compliance.facts import ALL, FLASH_EU, FLASH_US, PRO_CN, PRO_EU, SMOL_LOCAL

TODAY = dt.date(2026, 11, 28)
MEDICAL = "patent_clearance: {use_cases: [medical, financial]}"


def test_medical_on_mit_only_deployment_is_refused_with_the_rule_named():
    profile = load(MEDICAL)
    with pytest.raises(ComplianceError) as err:
        require_eligible(profile, [FLASH_EU], "medical", today=TODAY)
    e = err.value
    assert e.code == "compliance_violation" and e.http_status == 403
    assert e.rule == RULE_PATENT
    assert RULE_PATENT in str(e) and "deepseek-v4-flash-weights" in str(e) and "MIT" in str(e)
    assert isinstance(e, ComplianceViolation)  # maps with the policy room's errors
    assert [x.rules for x in e.excluded] == [(RULE_PATENT,)]


def test_other_use_cases_on_the_same_deployment_are_fine():
    profile = load(MEDICAL)
    assert require_eligible(profile, [FLASH_EU], "faq", today=TODAY).eligible == (FLASH_EU,)
    assert require_eligible(profile, [FLASH_EU], None, today=TODAY).eligible == (FLASH_EU,)


def test_apache_weights_carry_an_express_patent_grant():
    result = evaluate(load(MEDICAL), [SMOL_LOCAL, FLASH_EU], "medical", today=TODAY)
    assert result.eligible == (SMOL_LOCAL,)  # the BSD kernel stack is not model weights
    assert [e.candidate for e in result.excluded] == [FLASH_EU]


def test_a_recorded_private_license_clears_the_patent_rule_until_it_expires():
    profile = load(
        MEDICAL
        + """
private_licenses:
  - {artifact: deepseek-v4-flash-weights, reference: "DeepSeek patent licence 2026-117",
     use_cases: [medical], expires: 2027-06-30}
"""
    )
    assert evaluate(profile, [FLASH_EU, PRO_EU], "medical", today=TODAY).eligible == (FLASH_EU,)
    assert evaluate(profile, [FLASH_EU], "financial", today=TODAY).eligible == ()  # not covered
    assert evaluate(profile, [FLASH_EU], "medical", today=dt.date(2027, 7, 1)).eligible == ()  # expired


def test_patent_rule_can_cover_every_artifact_kind():
    profile = load("patent_clearance: {use_cases: [medical], artifact_kinds: [model_weights, kernel_stack]}")
    result = evaluate(profile, [SMOL_LOCAL], "medical", today=TODAY)
    assert result.eligible == () and "pytorch" in result.excluded[0].breaches[0].message


def test_residency_excludes_pools_of_other_regions():
    profile = load("allowed_regions: [eu-central]")
    result = evaluate(profile, ALL, None, today=TODAY)
    assert result.eligible == (FLASH_EU, PRO_EU)
    assert {e.candidate.name: e.rules for e in result.excluded} == {
        "flash-us": (RULE_REGIONS,),
        "pro-cn": (RULE_REGIONS,),
    }
    with pytest.raises(ComplianceError) as err:
        require_eligible(profile, [FLASH_US], "faq", today=TODAY)
    assert err.value.rule == RULE_REGIONS and "us-east" in str(err.value)


def test_sovereign_vendor_and_stack_rules():
    assert evaluate(load("sovereign_hardware: true"), ALL, None).eligible == (PRO_CN,)
    result = evaluate(load("allowed_vendors: [Huawei]"), ALL, None)
    assert result.eligible == (PRO_CN,) and result.excluded[0].rules == (RULE_VENDORS,)
    result = evaluate(load("allowed_software_stacks: [CUDA]"), ALL, None)
    assert result.eligible == (FLASH_EU, FLASH_US, PRO_EU) and result.excluded[0].rules == (RULE_STACKS,)
    assert evaluate(load("sovereign_hardware: true"), [FLASH_EU], None).excluded[0].rules == (RULE_SOVEREIGN,)


def test_license_allowlist_and_every_broken_rule_listed():
    profile = load("allowed_licenses: [Apache-2.0, BSD-3-Clause]\nallowed_regions: [eu-central]")
    result = evaluate(profile, [FLASH_US, SMOL_LOCAL], None)
    assert result.eligible == ()
    assert result.excluded[0].rules == (RULE_LICENSES, RULE_REGIONS)
    with pytest.raises(ComplianceError) as err:
        require_eligible(profile, [FLASH_US, SMOL_LOCAL], None)
    assert err.value.rule == RULE_REGIONS  # the rule that excluded every candidate
    assert set(err.value.rules) == {RULE_LICENSES, RULE_REGIONS}


def test_no_candidates_is_an_error_too():
    with pytest.raises(ComplianceError) as err:
        require_eligible(load(""), [], None)
    assert err.value.rule == "compliance.no_deployment"


def test_evaluation_is_fast():
    profile = load(MEDICAL + "\nallowed_regions: [eu-central, cn-north]")
    start = time.perf_counter()
    for _ in range(2000):
        evaluate(profile, ALL, "medical", today=TODAY)
    per_call = (time.perf_counter() - start) / 2000
    assert per_call < 200e-6, per_call


class Quote:
    def __init__(self, hit: str, miss: str, out: str) -> None:
        self.version_id, self.cache_hit, self.cache_miss, self.output = (
            "t",
            Decimal(hit),
            Decimal(miss),
            Decimal(out),
        )


PRICES = {"flash": Quote("0.0028", "0.14", "0.28"), "pro": Quote("0.0145", "1.74", "3.48")}


def test_decide_respects_the_profile():
    """policy.decide() with the profile as its compliance input: the Pro deployment is the
    only one licensed for medical use, so an explicit Flash request for medical is refused
    (naming the rule) and 'auto' lands on Pro; placement is narrowed to eligible pools."""
    profile = load(
        MEDICAL
        + """
private_licenses: [{artifact: deepseek-v4-pro-weights, reference: "contract 7"}]
allowed_regions: [eu-central]
"""
    )
    compliance = ProfileCompliance(profile, ALL, today=TODAY)
    assert compliance.blocked("flash", "medical") == RULE_PATENT
    assert compliance.blocked("pro", "medical") is None
    assert compliance.blocked("flash", "faq") is None
    assert compliance.regions == frozenset({"eu-central"}) and compliance.pools == frozenset({"eu-h200"})
    decision = decide(
        default_policy(),
        DecisionRequest("auto", 100, use_case="medical", max_tokens=100),
        PRICES,
        router_score=0.1,
        compliance=compliance,
    )
    assert decision.variant == "pro" and decision.placement.regions == frozenset({"eu-central"})
    with pytest.raises(ComplianceViolation) as err:
        decide(
            default_policy(),
            DecisionRequest("deepseek-v4-flash", 100, use_case="medical", max_tokens=100),
            PRICES,
            compliance=compliance,
        )
    assert err.value.rule == RULE_PATENT


def test_blocked_looks_at_the_served_model_of_the_variant():
    """A deployment registered under another model id does not make a variant servable."""
    from tests.compliance.facts import LOCAL, SMOL_W, dep

    other = dep("side", "flash", LOCAL, SMOL_W)
    other = type(other)(other.name, "my-custom-flash", "flash", other.pool, other.artifacts)
    compliance = ProfileCompliance(load(MEDICAL), (FLASH_EU, other), today=TODAY)
    assert compliance.blocked("flash", "medical") == RULE_PATENT
