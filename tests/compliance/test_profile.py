"""Profile documents: validation names every bad field; defaults."""

from __future__ import annotations

import datetime as dt

import pytest

from policy.compliance_rules import DEFAULT_PROFILE, ProfileValidationError, RetentionMode, load, spdx_id
from policy.compliance_rules.licenses import PatentGrant, patent_grant_of
from policy.errors import PolicyValidationError

FULL = """
allowed_licenses: [Apache-2.0, MIT]
patent_clearance: {use_cases: [medical]}
private_licenses:
  - {artifact: deepseek-v4-pro-weights, reference: "contract 7", use_cases: [medical], expires: 2027-12-31}
allowed_regions: [eu-central]
sovereign_hardware: true
allowed_vendors: [huawei]
allowed_software_stacks: [CANN]
retention: {mode: full, days: 30}
"""


def test_a_full_profile_parses():
    p = load(FULL)
    assert p.allowed_licenses == {"Apache-2.0", "MIT"} and p.patent_use_cases == {"medical"}
    assert p.private_licenses[0].expires == dt.date(2027, 12, 31)
    assert p.sovereign_hardware and p.retention.mode is RetentionMode.FULL and p.retention.days == 30
    assert load('{"retention": {"mode": "none"}}').retention.mode is RetentionMode.NONE
    assert load("allowed_licenses: [apache-2.0, mit]").allowed_licenses == {"Apache-2.0", "MIT"}


def test_the_default_keeps_hashes_and_restricts_nothing():
    p = load("")
    assert p.retention.mode is RetentionMode.HASH and p.allowed_regions is None and not p.sovereign_hardware
    assert DEFAULT_PROFILE.version == "default"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("retention: {mode: full}", "retention.days"),
        ("retention: {mode: hash, days: 3}", "retention.days"),
        ("retention: {mode: forever}", "retention.mode"),
        ("allowed_regions: eu-central", "allowed_regions"),
        ("sovereign_hardware: yes please", "sovereign_hardware"),
        ("allowed_software_stacks: [OpenCL]", "allowed_software_stacks"),
        ("patent_clearance: {use_cases: [Medical Use]}", "patent_clearance.use_cases"),
        ("private_licenses: [{artifact: x}]", "private_licenses[0].reference"),
        ("private_licenses: [{artifact: x, reference: y, expires: soon}]", "private_licenses[0].expires"),
        ("regions: [eu]", "regions"),
        ("[1, 2]", "(document)"),
    ],
)
def test_validation_names_the_bad_field(text, path):
    with pytest.raises(ProfileValidationError) as err:
        load(text)
    assert any(e.startswith(f"{path}:") for e in err.value.errors), err.value.errors
    assert err.value.code == "invalid_compliance_profile"
    assert isinstance(err.value, PolicyValidationError)  # the edge maps it to 400 with the policy errors


def test_all_problems_are_reported_at_once():
    with pytest.raises(ProfileValidationError) as err:
        load("retention: {mode: full}\nallowed_regions: 3\nbogus: 1")
    assert len(err.value.errors) == 3


def test_spdx_ids_and_patent_grants():
    assert spdx_id("apache-2.0") == "Apache-2.0" and spdx_id("MIT") == "MIT" and spdx_id("mit") == "MIT"
    assert spdx_id(None) == "NOASSERTION" and spdx_id("Llama 3 Community") == "LicenseRef-Llama-3-Community"
    assert patent_grant_of("Apache-2.0") is PatentGrant.EXPRESS
    assert patent_grant_of("MIT") is PatentGrant.NONE
    assert patent_grant_of("LicenseRef-x") is PatentGrant.UNKNOWN
