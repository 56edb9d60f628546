"""Exact cost arithmetic.

Money is an integer number of *units*; one unit is 1e-12 USD (a picodollar). A price is
published in USD per 1M tokens; one token at price P costs P * 1e6 units, which is an
integer for every price with at most 6 decimal places (the catalog refuses others). So
``tokens * unit_price`` is exact and no rounding happens anywhere in metering. Rounding
happens only on documents: an invoice rounds its total once, to cents, half-even
(`round_units_to_cents`). No float touches money in this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

from billing.errors import CatalogError

if TYPE_CHECKING:
    from billing.catalog.model import PriceQuote

UNITS_PER_USD = 10**12
UNITS_PER_CENT = 10**10
TOKENS_PER_PRICE_UNIT = 10**6  # prices are quoted per 1M tokens
# A price per 1M tokens times this factor is the integer number of units per token.
_UNITS_PER_TOKEN_FACTOR = UNITS_PER_USD // TOKENS_PER_PRICE_UNIT  # = 1e6


def unit_price(price_per_million: Decimal) -> int:
    """Units (1e-12 USD) per token for a price in USD per 1M tokens; exact or an error."""
    if not isinstance(price_per_million, Decimal):
        raise CatalogError(f"prices must be Decimal, got {type(price_per_million).__name__}")
    if not price_per_million.is_finite() or price_per_million < 0:
        raise CatalogError(f"invalid price {price_per_million}")
    scaled = price_per_million * _UNITS_PER_TOKEN_FACTOR
    if scaled != scaled.to_integral_value():
        raise CatalogError(
            f"price {price_per_million} USD/1M has more than 6 decimal places; "
            "it cannot be metered exactly in 1e-12 USD units"
        )
    return int(scaled)


def units_to_decimal(units: int) -> Decimal:
    """Exact USD amount of `units` as a Decimal (no rounding)."""
    return Decimal(units).scaleb(-12)


def units_to_usd_str(units: int) -> str:
    """Exact USD amount as a plain decimal string, without exponent or trailing zeros.

    >>> units_to_usd_str(2_800)
    '0.0000000028'
    """
    value = units_to_decimal(units)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def usd_to_units(amount: Decimal | str | int) -> int:
    """Exact units for a USD amount (budgets, comparator prices); refuses sub-unit amounts."""
    value = Decimal(str(amount)) if not isinstance(amount, Decimal) else amount
    scaled = value.scaleb(12)
    if not value.is_finite() or scaled != scaled.to_integral_value():
        raise CatalogError(f"amount {amount} USD is not a whole number of 1e-12 USD units")
    return int(scaled)


def round_units_to_cents(units: int) -> int:
    """The invoice rounding rule: whole cents, half-even (banker's rounding)."""
    return int((Decimal(units) / UNITS_PER_CENT).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def cents_to_usd_str(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


@dataclass(frozen=True, slots=True)
class Cost:
    """The exact cost of one request attempt, by line item, in units of 1e-12 USD."""

    cache_hit: int
    cache_miss: int
    output: int
    price_version: str = ""

    @property
    def total(self) -> int:
        return self.cache_hit + self.cache_miss + self.output

    @property
    def total_usd(self) -> str:
        return units_to_usd_str(self.total)

    def as_usd_str(self) -> dict[str, str]:
        """Decimal strings for the response: ``usage.cost_usd`` and ``usage.cost_details``."""
        return {
            "cost_usd": units_to_usd_str(self.total),
            "cache_hit_usd": units_to_usd_str(self.cache_hit),
            "cache_miss_usd": units_to_usd_str(self.cache_miss),
            "output_usd": units_to_usd_str(self.output),
        }

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.cache_hit + other.cache_hit,
            self.cache_miss + other.cache_miss,
            self.output + other.output,
            self.price_version if self.price_version == other.price_version else "",
        )


def cost_of(quote: PriceQuote, cache_hit_tokens: int, cache_miss_tokens: int, output_tokens: int) -> Cost:
    """Exact cost of a request priced by `quote`.

    `output_tokens` is the completion token count *including* reasoning tokens (DeepSeek's
    ``completion_tokens`` already contains ``reasoning_tokens``; pass it unchanged).
    """
    for name, n in (
        ("cache_hit_tokens", cache_hit_tokens),
        ("cache_miss_tokens", cache_miss_tokens),
        ("output_tokens", output_tokens),
    ):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"{name} must be a non-negative int, got {n!r}")
    return Cost(
        cache_hit=cache_hit_tokens * unit_price(quote.cache_hit),
        cache_miss=cache_miss_tokens * unit_price(quote.cache_miss),
        output=output_tokens * unit_price(quote.output),
        price_version=quote.version_id,
    )


def worst_case_cost(quote: PriceQuote, prompt_tokens: int, max_output_tokens: int) -> int:
    """Upper bound (units) for budget reservations: every prompt token a cache miss and
    the full `max_output_tokens` generated (reasoning included)."""
    hit, miss = unit_price(quote.cache_hit), unit_price(quote.cache_miss)
    return prompt_tokens * max(hit, miss) + max_output_tokens * unit_price(quote.output)
