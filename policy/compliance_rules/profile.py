"""The tenant compliance profile: parse YAML/JSON, validate, name the bad field.

Schema (every field optional; docs/compliance.md has examples)::

    allowed_licenses: [Apache-2.0, MIT]     # SPDX ids every artifact must carry; omitted: any
    patent_clearance:                       # use cases that need an express patent grant
      use_cases: [medical, financial]       #   or a recorded private license
      artifact_kinds: [model_weights]       # which artifacts the rule looks at (default)
    private_licenses:                       # licenses the tenant holds outside the SPDX one
      - artifact: deepseek-v4-pro-weights   # artifact name in the registry
        reference: "Patent licence 2026-117"
        use_cases: [medical]                # omitted: every use case
        expires: 2027-12-31                 # omitted: no end
    allowed_regions: [eu-central]           # pool regions; omitted: any
    sovereign_hardware: false               # true: only pools flagged sovereign
    allowed_vendors: [huawei]               # pool hardware vendors; omitted: any
    allowed_software_stacks: [CANN]         # CUDA, ROCm, CANN, CPU; omitted: any
    retention: {mode: hash}                 # none | hash | full (full needs days: N)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from policy.compliance_rules.errors import ProfileValidationError
from policy.compliance_rules.licenses import spdx_id

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
ARTIFACT_KINDS = ("model_weights", "kernel_stack", "engine_build")
SOFTWARE_STACKS = ("CUDA", "ROCm", "CANN", "CPU")
_TOP = {
    "allowed_licenses",
    "patent_clearance",
    "private_licenses",
    "allowed_regions",
    "sovereign_hardware",
    "allowed_vendors",
    "allowed_software_stacks",
    "retention",
    "schema",
}


class RetentionMode(StrEnum):
    NONE = "none"  # nothing of the prompt or answer is kept
    HASH = "hash"  # sha256 of each, so a tenant can prove what was sent
    FULL = "full"  # the text, until an expiry `days` after the request


@dataclass(frozen=True, slots=True)
class Retention:
    mode: RetentionMode = RetentionMode.HASH
    days: int | None = None


@dataclass(frozen=True, slots=True)
class PrivateLicense:
    artifact: str
    reference: str
    use_cases: frozenset[str] | None = None  # None: every use case
    expires: dt.date | None = None

    def covers(self, artifact: str, use_case: str | None, today: dt.date) -> bool:
        if artifact != self.artifact:
            return False
        if self.expires is not None and today > self.expires:
            return False
        return self.use_cases is None or (use_case is not None and use_case in self.use_cases)


@dataclass(frozen=True, slots=True)
class ComplianceProfile:
    allowed_licenses: frozenset[str] | None = None
    patent_use_cases: frozenset[str] = frozenset()
    patent_artifact_kinds: frozenset[str] = frozenset({"model_weights"})
    private_licenses: tuple[PrivateLicense, ...] = ()
    allowed_regions: frozenset[str] | None = None
    sovereign_hardware: bool = False
    allowed_vendors: frozenset[str] | None = None
    allowed_software_stacks: frozenset[str] | None = None
    retention: Retention = field(default_factory=Retention)
    version: str | None = None  # set by the store ("3" or a digest); recorded in decisions
    raw: Mapping[str, Any] = field(default_factory=dict)


# The profile of a tenant that has none: no restriction, prompts kept as hashes only.
DEFAULT_PROFILE = ComplianceProfile(version="default")


def parse_text(text: str) -> dict[str, Any]:
    """Parse a YAML or JSON profile text into a mapping."""
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ProfileValidationError([f"(document): not valid YAML or JSON: {exc}"]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileValidationError(["(document): must be a mapping of fields"])
    return data


def digest(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def _spdx_all(values: frozenset[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(spdx_id(v) for v in values)


def validate(document: Mapping[str, Any], *, version: str | None = None) -> ComplianceProfile:
    """The profile for ``document``, or ProfileValidationError listing every problem."""
    errors: list[str] = []
    for key in document:
        if key not in _TOP:
            errors.append(f"{key}: unknown field (allowed: {', '.join(sorted(_TOP))})")
    if document.get("schema", 1) != 1:
        errors.append("schema: must be 1")

    def strings(
        path: str, value: Any, *, names: bool = False, choices: tuple[str, ...] = ()
    ) -> frozenset[str] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            errors.append(f"{path}: must be a non-empty list of strings")
            return None
        for v in value:
            if names and not _NAME.match(v):
                errors.append(f"{path}: {v!r} is not a name (lower-case letters, digits, _ . -)")
            if choices and v not in choices:
                errors.append(f"{path}: {v!r} must be one of {', '.join(choices)}")
        return frozenset(value)

    def boolean(path: str, value: Any) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            errors.append(f"{path}: must be true or false (got {value!r})")
            return False
        return value

    def mapping(path: str, value: Any, allowed: set[str]) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            errors.append(f"{path}: must be a mapping")
            return {}
        for key in value:
            if key not in allowed:
                errors.append(f"{path}.{key}: unknown field (allowed: {', '.join(sorted(allowed))})")
        return value

    patent = mapping("patent_clearance", document.get("patent_clearance"), {"use_cases", "artifact_kinds"})
    kinds = strings("patent_clearance.artifact_kinds", patent.get("artifact_kinds"), choices=ARTIFACT_KINDS)

    licenses: list[PrivateLicense] = []
    raw_licenses = document.get("private_licenses") or []
    if not isinstance(raw_licenses, list):
        errors.append("private_licenses: must be a list")
        raw_licenses = []
    for i, item in enumerate(raw_licenses):
        path = f"private_licenses[{i}]"
        entry = mapping(path, item, {"artifact", "reference", "use_cases", "expires"})
        artifact, reference = entry.get("artifact"), entry.get("reference")
        if not isinstance(artifact, str) or not artifact:
            errors.append(f"{path}.artifact: required, the artifact's name in the registry")
        if not isinstance(reference, str) or not reference:
            errors.append(f"{path}.reference: required, where the license is recorded")
        expires = entry.get("expires")
        if isinstance(expires, str):
            try:
                expires = dt.date.fromisoformat(expires)
            except ValueError:
                errors.append(f"{path}.expires: must be a date YYYY-MM-DD (got {expires!r})")
                expires = None
        elif expires is not None and not isinstance(expires, dt.date):
            errors.append(f"{path}.expires: must be a date YYYY-MM-DD (got {expires!r})")
            expires = None
        if isinstance(expires, dt.datetime):
            expires = expires.date()
        licenses.append(
            PrivateLicense(
                artifact=str(artifact or ""),
                reference=str(reference or ""),
                use_cases=strings(f"{path}.use_cases", entry.get("use_cases"), names=True),
                expires=expires,
            )
        )

    ret = mapping("retention", document.get("retention"), {"mode", "days"})
    mode = RetentionMode.HASH
    if "mode" in ret:
        try:
            mode = RetentionMode(ret["mode"])
        except ValueError:
            errors.append(f"retention.mode: must be one of none, hash, full (got {ret['mode']!r})")
    days = ret.get("days")
    if mode is RetentionMode.FULL:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
            errors.append("retention.days: required when mode is full, an integer from 1 to 3650")
            days = None
    elif days is not None:
        errors.append("retention.days: only allowed when mode is full")
        days = None

    profile = ComplianceProfile(
        allowed_licenses=_spdx_all(strings("allowed_licenses", document.get("allowed_licenses"))),
        patent_use_cases=strings("patent_clearance.use_cases", patent.get("use_cases"), names=True)
        or frozenset(),
        patent_artifact_kinds=kinds or frozenset({"model_weights"}),
        private_licenses=tuple(licenses),
        allowed_regions=strings("allowed_regions", document.get("allowed_regions")),
        sovereign_hardware=boolean("sovereign_hardware", document.get("sovereign_hardware")),
        allowed_vendors=strings("allowed_vendors", document.get("allowed_vendors")),
        allowed_software_stacks=strings(
            "allowed_software_stacks", document.get("allowed_software_stacks"), choices=SOFTWARE_STACKS
        ),
        retention=Retention(mode=mode, days=days),
        version=version,
        raw=dict(document),
    )
    if errors:
        raise ProfileValidationError(errors)
    return profile


def load(text: str, *, version: str | None = None) -> ComplianceProfile:
    return validate(parse_text(text), version=version)
