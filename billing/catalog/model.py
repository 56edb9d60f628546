"""The in-memory price catalog: versions, time-of-day windows, promotions, comparators.

Everything here is pure: a `PriceCatalog` is built once from rows or a file and answers
`prices_at(variant, at)` without I/O, so the policy room may call it inside its decision.
Prices are Decimal USD per 1M tokens, validated to be exactly meterable (see billing.cost).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from billing.cost import unit_price
from billing.errors import CatalogError, PriceNotFoundError
from billing.types import Variant

PEAK = "peak"
OFF_PEAK = "off-peak"
STANDARD = "standard"


@dataclass(frozen=True, slots=True)
class VariantPrices:
    """USD per 1M tokens for one variant."""

    cache_hit: Decimal
    cache_miss: Decimal
    output: Decimal

    def __post_init__(self) -> None:
        for p in (self.cache_hit, self.cache_miss, self.output):
            unit_price(p)  # raises CatalogError unless exact and non-negative

    def scaled(self, factor: Decimal) -> VariantPrices:
        return VariantPrices(self.cache_hit * factor, self.cache_miss * factor, self.output * factor)


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open daily UTC window [start, end) on the given ISO weekdays (1=Mon..7=Sun)."""

    start: dt.time
    end: dt.time
    weekdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise CatalogError(f"window start {self.start} must be before end {self.end}")
        if not self.weekdays or not self.weekdays <= frozenset(range(1, 8)):
            raise CatalogError(f"window weekdays must be ISO weekdays 1..7, got {self.weekdays}")

    def contains(self, at: dt.datetime) -> bool:
        t = at.timetz().replace(tzinfo=None)
        return at.isoweekday() in self.weekdays and self.start <= t < self.end


@dataclass(frozen=True, slots=True)
class TimeOfDay:
    """Peak/off-peak rule: listed prices apply inside `peak` windows; everywhere else
    they are multiplied by `off_peak_multiplier` (0.5 = off-peak is half of peak)."""

    peak: tuple[Window, ...]
    off_peak_multiplier: Decimal = Decimal("0.5")

    def period_at(self, at: dt.datetime) -> str:
        return PEAK if any(w.contains(at) for w in self.peak) else OFF_PEAK


@dataclass(frozen=True, slots=True)
class PriceVersion:
    id: str
    effective_from: dt.datetime
    prices: Mapping[Variant, VariantPrices]
    time_of_day: TimeOfDay | None = None
    note: str = ""

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_utc(self.effective_from, "effective_from")
        if self.time_of_day is not None:
            for vp in self.prices.values():
                vp.scaled(self.time_of_day.off_peak_multiplier)  # off-peak must be exact too


@dataclass(frozen=True, slots=True)
class Promotion:
    """A price multiplier over [starts_at, ends_at) for some variants (all if empty).
    Promotions do not stack: when several apply, the lowest multiplier wins (ties: id)."""

    id: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    multiplier: Decimal
    variants: frozenset[Variant] = frozenset()
    note: str = ""

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_utc(self.starts_at, "starts_at")
        _check_utc(self.ends_at, "ends_at")
        if not self.starts_at < self.ends_at:
            raise CatalogError(f"promotion {self.id}: starts_at must be before ends_at")
        if not (Decimal(0) <= self.multiplier <= Decimal(1)):
            raise CatalogError(f"promotion {self.id}: multiplier must be within [0, 1]")

    def applies(self, variant: Variant, at: dt.datetime) -> bool:
        return self.starts_at <= at < self.ends_at and (not self.variants or variant in self.variants)


@dataclass(frozen=True, slots=True)
class Comparator:
    """A closed model's list price, used only by the savings report (never for billing).
    A blended price sets input == output."""

    id: str
    name: str
    input: Decimal
    output: Decimal
    note: str = ""

    def __post_init__(self) -> None:
        _check_id(self.id)
        unit_price(self.input)
        unit_price(self.output)


@dataclass(frozen=True, slots=True)
class PriceQuote:
    """Prices in force for one variant at one instant (USD per 1M tokens).

    `version_id` names everything that produced the numbers, e.g.
    ``v4-peak-2026-08-16@off-peak`` or ``v4-launch@standard+promo-x``; usage records keep it.
    """

    version_id: str
    variant: Variant
    cache_hit: Decimal
    cache_miss: Decimal
    output: Decimal
    period: str = STANDARD
    promotion_id: str | None = None


@dataclass(frozen=True)
class PriceCatalog:
    """An immutable, loaded catalog. Build with `PriceCatalog.build(...)`."""

    versions: tuple[PriceVersion, ...]
    promotions: tuple[Promotion, ...] = ()
    comparators: tuple[Comparator, ...] = ()
    _starts: tuple[dt.datetime, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self._starts) != len(self.versions):  # constructed directly, not by build()
            object.__setattr__(self, "versions", tuple(sorted(self.versions, key=lambda v: v.effective_from)))
            object.__setattr__(self, "_starts", tuple(v.effective_from for v in self.versions))

    @classmethod
    def build(
        cls,
        versions: Iterable[PriceVersion],
        promotions: Iterable[Promotion] = (),
        comparators: Iterable[Comparator] = (),
    ) -> PriceCatalog:
        ordered = tuple(sorted(versions, key=lambda v: v.effective_from))
        _unique([v.id for v in ordered], "version")
        starts = [v.effective_from for v in ordered]
        if len(set(starts)) != len(starts):
            raise CatalogError("two price versions share an effective_from instant")
        promos = tuple(sorted(promotions, key=lambda p: (p.starts_at, p.id)))
        _unique([p.id for p in promos], "promotion")
        comps = tuple(comparators)
        _unique([c.id for c in comps], "comparator")
        catalog = cls(ordered, promos, comps, tuple(starts))
        catalog.validate_exact()
        return catalog

    def version_at(self, at: dt.datetime) -> PriceVersion:
        at = _as_utc(at)
        i = bisect.bisect_right(self._starts, at) - 1
        if i < 0:
            raise PriceNotFoundError(f"no price version is in force at {at.isoformat()}")
        return self.versions[i]

    def prices_at(self, variant: Variant | str, at: dt.datetime) -> PriceQuote:
        """The prices in force for `variant` at instant `at` (the request's start)."""
        variant = Variant(variant)
        at = _as_utc(at)
        version = self.version_at(at)
        base = version.prices.get(variant)
        if base is None:
            raise PriceNotFoundError(f"price version {version.id} has no prices for {variant}")
        period, prices = STANDARD, base
        if version.time_of_day is not None:
            period = version.time_of_day.period_at(at)
            if period == OFF_PEAK:
                prices = base.scaled(version.time_of_day.off_peak_multiplier)
        promo = self.promotion_at(variant, at)
        label = f"{version.id}@{period}"
        if promo is not None:
            prices = prices.scaled(promo.multiplier)
            label += f"+{promo.id}"
        return PriceQuote(
            version_id=label,
            variant=variant,
            cache_hit=_tidy(prices.cache_hit),
            cache_miss=_tidy(prices.cache_miss),
            output=_tidy(prices.output),
            period=period,
            promotion_id=promo.id if promo else None,
        )

    def promotion_at(self, variant: Variant, at: dt.datetime) -> Promotion | None:
        active = [p for p in self.promotions if p.applies(variant, at)]
        if not active:
            return None
        return min(active, key=lambda p: (p.multiplier, p.id))

    def comparator(self, comparator_id: str) -> Comparator:
        for c in self.comparators:
            if c.id == comparator_id:
                return c
        raise CatalogError(f"unknown comparator {comparator_id}")

    def validate_exact(self) -> None:
        """Check that every promotion applied to every version still meters exactly."""
        for promo in self.promotions:
            for version in self.versions:
                for vp in version.prices.values():
                    scaled = vp.scaled(promo.multiplier)  # raises CatalogError if inexact
                    if version.time_of_day is not None:
                        scaled.scaled(version.time_of_day.off_peak_multiplier)


def _check_utc(value: dt.datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() != dt.timedelta(0):
        raise CatalogError(f"{name} must be a UTC-aware datetime, got {value!r}")


def _tidy(d: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation (0.0070 -> 0.007)."""
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


def _as_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise CatalogError(f"naive datetime {value!r}: prices are looked up by UTC instant")
    return value.astimezone(dt.UTC)


def _check_id(value: str) -> None:
    # Short ids keep "version@period+promotion" within the 64-char price_version column.
    if not value or len(value) > 24 or not all(c.isalnum() or c in "-_." for c in value):
        raise CatalogError(f"invalid id {value!r} (1-24 chars of letters, digits, - _ .)")


def _unique(ids: list[str], what: str) -> None:
    if len(set(ids)) != len(ids):
        raise CatalogError(f"duplicate {what} id")
