"""A validated policy compiled into per-use-case lookup tables, ready for decide()."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from policy.document import CascadeRule, PolicyDocument, Tier, validate
from policy.types import MODE_ORDER, MODE_RANK, VARIANT_ORDER, VARIANT_RANK, Mode, OverAsk, Placement, Variant


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything decide() needs for one use case, precomputed."""

    use_case: str | None
    # variant/mode -> the rule that forbids it (dotted path), or None when allowed
    variant_block: Mapping[Variant, str | None]
    mode_block: Mapping[Mode, str | None]
    allowed_variants: tuple[Variant, ...]  # cheapest first
    allowed_modes: tuple[Mode, ...]  # lowest first
    default_variant: Variant
    default_mode: Mode
    default_mode_rule: str
    thinking_mode: Mode
    on_over_ask: OverAsk
    over_ask_rule: str
    ceiling: Decimal | None
    ceiling_rule: str
    on_cost_exceeded: OverAsk
    max_tokens: Mapping[Mode, int]
    router_enabled: bool
    tiers: tuple[Tier, ...]
    tiers_rule: str
    cascade: CascadeRule | None


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    version: str
    digest: str  # sha256 of the canonical JSON document
    document: PolicyDocument
    default_rules: Rules
    use_case_rules: Mapping[str, Rules]
    reject_unknown_use_case: bool
    placement: Placement

    def rules_for(self, use_case: str | None) -> Rules | None:
        """The rules of a use case; None when the label is unknown and unknown ones are rejected."""
        if use_case is None:
            return self.default_rules
        rules = self.use_case_rules.get(use_case)
        if rules is not None:
            return rules
        return None if self.reject_unknown_use_case else self.default_rules


def canonical_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def _rules(doc: PolicyDocument, name: str | None) -> Rules:
    uc = doc.use_cases.get(name) if name is not None else None
    prefix = f"use_cases.{name}." if uc is not None else ""

    def pick(field: str, top_value: Any) -> tuple[Any, str]:
        value = getattr(uc, field) if uc is not None else None
        return (value, prefix + field) if value is not None else (top_value, field)

    max_mode, max_mode_rule = pick("max_mode", doc.max_mode)
    max_variant, max_variant_rule = pick("max_variant", doc.max_variant)
    mode_block: dict[Mode, str | None] = {}
    for mode in MODE_ORDER:
        if mode not in doc.allowed_modes:
            mode_block[mode] = "modes.allowed"
        elif max_mode is not None and MODE_RANK[mode] > MODE_RANK[max_mode]:
            mode_block[mode] = max_mode_rule
        else:
            mode_block[mode] = None
    variant_block: dict[Variant, str | None] = {}
    for variant in VARIANT_ORDER:
        if variant not in doc.allowed_variants:
            variant_block[variant] = "variants.allowed"
        elif max_variant is not None and VARIANT_RANK[variant] > VARIANT_RANK[max_variant]:
            variant_block[variant] = max_variant_rule
        else:
            variant_block[variant] = None
    allowed_modes = tuple(m for m in MODE_ORDER if mode_block[m] is None)
    allowed_variants = tuple(v for v in VARIANT_ORDER if variant_block[v] is None)
    if not allowed_modes:
        allowed_modes = ()
    default_mode, default_mode_rule = pick("default_mode", doc.default_mode)
    if uc is None or uc.default_mode is None:
        default_mode_rule = "modes.default"
    over_ask, over_ask_rule = pick("on_over_ask", doc.on_over_ask)
    ceiling, ceiling_rule = pick("max_request_usd", doc.max_request_usd)
    if uc is None or uc.max_request_usd is None:
        ceiling_rule = "cost.max_request_usd"
    tiers, tiers_rule = pick("tiers", doc.tiers)
    tiers_rule = prefix + "router_tiers" if uc is not None and uc.tiers is not None else "router.tiers"
    cascade_on = doc.cascade.enabled if uc is None or uc.cascade is None else uc.cascade
    return Rules(
        use_case=name,
        variant_block=variant_block,
        mode_block=mode_block,
        allowed_variants=allowed_variants,
        allowed_modes=allowed_modes,
        default_variant=doc.default_variant,
        default_mode=default_mode,
        default_mode_rule=default_mode_rule,
        thinking_mode=doc.default_thinking_mode,
        on_over_ask=over_ask,
        over_ask_rule=over_ask_rule,
        ceiling=ceiling,
        ceiling_rule=ceiling_rule,
        on_cost_exceeded=doc.on_cost_exceeded,
        max_tokens=doc.default_max_tokens,
        router_enabled=doc.router_enabled,
        tiers=tiers,
        tiers_rule=tiers_rule,
        cascade=doc.cascade if cascade_on else None,
    )


def compile_policy(doc: PolicyDocument | Mapping[str, Any], version: str) -> CompiledPolicy:
    """Compile a document (validated here when given as a mapping) under a version label."""
    if not isinstance(doc, PolicyDocument):
        doc = validate(doc)
    return CompiledPolicy(
        version=version,
        digest=hashlib.sha256(canonical_json(doc.raw).encode()).hexdigest(),
        document=doc,
        default_rules=_rules(doc, None),
        use_case_rules={name: _rules(doc, name) for name in doc.use_cases},
        reject_unknown_use_case=doc.unknown_use_case == "reject",
        placement=Placement(regions=doc.regions, hardware=doc.hardware, pools=doc.pools),
    )
