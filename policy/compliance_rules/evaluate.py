"""The compliance evaluator: which candidate deployments a tenant's profile allows.

Pure and fast: the caller loads the profile and the registry facts first (gateway/compliance),
then ``evaluate`` looks only at values. Every excluded deployment carries every rule it
broke; ``require_eligible`` raises ``ComplianceError`` naming the rule when none is left.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from policy.compliance_rules.errors import ComplianceError
from policy.compliance_rules.licenses import PatentGrant
from policy.compliance_rules.profile import ComplianceProfile

# Rule names (stable: they appear in errors, audit events and reports).
RULE_LICENSES = "compliance.allowed_licenses"
RULE_PATENT = "compliance.patent_clearance"
RULE_REGIONS = "compliance.allowed_regions"
RULE_SOVEREIGN = "compliance.sovereign_hardware"
RULE_VENDORS = "compliance.allowed_vendors"
RULE_STACKS = "compliance.allowed_software_stacks"
RULE_ORDER = (RULE_LICENSES, RULE_PATENT, RULE_REGIONS, RULE_SOVEREIGN, RULE_VENDORS, RULE_STACKS)
# Rules that depend on the use case (the others hold for every request of the tenant).
USE_CASE_RULES = frozenset({RULE_PATENT})


@dataclass(frozen=True, slots=True)
class ArtifactFacts:
    name: str
    kind: str  # model_weights | kernel_stack | engine_build
    license: str  # SPDX id
    patent_grant: str  # PatentGrant value
    id: str = ""
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class PoolFacts:
    name: str
    region: str
    vendor: str
    device_kind: str  # cpu | gpu | npu
    software_stack: str  # CUDA | ROCm | CANN | CPU
    sovereign: bool = False


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment: a served model id/variant on a pool, built from artifacts."""

    name: str
    model_id: str
    variant: str
    pool: PoolFacts
    artifacts: tuple[ArtifactFacts, ...]

    def audit_dict(self) -> dict[str, Any]:
        """What a request event records about the deployment that served it."""
        p = self.pool
        return {
            "name": self.name,
            "model_id": self.model_id,
            "variant": self.variant,
            "artifacts": [
                {
                    "id": a.id or a.name,
                    "name": a.name,
                    "kind": a.kind,
                    "license": a.license,
                    "patent_grant": a.patent_grant,
                    "sha256": a.sha256,
                }
                for a in self.artifacts
            ],
            "pool": {
                "name": p.name,
                "region": p.region,
                "vendor": p.vendor,
                "device_kind": p.device_kind,
                "software_stack": p.software_stack,
                "sovereign": p.sovereign,
            },
        }


@dataclass(frozen=True, slots=True)
class Breach:
    rule: str
    message: str


@dataclass(frozen=True, slots=True)
class Exclusion:
    candidate: Candidate
    breaches: tuple[Breach, ...]

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(b.rule for b in self.breaches)

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.candidate.name,
            "breaches": [{"rule": b.rule, "message": b.message} for b in self.breaches],
        }


@dataclass(frozen=True, slots=True)
class Evaluation:
    use_case: str | None
    profile_version: str | None
    eligible: tuple[Candidate, ...]
    excluded: tuple[Exclusion, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "use_case": self.use_case,
            "profile_version": self.profile_version,
            "eligible": [c.name for c in self.eligible],
            "excluded": [e.as_dict() for e in self.excluded],
        }


def placement_breaches(profile: ComplianceProfile, pool: PoolFacts) -> list[Breach]:
    """Rules about where the work runs (independent of the use case)."""
    out: list[Breach] = []
    if profile.allowed_regions is not None and pool.region not in profile.allowed_regions:
        out.append(
            Breach(
                RULE_REGIONS,
                f"pool {pool.name} is in region {pool.region}, not in "
                f"{', '.join(sorted(profile.allowed_regions))}",
            )
        )
    if profile.sovereign_hardware and not pool.sovereign:
        out.append(Breach(RULE_SOVEREIGN, f"pool {pool.name} is not sovereign hardware"))
    if profile.allowed_vendors is not None and pool.vendor.lower() not in {
        v.lower() for v in profile.allowed_vendors
    }:
        out.append(
            Breach(
                RULE_VENDORS,
                f"pool {pool.name} runs on {pool.vendor} hardware, not on "
                f"{', '.join(sorted(profile.allowed_vendors))}",
            )
        )
    if (
        profile.allowed_software_stacks is not None
        and pool.software_stack not in profile.allowed_software_stacks
    ):
        out.append(
            Breach(
                RULE_STACKS,
                f"pool {pool.name} uses {pool.software_stack}, not "
                f"{', '.join(sorted(profile.allowed_software_stacks))}",
            )
        )
    return out


def artifact_breaches(
    profile: ComplianceProfile, artifacts: tuple[ArtifactFacts, ...], use_case: str | None, today: dt.date
) -> list[Breach]:
    out: list[Breach] = []
    if profile.allowed_licenses is not None:
        for a in artifacts:
            if a.license not in profile.allowed_licenses:
                out.append(
                    Breach(
                        RULE_LICENSES,
                        f"artifact {a.name} is licensed {a.license}, not "
                        f"{', '.join(sorted(profile.allowed_licenses))}",
                    )
                )
    if use_case is not None and use_case in profile.patent_use_cases:
        for a in artifacts:
            if a.kind not in profile.patent_artifact_kinds or a.patent_grant == PatentGrant.EXPRESS:
                continue
            if any(lic.covers(a.name, use_case, today) for lic in profile.private_licenses):
                continue
            out.append(
                Breach(
                    RULE_PATENT,
                    (
                        f"use case {use_case} needs an express patent grant or a recorded private license; "
                        f"artifact {a.name} is {a.license} (patent grant: {a.patent_grant}) and no private "
                        "license is recorded for it"
                    ),
                )
            )
    return out


def evaluate(
    profile: ComplianceProfile,
    candidates: tuple[Candidate, ...] | list[Candidate],
    use_case: str | None,
    *,
    today: dt.date | None = None,
) -> Evaluation:
    """Split ``candidates`` into eligible ones and excluded ones (with every rule broken).

    ``today`` decides whether private licenses have expired (default: the UTC date).
    """
    day = today or dt.datetime.now(dt.UTC).date()
    eligible: list[Candidate] = []
    excluded: list[Exclusion] = []
    for c in candidates:
        breaches = artifact_breaches(profile, c.artifacts, use_case, day) + placement_breaches(
            profile, c.pool
        )
        if breaches:
            excluded.append(Exclusion(c, tuple(breaches)))
        else:
            eligible.append(c)
    return Evaluation(use_case, profile.version, tuple(eligible), tuple(excluded))


def deciding_rule(excluded: tuple[Exclusion, ...]) -> tuple[str, tuple[str, ...]]:
    """The rule to name for a refusal, and all rules involved (in RULE_ORDER)."""
    counts = Counter(rule for e in excluded for rule in dict.fromkeys(e.rules))
    rules = tuple(r for r in RULE_ORDER if r in counts) + tuple(
        sorted(r for r in counts if r not in RULE_ORDER)
    )
    if not rules:
        return "compliance.no_deployment", ("compliance.no_deployment",)
    # A rule that excluded every candidate explains the refusal best; else the first in order.
    total = len(excluded)
    for rule in rules:
        if counts[rule] == total:
            return rule, rules
    return rules[0], rules


def refusal(evaluation: Evaluation, *, what: str = "this request") -> ComplianceError:
    if not evaluation.excluded:
        return ComplianceError(f"no deployment is registered for {what}", rule="compliance.no_deployment")
    rule, rules = deciding_rule(evaluation.excluded)
    details = "; ".join(
        f"{e.candidate.name}: {e.breaches[0].message} ({e.breaches[0].rule})" for e in evaluation.excluded
    )
    use = f" for use case {evaluation.use_case}" if evaluation.use_case else ""
    return ComplianceError(
        f"no deployment can serve {what}{use} under the tenant's compliance profile ({rule}): {details}",
        rule=rule,
        rules=rules,
        excluded=evaluation.excluded,
    )


def require_eligible(
    profile: ComplianceProfile,
    candidates: tuple[Candidate, ...] | list[Candidate],
    use_case: str | None,
    *,
    today: dt.date | None = None,
) -> Evaluation:
    """``evaluate``, raising ComplianceError (403, code compliance_violation) if nothing is eligible."""
    result = evaluate(profile, candidates, use_case, today=today)
    if not result.eligible:
        raise refusal(result)
    return result
