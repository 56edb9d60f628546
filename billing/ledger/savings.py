"""Savings report: what a tenant's traffic would have cost at the comparator list prices.

Comparator cost = (cache-hit + cache-miss input tokens) x input price + output tokens
(reasoning included) x output price; comparators get no cache discount (their list
price). Exact units; the percentage is a decimal string with two places (half-even).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from billing.catalog.model import PriceCatalog
from billing.cost import unit_price, units_to_usd_str
from billing.ledger.queries import UsageTotals, usage_totals


@dataclass(frozen=True, slots=True)
class ComparatorSavings:
    comparator_id: str
    name: str
    cost_units: int
    savings_units: int
    savings_pct: str  # of the comparator cost, e.g. "97.53"

    def to_json(self) -> dict[str, str]:
        return {
            "comparator": self.comparator_id,
            "name": self.name,
            "cost_usd": units_to_usd_str(self.cost_units),
            "savings_usd": units_to_usd_str(self.savings_units),
            "savings_pct": self.savings_pct,
        }


@dataclass(frozen=True, slots=True)
class SavingsReport:
    tenant_id: str
    start: dt.datetime
    end: dt.datetime
    totals: UsageTotals
    comparators: tuple[ComparatorSavings, ...]

    def to_json(self) -> dict[str, object]:
        t = self.totals
        return {
            "tenant_id": self.tenant_id,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "input_tokens": t.cache_hit_tokens + t.cache_miss_tokens,
            "output_tokens": t.output_tokens,
            "actual_cost_usd": units_to_usd_str(t.cost_total),
            "comparators": [c.to_json() for c in self.comparators],
        }


def savings_from_totals(
    catalog: PriceCatalog, tenant_id: str, start: dt.datetime, end: dt.datetime, totals: UsageTotals
) -> SavingsReport:
    rows = []
    input_tokens = totals.cache_hit_tokens + totals.cache_miss_tokens
    for c in catalog.comparators:
        cost = input_tokens * unit_price(c.input) + totals.output_tokens * unit_price(c.output)
        saved = cost - totals.cost_total
        pct = (
            (Decimal(saved) * 100 / Decimal(cost)).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
            if cost
            else Decimal(0)
        )
        rows.append(ComparatorSavings(c.id, c.name, cost, saved, format(pct, "f")))
    return SavingsReport(tenant_id, start, end, totals, tuple(rows))


async def savings_report(
    session: AsyncSession, catalog: PriceCatalog, tenant_id: str, start: dt.datetime, end: dt.datetime
) -> SavingsReport:
    totals = await usage_totals(session, tenant_id, start, end)
    return savings_from_totals(catalog, tenant_id, start, end, totals)
