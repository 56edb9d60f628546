"""The policy document: parse YAML/JSON, validate against the schema, name bad fields.

A document is a mapping; every problem is reported as ``path: problem`` with the dotted
path of the field (``use_cases.faq.max_mode: must be one of ...``). ``validate`` returns
a ``PolicyDocument`` made of frozen dataclasses, or raises ``PolicyValidationError``
listing all problems at once. See docs/policy.md for the schema with examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from policy.errors import PolicyValidationError
from policy.types import AUTO_MODEL, MODE_ORDER, MODEL_OF_VARIANT, VARIANT_ORDER, Mode, OverAsk, Variant

SCHEMA_VERSION = 1
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_CONFIDENCE_METHODS = ("mean", "min", "tail")
_MODES = ", ".join(MODE_ORDER)
_VARIANTS = ", ".join(VARIANT_ORDER)
_CASCADE_MODELS = (AUTO_MODEL, *MODEL_OF_VARIANT.values())


@dataclass(frozen=True, slots=True)
class Tier:
    below: float | None  # upper bound (exclusive) on the router score; None = the rest
    variant: Variant
    mode: Mode


@dataclass(frozen=True, slots=True)
class CascadeRule:
    enabled: bool
    threshold: float
    method: str
    escalate_on_missing: bool
    variant: Variant
    mode: Mode | None  # None: keep the first attempt's mode
    models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UseCaseRule:
    """Overrides for one use case; None means "as the top level says"."""

    max_mode: Mode | None = None
    max_variant: Variant | None = None
    default_mode: Mode | None = None
    on_over_ask: OverAsk | None = None
    max_request_usd: Decimal | None = None
    cascade: bool | None = None
    tiers: tuple[Tier, ...] | None = None


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    allowed_variants: tuple[Variant, ...]
    allowed_modes: tuple[Mode, ...]
    default_variant: Variant
    default_mode: Mode
    default_thinking_mode: Mode
    max_mode: Mode | None
    max_variant: Variant | None
    on_over_ask: OverAsk
    unknown_use_case: str  # "default" | "reject"
    max_request_usd: Decimal | None
    on_cost_exceeded: OverAsk
    default_max_tokens: Mapping[Mode, int]
    router_enabled: bool
    tiers: tuple[Tier, ...]
    cascade: CascadeRule
    regions: frozenset[str] | None
    hardware: frozenset[str] | None
    pools: frozenset[str] | None
    use_cases: Mapping[str, UseCaseRule]
    raw: Mapping[str, Any]


DEFAULT_MAX_TOKENS: dict[Mode, int] = {
    Mode.NON_THINK: 8192,
    Mode.THINK_HIGH: 32768,
    Mode.THINK_MAX: 65536,
}
DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(0.5, Variant("flash"), Mode.NON_THINK),
    Tier(0.8, Variant("flash"), Mode.THINK_HIGH),
    Tier(None, Variant("pro"), Mode.THINK_HIGH),
)


def parse_text(text: str) -> dict[str, Any]:
    """Parse a YAML or JSON policy text (JSON is YAML; JSON is tried first for its errors)."""
    stripped = text.lstrip()
    try:
        data = json.loads(text) if stripped.startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PolicyValidationError([f"(document): not valid YAML or JSON: {exc}"]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyValidationError(["(document): must be a mapping of fields"])
    return data


class _Reader:
    """Reads fields of a mapping at a path, collecting problems instead of failing fast."""

    def __init__(self, errors: list[str], data: Mapping[str, Any], path: str, allowed: set[str]):
        self.errors, self.data, self.path = errors, data, path
        for key in data:
            if key not in allowed:
                self.fail(str(key), f"unknown field (allowed: {', '.join(sorted(allowed))})")

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, problem: str) -> None:
        self.errors.append(f"{self.at(key)}: {problem}")

    def get(self, key: str, conv: Callable[[Any], Any], default: Any = None) -> Any:
        if key not in self.data or self.data[key] is None:
            return default
        try:
            return conv(self.data[key])
        except _Bad as bad:
            self.fail(key, str(bad))
            return default

    def sub(self, key: str, allowed: set[str]) -> _Reader:
        value = self.data.get(key)
        if value is None:
            value = {}
        elif not isinstance(value, dict):
            self.fail(key, "must be a mapping")
            value = {}
        return _Reader(self.errors, value, self.at(key), allowed)


class _Bad(ValueError):
    pass


def _enum(kind: type[Any], names: str) -> Callable[[Any], Any]:
    def conv(value: Any) -> Any:
        try:
            return kind(value)
        except ValueError:
            raise _Bad(f"must be one of {names} (got {value!r})") from None

    return conv


def _enum_list(kind: type[Any], names: str) -> Callable[[Any], Any]:
    one = _enum(kind, names)

    def conv(value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise _Bad(f"must be a non-empty list of {names}")
        return tuple(dict.fromkeys(one(v) for v in value))

    return conv


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 1000:
        raise _Bad("must be a text of at most 1000 characters")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false (got {value!r})")
    return value


def _usd(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Bad(f'must be a decimal amount in USD, such as "0.50" (got {value!r})')
    try:
        amount = Decimal(str(value))  # str() of a float keeps what the author wrote
    except InvalidOperation:
        raise _Bad(f'must be a decimal amount in USD, such as "0.50" (got {value!r})') from None
    if not amount.is_finite() or amount < 0:
        raise _Bad("must be a finite amount >= 0")
    return amount


def _unit(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _Bad(f"must be a number between 0 and 1 (got {value!r})")
    return float(value)


def _tokens(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _Bad(f"must be a positive integer (got {value!r})")
    return value


def _names(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Bad("must be a list of names")
    return frozenset(value)


def _one_of(*choices: str) -> Callable[[Any], str]:
    def conv(value: Any) -> str:
        if value not in choices:
            raise _Bad(f"must be one of {', '.join(choices)} (got {value!r})")
        return str(value)

    return conv


def _read_tiers(errors: list[str], value: Any, path: str) -> tuple[Tier, ...] | None:
    if not isinstance(value, list) or not value:
        errors.append(f"{path}: must be a non-empty list of tiers")
        return None
    tiers: list[Tier] = []
    last = -1.0
    for i, item in enumerate(value):
        p = f"{path}[{i}]"
        if not isinstance(item, dict):
            errors.append(f"{p}: must be a mapping with below, variant, mode")
            continue
        r = _Reader(errors, item, p, {"below", "variant", "mode"})
        below = r.get("below", _unit)
        variant = r.get("variant", _enum(Variant, _VARIANTS))
        mode = r.get("mode", _enum(Mode, _MODES))
        if variant is None or mode is None:
            if "variant" not in item or "mode" not in item:
                errors.append(f"{p}: needs both variant and mode")
            continue
        last_tier = i == len(value) - 1
        if below is None and not last_tier:
            errors.append(f"{p}.below: required on every tier but the last")
        if below is not None and below <= last:
            errors.append(f"{p}.below: must be greater than the previous tier's ({last})")
        last = below if below is not None else last
        tiers.append(Tier(None if last_tier else below, variant, mode))
    return tuple(tiers) if len(tiers) == len(value) else None


_TOP = {
    "schema",
    "description",
    "variants",
    "modes",
    "max_mode",
    "max_variant",
    "on_over_ask",
    "unknown_use_case",
    "cost",
    "router",
    "cascade",
    "placement",
    "use_cases",
}
_USE_CASE = {
    "max_mode",
    "max_variant",
    "default_mode",
    "on_over_ask",
    "max_request_usd",
    "cascade",
    "router_tiers",
    "description",
}


def validate(data: Mapping[str, Any]) -> PolicyDocument:
    """Check ``data`` against the schema; raise PolicyValidationError naming every bad field."""
    errors: list[str] = []
    if not isinstance(data, Mapping):
        raise PolicyValidationError(["(document): must be a mapping of fields"])
    top = _Reader(errors, data, "", _TOP)
    top.get("schema", _schema_version, SCHEMA_VERSION)
    top.get("description", _text)

    v = top.sub("variants", {"allowed", "default"})
    allowed_variants = v.get("allowed", _enum_list(Variant, _VARIANTS), VARIANT_ORDER)
    default_variant = v.get("default", _enum(Variant, _VARIANTS), Variant("flash"))
    if default_variant not in allowed_variants:
        if "default" in v.data:
            v.fail("default", "must be one of variants.allowed")
        else:
            default_variant = min(allowed_variants, key=VARIANT_ORDER.index)

    m = top.sub("modes", {"allowed", "default", "default_thinking"})
    allowed_modes = m.get("allowed", _enum_list(Mode, _MODES), MODE_ORDER)
    default_mode = m.get("default", _enum(Mode, _MODES), Mode.NON_THINK)
    thinking_mode = m.get("default_thinking", _enum(Mode, _MODES), Mode.THINK_HIGH)
    if thinking_mode is Mode.NON_THINK:
        m.fail("default_thinking", "must be a thinking mode (think-high or think-max)")
    if default_mode not in allowed_modes:
        if "default" in m.data:
            m.fail("default", "must be one of modes.allowed")
        else:
            default_mode = min(allowed_modes, key=MODE_ORDER.index)

    max_mode = top.get("max_mode", _enum(Mode, _MODES))
    max_variant = top.get("max_variant", _enum(Variant, _VARIANTS))
    on_over_ask = top.get("on_over_ask", _enum(OverAsk, "downgrade, reject"), OverAsk.DOWNGRADE)
    unknown = top.get("unknown_use_case", _one_of("default", "reject"), "default")

    c = top.sub("cost", {"max_request_usd", "on_exceeded", "default_max_tokens"})
    max_request_usd = c.get("max_request_usd", _usd)
    on_cost = c.get("on_exceeded", _enum(OverAsk, "downgrade, reject"), OverAsk.DOWNGRADE)
    max_tokens = dict(DEFAULT_MAX_TOKENS)
    dm = c.sub("default_max_tokens", set(MODE_ORDER))
    for mode in MODE_ORDER:
        max_tokens[mode] = dm.get(mode, _tokens, max_tokens[mode])

    r = top.sub("router", {"enabled", "tiers"})
    router_enabled = r.get("enabled", _bool, True)
    tiers = DEFAULT_TIERS
    if r.data.get("tiers") is not None:
        tiers = _read_tiers(errors, r.data["tiers"], r.at("tiers")) or DEFAULT_TIERS

    k = top.sub(
        "cascade", {"enabled", "threshold", "method", "escalate_on_missing_logprobs", "escalate_to", "models"}
    )
    esc = k.sub("escalate_to", {"variant", "mode"})
    models = k.get("models", _list_of(_CASCADE_MODELS), (AUTO_MODEL,))
    cascade = CascadeRule(
        enabled=k.get("enabled", _bool, False),
        threshold=k.get("threshold", _unit, 0.7),
        method=k.get("method", _one_of(*_CONFIDENCE_METHODS), "mean"),
        escalate_on_missing=k.get("escalate_on_missing_logprobs", _bool, True),
        variant=esc.get("variant", _enum(Variant, _VARIANTS), Variant("pro")),
        mode=esc.get("mode", _enum(Mode, _MODES)),
        models=models,
    )

    p = top.sub("placement", {"regions", "hardware", "pools"})
    regions = p.get("regions", _names)
    hardware = p.get("hardware", _names)
    pools = p.get("pools", _names)

    use_cases: dict[str, UseCaseRule] = {}
    raw_cases = data.get("use_cases") or {}
    if not isinstance(raw_cases, dict):
        errors.append("use_cases: must be a mapping of use-case name to rules")
        raw_cases = {}
    for name, body in raw_cases.items():
        path = f"use_cases.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            errors.append(f"{path}: use-case names are lower-case letters, digits, _ . - (max 64)")
            continue
        if body is None:
            body = {}
        if not isinstance(body, dict):
            errors.append(f"{path}: must be a mapping")
            continue
        u = _Reader(errors, body, path, _USE_CASE)
        u.get("description", _text)
        rule = UseCaseRule(
            max_mode=u.get("max_mode", _enum(Mode, _MODES)),
            max_variant=u.get("max_variant", _enum(Variant, _VARIANTS)),
            default_mode=u.get("default_mode", _enum(Mode, _MODES)),
            on_over_ask=u.get("on_over_ask", _enum(OverAsk, "downgrade, reject")),
            max_request_usd=u.get("max_request_usd", _usd),
            cascade=u.get("cascade", _bool),
            tiers=(
                _read_tiers(errors, body["router_tiers"], u.at("router_tiers"))
                if body.get("router_tiers") is not None
                else None
            ),
        )
        if rule.default_mode is not None and rule.default_mode not in allowed_modes:
            u.fail("default_mode", "must be one of modes.allowed")
        use_cases[name] = rule

    _check_caps(errors, allowed_variants, allowed_modes, max_variant, max_mode, use_cases)
    if errors:
        raise PolicyValidationError(errors)
    return PolicyDocument(
        allowed_variants=allowed_variants,
        allowed_modes=allowed_modes,
        default_variant=default_variant,
        default_mode=default_mode,
        default_thinking_mode=thinking_mode,
        max_mode=max_mode,
        max_variant=max_variant,
        on_over_ask=on_over_ask,
        unknown_use_case=unknown,
        max_request_usd=max_request_usd,
        on_cost_exceeded=on_cost,
        default_max_tokens=max_tokens,
        router_enabled=router_enabled,
        tiers=tiers,
        cascade=cascade,
        regions=regions,
        hardware=hardware,
        pools=pools,
        use_cases=use_cases,
        raw=data,
    )


def _check_caps(
    errors: list[str],
    variants: tuple[Variant, ...],
    modes: tuple[Mode, ...],
    max_variant: Variant | None,
    max_mode: Mode | None,
    use_cases: Mapping[str, UseCaseRule],
) -> None:
    """Every cap must leave at least one allowed variant and mode."""

    def leaves(allowed: tuple[Any, ...], order: tuple[Any, ...], cap: Any) -> bool:
        return cap is None or any(order.index(a) <= order.index(cap) for a in allowed)

    scopes = [("", max_variant, max_mode)]
    scopes += [(f"use_cases.{n}.", u.max_variant, u.max_mode) for n, u in use_cases.items()]
    for prefix, uc_variant, uc_mode in scopes:
        cap_v = uc_variant if uc_variant is not None else max_variant
        cap_m = uc_mode if uc_mode is not None else max_mode
        if not leaves(variants, VARIANT_ORDER, cap_v):
            where = prefix if uc_variant is not None else ""
            errors.append(f"{where}max_variant: leaves none of variants.allowed")
        if not leaves(modes, MODE_ORDER, cap_m):
            where = prefix if uc_mode is not None else ""
            errors.append(f"{where}max_mode: leaves none of modes.allowed")


def _schema_version(value: Any) -> int:
    if str(value) != str(SCHEMA_VERSION):
        raise _Bad(f"must be {SCHEMA_VERSION} (got {value!r})")
    return SCHEMA_VERSION


def _list_of(choices: tuple[str, ...]) -> Callable[[Any], tuple[str, ...]]:
    def conv(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or any(v not in choices for v in value):
            raise _Bad(f"must be a list of {', '.join(choices)}")
        return tuple(value)

    return conv


def load(text: str) -> PolicyDocument:
    """Parse and validate a YAML or JSON policy text."""
    return validate(parse_text(text))
