"""Read side of the ledger: a tenant's usage by day and line item, totals, CSV.

All queries read the rollups through their primary key prefix: usage_daily (tenant, day)
for whole days of all keys, usage_hourly (tenant, hour) for one key or partial days. A
month costs at most a few thousand index-ordered rows whatever the size of
usage_records. Figures are as fresh as the last rollup run.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.cost import units_to_usd_str
from billing.ledger.models import UsageDaily, UsageHourly
from billing.ledger.sqlexpr import day_of
from billing.sql import dialect_of
from billing.types import TokenClass


@dataclass(frozen=True, slots=True)
class UsageTotals:
    requests: int = 0
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_cache_hit: int = 0
    cost_cache_miss: int = 0
    cost_output: int = 0
    cost_total: int = 0

    def line_items(self) -> list[tuple[TokenClass, int, int]]:
        """(token class, tokens, exact cost units); reasoning is inside OUTPUT."""
        return [
            (TokenClass.CACHE_HIT, self.cache_hit_tokens, self.cost_cache_hit),
            (TokenClass.CACHE_MISS, self.cache_miss_tokens, self.cost_cache_miss),
            (TokenClass.OUTPUT, self.output_tokens, self.cost_output),
        ]


@dataclass(frozen=True, slots=True)
class UsageDay:
    day: dt.date
    variant: str
    mode: str
    totals: UsageTotals

    def to_json(self) -> dict[str, object]:
        """The `GET /v1/usage` item shape (money as exact decimal strings)."""
        t = self.totals
        return {
            "date": self.day.isoformat(),
            "variant": self.variant,
            "mode": self.mode,
            "requests": t.requests,
            "reasoning_tokens": t.reasoning_tokens,
            "line_items": [
                {"token_class": str(tc), "tokens": n, "cost_usd": units_to_usd_str(u)}
                for tc, n, u in t.line_items()
            ],
            "cost_usd": units_to_usd_str(t.cost_total),
        }


_SUM_NAMES = (
    "requests",
    "cache_hit_tokens",
    "cache_miss_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_cache_hit",
    "cost_cache_miss",
    "cost_output",
    "cost_total",
)


def _totals(values: tuple[object, ...]) -> UsageTotals:
    return UsageTotals(*(int(v or 0) for v in values))  # type: ignore[call-overload]


def _is_midnight(at: dt.datetime) -> bool:
    return at.astimezone(dt.UTC).time() == dt.time(0)


def _source(
    start: dt.datetime, end: dt.datetime, api_key_id: str | None = None
) -> tuple[type[UsageDaily] | type[UsageHourly], Any]:
    """usage_daily for whole UTC days of all keys, usage_hourly otherwise."""
    if api_key_id is None and _is_midnight(start) and _is_midnight(end):
        return UsageDaily, UsageDaily.day
    return UsageHourly, UsageHourly.hour


def _sums(table: type[UsageDaily] | type[UsageHourly]) -> list[Any]:
    return [func.sum(getattr(table, c)) for c in _SUM_NAMES]


async def usage_by_day(
    session: AsyncSession,
    tenant_id: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    api_key_id: str | None = None,
) -> list[UsageDay]:
    """Usage and exact cost per UTC day, variant and mode in [start, end) (optionally of
    one key). Whole-day ranges of all keys read usage_daily (<= 31 x 6 rows a month)."""
    table, when = _source(start, end, api_key_id)
    day = day_of(dialect_of(session), when)
    q = (
        select(day.label("day"), table.variant, table.mode, *_sums(table))
        .where(table.tenant_id == tenant_id, when >= start, when < end)
        .group_by(day, table.variant, table.mode)
        .order_by(day, table.variant, table.mode)
    )
    if api_key_id is not None:
        q = q.where(UsageHourly.api_key_id == api_key_id)
    rows = (await session.execute(q)).all()
    return [UsageDay(dt.date.fromisoformat(str(r[0])), r[1], r[2], _totals(tuple(r[3:]))) for r in rows]


async def usage_by_variant_mode(
    session: AsyncSession, tenant_id: str, start: dt.datetime, end: dt.datetime
) -> dict[tuple[str, str], UsageTotals]:
    table, when = _source(start, end)
    q = (
        select(table.variant, table.mode, *_sums(table))
        .where(table.tenant_id == tenant_id, when >= start, when < end)
        .group_by(table.variant, table.mode)
    )
    return {(r[0], r[1]): _totals(tuple(r[2:])) for r in (await session.execute(q)).all()}


async def usage_totals(
    session: AsyncSession, tenant_id: str, start: dt.datetime, end: dt.datetime
) -> UsageTotals:
    table, when = _source(start, end)
    q = select(*_sums(table)).where(table.tenant_id == tenant_id, when >= start, when < end)
    return _totals(tuple((await session.execute(q)).one()))


async def tenants_with_usage(session: AsyncSession, start: dt.datetime, end: dt.datetime) -> list[str]:
    table, when = _source(start, end)
    q = select(table.tenant_id).where(when >= start, when < end).distinct()
    return sorted((await session.scalars(q)).all())


def usage_csv(days: list[UsageDay]) -> str:
    """CSV export: one row per day, variant, mode and token class; exact USD amounts."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["date", "variant", "mode", "token_class", "tokens", "cost_usd"])
    for d in days:
        for tc, n, u in d.totals.line_items():
            w.writerow([d.day.isoformat(), d.variant, d.mode, str(tc), n, units_to_usd_str(u)])
    return out.getvalue()
