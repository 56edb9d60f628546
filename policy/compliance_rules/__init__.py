"""Compliance rules (pure): the tenant profile, license facts and the evaluator.

Named ``compliance_rules`` because ``policy/compliance.py`` (the ComplianceLike protocol
that decide() reads) already holds the name ``policy.compliance``.
"""

from policy.compliance_rules.adapter import ProfileCompliance
from policy.compliance_rules.errors import ComplianceError, ProfileValidationError
from policy.compliance_rules.evaluate import (
    RULE_LICENSES,
    RULE_ORDER,
    RULE_PATENT,
    RULE_REGIONS,
    RULE_SOVEREIGN,
    RULE_STACKS,
    RULE_VENDORS,
    ArtifactFacts,
    Breach,
    Candidate,
    Evaluation,
    Exclusion,
    PoolFacts,
    evaluate,
    refusal,
    require_eligible,
)
from policy.compliance_rules.licenses import PatentGrant, patent_grant_of, spdx_id
from policy.compliance_rules.profile import (
    DEFAULT_PROFILE,
    ComplianceProfile,
    PrivateLicense,
    Retention,
    RetentionMode,
    load,
    parse_text,
    validate,
)

__all__ = [
    "DEFAULT_PROFILE",
    "RULE_LICENSES",
    "RULE_ORDER",
    "RULE_PATENT",
    "RULE_REGIONS",
    "RULE_SOVEREIGN",
    "RULE_STACKS",
    "RULE_VENDORS",
    "ArtifactFacts",
    "Breach",
    "Candidate",
    "ComplianceError",
    "ComplianceProfile",
    "Evaluation",
    "Exclusion",
    "PatentGrant",
    "PoolFacts",
    "PrivateLicense",
    "ProfileCompliance",
    "ProfileValidationError",
    "Retention",
    "RetentionMode",
    "evaluate",
    "load",
    "parse_text",
    "patent_grant_of",
    "refusal",
    "require_eligible",
    "spdx_id",
    "validate",
]
