"""The decision: which variant and mode serve a request, under what limits, and why.

Pure and fast (no I/O): the caller passes the compiled policy, the request, the price
quote in force for each variant, the router's score (for ``model: auto``), the tenant's
router calibration when it has one, and the compliance constraints. The order of rules is
documented in docs/policy.md; what a calibration changes in docs/routing.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from policy.compiled import CompiledPolicy, Rules
from policy.compliance import ComplianceLike
from policy.errors import (
    ComplianceViolation,
    CostCeilingExceeded,
    InvalidRequest,
    PolicyForbidden,
    PriceUnavailable,
)
from policy.types import (
    AUTO_MODEL,
    MODE_ORDER,
    MODE_RANK,
    MODEL_OF_VARIANT,
    VARIANT_OF_MODEL,
    VARIANT_ORDER,
    VARIANT_RANK,
    CalibrationUse,
    CascadePlan,
    Decision,
    DecisionRequest,
    Mode,
    OverAsk,
    Placement,
    PriceQuoteLike,
    RouterCalibrationLike,
    Variant,
)

_MILLION = Decimal(1_000_000)
_EFFORT_MODE = {
    "low": Mode.THINK_HIGH,
    "medium": Mode.THINK_HIGH,
    "high": Mode.THINK_HIGH,
    "max": Mode.THINK_MAX,
    "xhigh": Mode.THINK_MAX,
}


def requested_mode(thinking: str | None, effort: str | None, thinking_default: Mode) -> Mode | None:
    """Map ``thinking.type`` and ``reasoning_effort`` to a mode; None when neither was given."""
    if thinking is None and effort is None:
        return None
    if thinking == "disabled":
        return Mode.NON_THINK
    if thinking is not None and thinking != "enabled":
        raise InvalidRequest(
            f"thinking.type must be 'enabled' or 'disabled', got {thinking!r}", rule="thinking.type"
        )
    if effort is None:
        return thinking_default
    mode = _EFFORT_MODE.get(effort)
    if mode is None:
        raise InvalidRequest(
            f"reasoning_effort must be one of {', '.join(_EFFORT_MODE)}, got {effort!r}",
            rule="reasoning_effort",
        )
    return mode


def worst_case_cost(quote: PriceQuoteLike, prompt_tokens: int, output_tokens: int) -> Decimal:
    """USD if every prompt token misses the cache and the answer uses all its output tokens."""
    return (prompt_tokens * quote.cache_miss + output_tokens * quote.output) / _MILLION


def _fit(allowed: tuple, rank: Mapping, wanted: object) -> object | None:
    """The highest allowed value at or below ``wanted``, else the lowest above it."""
    best = None
    for value in allowed:  # ascending
        if rank[value] <= rank[wanted]:
            best = value
        elif best is None:
            return value
    return best


def _refuse_explicit(
    rules: Rules, kind: str, wanted: object, fitted: object | None, rank: Mapping, block: str
) -> None:
    """Refuse an explicitly requested value the policy does not allow, unless it downgrades.

    Downgrading (to the highest allowed value below) happens only under ``on_over_ask:
    downgrade``; a value that would have to be raised (only stronger ones are allowed) is
    refused, so that a client never gets a more expensive model or mode than it named.
    """
    if fitted is not None and rank[fitted] < rank[wanted]:
        if rules.on_over_ask is OverAsk.DOWNGRADE:
            return
        raise PolicyForbidden(
            f"{kind} {wanted} is not allowed ({block}; {rules.over_ask_rule}: reject)", rule=block
        )
    raise PolicyForbidden(f"{kind} {wanted} is not allowed ({block}) and nothing below it is", rule=block)


def _quote(prices: Mapping[str, PriceQuoteLike], variant: Variant) -> PriceQuoteLike:
    quote = prices.get(variant)
    if quote is None:
        raise PriceUnavailable(f"no price quote given for variant {variant}", rule="prices")
    return quote


def _placement(policy: CompiledPolicy, compliance: ComplianceLike | None) -> Placement:
    base = policy.placement
    if compliance is None:
        return base
    fields: dict[str, frozenset[str] | None] = {}
    for name in ("regions", "hardware", "pools"):
        mine, theirs = getattr(base, name), getattr(compliance, name)
        both = theirs if mine is None else mine if theirs is None else mine & theirs
        if both is not None and not both:
            raise ComplianceViolation(
                f"the policy's placement.{name} ({', '.join(sorted(mine or ()))}) and the "
                f"compliance profile's ({', '.join(sorted(theirs or ()))}) have nothing in common",
                rule=f"placement.{name}",
            )
        fields[name] = both
    return Placement(sovereign_only=compliance.sovereign_only, **fields)


def decide(
    policy: CompiledPolicy,
    request: DecisionRequest,
    prices: Mapping[str, PriceQuoteLike],
    router_score: float | None = None,
    compliance: ComplianceLike | None = None,
    calibration: RouterCalibrationLike | None = None,
) -> Decision:
    """``calibration`` (model ``auto`` with a score only): the tiers read the tenant's own
    percentile of the score, and a cascade whose expected cost (first attempt + p(escalate)
    x escalation, worst cases as reserved) exceeds the escalation alone goes direct."""
    rules = policy.rules_for(request.use_case)
    if rules is None:
        raise PolicyForbidden(
            f"use case {request.use_case!r} is not defined in the policy", rule="unknown_use_case"
        )
    if request.prompt_tokens < 0:
        raise InvalidRequest("prompt_tokens must be >= 0", rule="prompt_tokens")
    if request.max_tokens is not None and request.max_tokens < 1:
        raise InvalidRequest(f"max_tokens must be >= 1, got {request.max_tokens}", rule="max_tokens")
    reasons: list[str] = []
    use_case = request.use_case
    if use_case is not None and use_case not in policy.use_case_rules:
        reasons.append(f"use case {use_case!r} unknown: top-level rules apply")

    # 1. What the request asks for (variant; mode from thinking/effort, else defaults).
    model = request.model
    asked_mode = requested_mode(request.thinking, request.reasoning_effort, rules.thinking_mode)
    tier_score: float | None = None  # the score the tiers read (the tenant's percentile if calibrated)
    p_escalate: float | None = None  # set when a calibration applies
    if model == AUTO_MODEL:
        if not rules.router_enabled:
            raise PolicyForbidden("model 'auto' is disabled by the policy", rule="router.enabled")
        if router_score is None or router_score != router_score:  # absent or NaN
            router_score = None
            variant, tier_mode = rules.default_variant, rules.default_mode
            reasons.append(f"auto: no router score, defaults {variant}/{tier_mode}")
        else:
            tier_score = router_score
            if calibration is not None:
                tier_score = calibration.tenant_percentile(router_score)
                p_escalate = calibration.escalation_probability(router_score)
            tier = rules.tiers[-1]
            for candidate in rules.tiers:
                if candidate.below is None or tier_score < candidate.below:
                    tier = candidate
                    break
            variant, tier_mode = tier.variant, tier.mode
            read = f"score {router_score:.3f}"
            if calibration is not None:
                read += f", tenant percentile {tier_score:.3f} (router calibration v{calibration.version})"
            reasons.append(f"auto: {read} -> {variant}/{tier_mode} ({rules.tiers_rule})")
        explicit_variant = False
        if asked_mode is None:
            mode, explicit_mode = tier_mode, False
        else:
            mode, explicit_mode = asked_mode, True
    else:
        variant = VARIANT_OF_MODEL.get(model)  # type: ignore[assignment]
        if variant is None:
            raise InvalidRequest(
                f"unknown model {model!r}: use deepseek-v4-flash, deepseek-v4-pro or auto", rule="model"
            )
        explicit_variant = True
        if asked_mode is None:
            mode, explicit_mode = rules.default_mode, False
            reasons.append(f"mode {mode} from {rules.default_mode_rule}")
        else:
            mode, explicit_mode = asked_mode, True

    # 2. Allowed variants and modes (use-case caps included): downgrade or reject.
    block = rules.variant_block[variant]
    if block is not None:
        fitted = _fit(rules.allowed_variants, VARIANT_RANK, variant)
        if fitted is None:
            raise PolicyForbidden(f"the policy allows no variant here ({block})", rule=block)
        if explicit_variant:
            _refuse_explicit(rules, "variant", variant, fitted, VARIANT_RANK, block)
        reasons.append(f"variant {variant} not allowed by {block}: {fitted}")
        variant = fitted  # type: ignore[assignment]
    block = rules.mode_block[mode]
    if block is not None:
        fitted = _fit(rules.allowed_modes, MODE_RANK, mode)
        if fitted is None:
            raise PolicyForbidden(f"the policy allows no mode here ({block})", rule=block)
        if explicit_mode:
            _refuse_explicit(rules, "mode", mode, fitted, MODE_RANK, block)
        reasons.append(f"mode {mode} not allowed by {block}: {fitted}")
        mode = fitted  # type: ignore[assignment]

    # 3. Compliance: a variant the profile forbids is never served.
    placement = _placement(policy, compliance)
    if compliance is not None:
        rule = compliance.blocked(variant, use_case)
        if rule is not None:
            if explicit_variant:
                raise ComplianceViolation(
                    f"variant {variant} may not serve use case {use_case!r} ({rule})", rule=rule
                )
            alternatives = [
                v for v in rules.allowed_variants if v != variant and compliance.blocked(v, use_case) is None
            ]
            if not alternatives:
                raise ComplianceViolation(
                    f"no allowed variant may serve use case {use_case!r} ({rule})", rule=rule
                )
            reasons.append(f"variant {variant} excluded by compliance rule {rule}: {alternatives[-1]}")
            variant = alternatives[-1]

    # 4. Cost ceiling: lower the mode, then the variant, then reject.
    max_tokens = request.max_tokens
    quote = _quote(prices, variant)
    out = max_tokens if max_tokens is not None else rules.max_tokens[mode]
    cost = worst_case_cost(quote, request.prompt_tokens, out)
    ceiling = rules.ceiling
    if ceiling is not None and cost > ceiling:
        first = (variant, mode, cost)
        found = None
        if rules.on_cost_exceeded is OverAsk.DOWNGRADE:
            for v in reversed(rules.allowed_variants):
                if VARIANT_RANK[v] > VARIANT_RANK[variant]:
                    continue
                if compliance is not None and compliance.blocked(v, use_case) is not None:
                    continue
                q = _quote(prices, v)
                for m in reversed(rules.allowed_modes):
                    if MODE_RANK[m] > MODE_RANK[mode]:
                        continue
                    o = max_tokens if max_tokens is not None else rules.max_tokens[m]
                    c = worst_case_cost(q, request.prompt_tokens, o)
                    if c <= ceiling:
                        found = (v, m, q, o, c)
                        break
                if found is not None:
                    break
        if found is None:
            raise CostCeilingExceeded(
                f"worst-case cost ${first[2]} of {first[0]}/{first[1]} is above the ceiling "
                f"${ceiling} ({rules.ceiling_rule}) and no cheaper allowed choice fits",
                rule=rules.ceiling_rule,
            )
        variant, mode, quote, out, cost = found
        reasons.append(
            f"cost ceiling ${ceiling} ({rules.ceiling_rule}): {first[0]}/{first[1]} "
            f"${first[2]} -> {variant}/{mode} ${cost}"
        )

    # 5. Cascade: Flash first, escalate on low confidence if the escalation fits; with a
    # calibration that expects the escalation often enough, the escalation model directly.
    plan = None
    total = cost
    version = None if calibration is None else calibration.version
    break_even: float | None = None
    direct = False
    rule_c = rules.cascade
    if rule_c is not None and model in rule_c.models and VARIANT_RANK[variant] < VARIANT_RANK[rule_c.variant]:
        esc_variant = rule_c.variant
        esc_mode = rule_c.mode if rule_c.mode is not None else mode
        why = None
        if rules.variant_block[esc_variant] is not None:
            why = f"{esc_variant} not allowed ({rules.variant_block[esc_variant]})"
        elif rules.mode_block[esc_mode] is not None:
            esc_mode = _fit(rules.allowed_modes, MODE_RANK, esc_mode)  # type: ignore[assignment]
        if why is None and compliance is not None:
            blocked = compliance.blocked(esc_variant, use_case)
            why = f"{esc_variant} excluded by compliance rule {blocked}" if blocked else None
        if why is None:
            esc_quote = _quote(prices, esc_variant)
            esc_out = max_tokens if max_tokens is not None else rules.max_tokens[esc_mode]
            esc_cost = worst_case_cost(esc_quote, request.prompt_tokens, esc_out)
            if ceiling is not None and cost + esc_cost > ceiling:
                why = f"both attempts (${cost + esc_cost}) would exceed {rules.ceiling_rule}"
            elif p_escalate is not None and esc_cost > 0:
                # cascade: cost + p x esc_cost; direct: esc_cost; direct pays when p > 1 - cost/esc_cost
                break_even = float(1 - cost / esc_cost)
                direct = p_escalate > break_even
            if why is None and direct:
                reasons.append(
                    f"router calibration v{version}: p(escalate) {p_escalate:.3f} at score "
                    f"{router_score:.3f} > break-even {break_even:.3f} ({variant} ${cost} + p x "
                    f"{esc_variant} ${esc_cost} > {esc_variant} alone): {esc_variant}/{esc_mode} "
                    "directly, no cascade"
                )
                variant, mode, quote, out, cost = esc_variant, esc_mode, esc_quote, esc_out, esc_cost
                total = cost
            elif why is None:
                plan = CascadePlan(
                    threshold=rule_c.threshold,
                    method=rule_c.method,
                    escalate_on_missing=rule_c.escalate_on_missing,
                    variant=esc_variant,
                    mode=esc_mode,
                    model=MODEL_OF_VARIANT[esc_variant],
                    worst_case_cost_usd=esc_cost,
                    price_version=esc_quote.version_id,
                )
                total = cost + esc_cost
                reasons.append(
                    f"cascade: escalate to {esc_variant}/{esc_mode} if confidence < {rule_c.threshold}"
                )
        if why is not None:
            reasons.append(f"cascade off: {why}")

    return Decision(
        variant=variant,
        mode=mode,
        model=MODEL_OF_VARIANT[variant],
        requested_model=model,
        policy_version=policy.version,
        use_case=use_case,
        max_output_tokens=out,
        cost_ceiling_usd=ceiling,
        worst_case_cost_usd=cost,
        worst_case_total_usd=total,
        price_version=quote.version_id,
        placement=placement,
        cascade=plan,
        router_score=router_score,
        reasons=tuple(reasons),
        router_calibration=None
        if p_escalate is None or tier_score is None
        else CalibrationUse(version, tier_score, p_escalate, break_even, direct),
    )


__all__ = ["decide", "requested_mode", "worst_case_cost", "MODE_ORDER", "VARIANT_ORDER"]
