"""Exact cost cases: every price era, the peak/off-peak boundaries to the second,
cache-hit-only prompts, reasoning tokens billed as output."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from billing.catalog import seed_catalog
from billing.cost import (
    cost_of,
    round_units_to_cents,
    unit_price,
    units_to_usd_str,
    usd_to_units,
    worst_case_cost,
)
from billing.errors import CatalogError


def T(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


# (at, variant, hit, miss, output, expected version, expected total USD)
CASES = [
    # launch era
    ("2026-04-24T00:00:00Z", "flash", 1000, 2000, 500, "v4-launch@standard", "0.000448"),
    ("2026-04-26T12:14:59Z", "pro", 1_000_000, 0, 0, "v4-launch@standard", "0.145"),
    # cache-hit cut, to the second; cache-hit-only prompts
    ("2026-04-26T12:15:00Z", "pro", 1_000_000, 0, 0, "v4-hit-cut@standard", "0.0145"),
    ("2026-04-26T12:15:00Z", "flash", 1, 0, 0, "v4-hit-cut@standard", "0.0000000028"),
    ("2026-06-01T08:00:00Z", "flash", 123_457, 0, 0, "v4-hit-cut@standard", "0.0003456796"),
    # peak/off-peak era starts on Sunday 2026-08-16 16:00 (off-peak: weekend)
    ("2026-08-16T15:59:59Z", "flash", 0, 1_000_000, 0, "v4-hit-cut@standard", "0.14"),
    ("2026-08-16T16:00:00Z", "flash", 0, 1_000_000, 0, "v4-peak@off-peak", "0.22"),
    # Monday 2026-08-17: windows [01:00, 04:00) and [06:00, 10:00)
    ("2026-08-17T00:59:59Z", "flash", 0, 0, 1_000_000, "v4-peak@off-peak", "0.66"),
    ("2026-08-17T01:00:00Z", "flash", 0, 0, 1_000_000, "v4-peak@peak", "1.32"),
    ("2026-08-17T03:59:59Z", "flash", 0, 0, 1_000_000, "v4-peak@peak", "1.32"),
    ("2026-08-17T04:00:00Z", "flash", 0, 0, 1_000_000, "v4-peak@off-peak", "0.66"),
    ("2026-08-17T05:59:59Z", "pro", 1_000_000, 0, 0, "v4-peak@off-peak", "0.022"),
    ("2026-08-17T06:00:00Z", "pro", 1_000_000, 0, 0, "v4-peak@peak", "0.044"),
    ("2026-08-17T09:59:59Z", "pro", 0, 1_000_000, 0, "v4-peak@peak", "1.32"),
    ("2026-08-17T10:00:00Z", "pro", 0, 1_000_000, 0, "v4-peak@off-peak", "0.66"),
    # Friday in a window is peak, Saturday in the same window is off-peak
    ("2026-08-21T02:00:00Z", "pro", 0, 0, 1_000_000, "v4-peak@peak", "3.96"),
    ("2026-08-22T02:00:00Z", "pro", 0, 0, 1_000_000, "v4-peak@off-peak", "1.98"),
    # reasoning tokens are inside completion tokens, billed as output (1500 incl. 1200)
    ("2026-08-18T07:30:00Z", "pro", 200, 800, 1500, "v4-peak@peak", "0.0070048"),
]


@pytest.mark.parametrize(("at", "variant", "hit", "miss", "out", "version", "total"), CASES)
def test_exact_cost_table(at, variant, hit, miss, out, version, total) -> None:
    quote = seed_catalog().prices_at(variant, T(at))
    cost = cost_of(quote, hit, miss, out)
    assert quote.version_id == version
    assert cost.total_usd == total
    assert cost.price_version == version
    expected = (
        Decimal(hit) * quote.cache_hit + Decimal(miss) * quote.cache_miss + Decimal(out) * quote.output
    ) / Decimal(1_000_000)
    assert Decimal(cost.total_usd) == expected


def test_line_items_and_strings() -> None:
    quote = seed_catalog().prices_at("pro", T("2026-08-18T07:30:00Z"))
    cost = cost_of(quote, 200, 800, 1500)
    assert (cost.cache_hit, cost.cache_miss, cost.output) == (200 * 44_000, 800 * 1_320_000, 1500 * 3_960_000)
    assert cost.as_usd_str() == {
        "cost_usd": "0.0070048",
        "cache_hit_usd": "0.0000088",
        "cache_miss_usd": "0.001056",
        "output_usd": "0.00594",
    }
    assert cost_of(quote, 0, 0, 0).as_usd_str()["cost_usd"] == "0"


def test_no_floats_and_exactness() -> None:
    with pytest.raises(CatalogError):
        unit_price(0.14)  # type: ignore[arg-type]
    with pytest.raises(CatalogError):
        unit_price(Decimal("0.0000001"))  # 7 decimal places: not meterable exactly
    assert unit_price(Decimal("0.0028")) == 2800
    quote = seed_catalog().prices_at("flash", T("2026-05-01T00:00:00Z"))
    with pytest.raises(ValueError):
        cost_of(quote, 1.0, 0, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        cost_of(quote, -1, 0, 0)
    # a 1M-token context priced at the highest output price still fits comfortably in int64
    assert cost_of(quote, 0, 1_000_000, 1_000_000).total < 2**63


def test_worst_case_is_an_upper_bound() -> None:
    quote = seed_catalog().prices_at("pro", T("2026-08-18T07:30:00Z"))
    worst = worst_case_cost(quote, 1000, 2000)
    for hit in (0, 500, 1000):
        assert cost_of(quote, hit, 1000 - hit, 2000).total <= worst


def test_invoice_rounding_is_half_even_cents() -> None:
    cent = 10**10
    assert round_units_to_cents(cent // 2) == 0  # 0.5 cent -> 0
    assert round_units_to_cents(3 * cent // 2) == 2  # 1.5 cents -> 2
    assert round_units_to_cents(5 * cent // 2) == 2  # 2.5 cents -> 2
    assert round_units_to_cents(cent // 2 + 1) == 1
    assert units_to_usd_str(usd_to_units("12.345678901234")) == "12.345678901234"
    with pytest.raises(CatalogError):
        usd_to_units("0.0000000000001")
