"""Read side of the ledger: a tenant's usage by day and line item, totals, CSV.

All queries read the rollups through their primary key prefix: usage_daily (tenant, day)
for whole days of all keys, usage_hourly (tenant, hour) for one key or partial days. A
month costs at most a few thousand index-ordered rows whatever the size of
usage_records.

Figures are exact up to the last settled request, not only up to the last rollup run: the
hours that hold records ingested since the rollup's last run (less its overlap, the same
rule the rollup uses to pick the hours it rebuilds) are read from usage_records instead
(their rollup rows are subtracted and their raw records added). That is a few hours of
one tenant's records, found through the ingestion-time index. Before the rollup ever ran,
every figure is read from usage_records.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, literal_column, null, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from billing.cost import units_to_usd_str
from billing.ledger.models import BillingJobState, UsageDaily, UsageHourly
from billing.ledger.rollup import HOUR, OVERLAP, STATE_KEY
from billing.ledger.sqlexpr import day_of, hour_of
from billing.models import UsageRecord
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


def _raw_sums() -> list[Any]:
    """The rollup's sums, computed from usage_records (same order as _SUM_NAMES)."""
    r = UsageRecord
    return [
        func.count(),
        func.sum(r.prompt_cache_hit_tokens),
        func.sum(r.prompt_cache_miss_tokens),
        func.sum(r.completion_tokens),
        func.sum(r.reasoning_tokens),
        func.sum(r.cost_cache_hit),
        func.sum(r.cost_cache_miss),
        func.sum(r.cost_output),
        func.sum(r.cost_total),
    ]


# A group: (UTC day 'YYYY-MM-DD' or '' when not by day, variant, mode) -> the nine sums.
Groups = dict[tuple[str, str, str], list[int]]


def _add(groups: Groups, rows: Any, sign: int = 1) -> None:
    for row in rows:
        key = (str(row[0]) if row[0] is not None else "", str(row[1]), str(row[2]))
        sums = groups.setdefault(key, [0] * len(_SUM_NAMES))
        for i, v in enumerate(row[3:]):
            sums[i] += sign * int(v or 0)


def _hour_value(value: object) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)


def _hour_ranges(hours: list[dt.datetime]) -> list[tuple[dt.datetime, dt.datetime]]:
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for h in sorted(hours):
        if out and out[-1][1] == h:
            out[-1] = (out[-1][0], h + HOUR)
        else:
            out.append((h, h + HOUR))
    return out


def _in_ranges(column: Any, ranges: list[tuple[dt.datetime, dt.datetime]]) -> Any:
    return or_(*(and_(column >= a, column < b) for a, b in ranges))


async def unrolled_hours(
    session: AsyncSession, tenant_id: str, start: dt.datetime, end: dt.datetime
) -> list[dt.datetime] | None:
    """The UTC hours in [start, end) whose rollup rows may miss some of the tenant's
    records: those holding records ingested since the rollup's last run less its overlap.
    None when the rollup never ran (then nothing in it can be trusted to be complete)."""
    state = await session.get(BillingJobState, STATE_KEY)
    if state is None:
        return None
    since = dt.datetime.fromisoformat(state.value["last_started"]) - OVERLAP
    r = UsageRecord
    hour = hour_of(dialect_of(session), r.started_at)
    q = (
        select(hour)
        .where(r.ingested_at >= since, r.tenant_id == tenant_id, r.started_at >= start, r.started_at < end)
        .distinct()
    )
    hours = {_hour_value(v) for v in (await session.scalars(q)).all()}
    # An hour belongs to the range as its rollup row does: by its start (bounds that are not
    # whole hours never mix a partial hour of records with whole rollup hours).
    return sorted(h for h in hours if start <= h < end)


def _raw_select(
    dialect: str,
    tenant_id: str,
    ranges: list[tuple[dt.datetime, dt.datetime]],
    api_key_id: str | None,
    by_day: bool,
    sign: int = 1,
) -> Select[Any]:
    r = UsageRecord
    day = [day_of(dialect, r.started_at)] if by_day else []
    q = (
        select(literal_column(str(sign)), *(day or [null()]), r.variant, r.mode, *_raw_sums())
        .where(r.tenant_id == tenant_id, _in_ranges(r.started_at, ranges), r.cost_total.is_not(None))
        .group_by(*day, r.variant, r.mode)
    )
    if api_key_id is not None:
        q = q.where(r.api_key_id == api_key_id)
    return q


def _rollup_select(
    dialect: str,
    tenant_id: str,
    table: type[UsageDaily] | type[UsageHourly],
    when: Any,
    ranges: list[tuple[dt.datetime, dt.datetime]],
    api_key_id: str | None,
    by_day: bool,
    sign: int = 1,
) -> Select[Any]:
    day = [day_of(dialect, when)] if by_day else []
    q = (
        select(literal_column(str(sign)), *(day or [null()]), table.variant, table.mode, *_sums(table))
        .where(table.tenant_id == tenant_id, _in_ranges(when, ranges))
        .group_by(*day, table.variant, table.mode)
    )
    if api_key_id is not None:
        q = q.where(UsageHourly.api_key_id == api_key_id)
    return q


async def _groups(
    session: AsyncSession,
    tenant_id: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    api_key_id: str | None,
    by_day: bool,
    include_fresh: bool,
) -> Groups:
    """Exact sums per (day, variant, mode) in [start, end): the rollup, with the hours it
    may not hold completely yet replaced by their raw records (see the module docstring).
    One statement: rollup rows (+), the stale hours' rollup rows (-), their records (+)."""
    dialect = dialect_of(session)
    stale = await unrolled_hours(session, tenant_id, start, end) if include_fresh else []
    if stale is None:  # the rollup never ran: everything from the records
        parts = [_raw_select(dialect, tenant_id, [(start, end)], api_key_id, by_day)]
    else:
        table, when = _source(start, end, api_key_id)
        parts = [_rollup_select(dialect, tenant_id, table, when, [(start, end)], api_key_id, by_day)]
        if stale:
            ranges = _hour_ranges(stale)
            hourly, hour = UsageHourly, UsageHourly.hour
            parts.append(_rollup_select(dialect, tenant_id, hourly, hour, ranges, api_key_id, by_day, -1))
            parts.append(_raw_select(dialect, tenant_id, ranges, api_key_id, by_day))
    statement = parts[0] if len(parts) == 1 else union_all(*parts)
    groups: Groups = {}
    for row in (await session.execute(statement)).all():
        _add(groups, [tuple(row[1:])], int(row[0]))
    return {k: v for k, v in groups.items() if any(v)}


async def usage_by_day(
    session: AsyncSession,
    tenant_id: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    api_key_id: str | None = None,
    include_fresh: bool = True,
) -> list[UsageDay]:
    """Usage and exact cost per UTC day, variant and mode in [start, end) (optionally of
    one key). Whole-day ranges of all keys read usage_daily (<= 31 x 6 rows a month).
    `include_fresh=False` reads the rollup alone (as fresh as its last run)."""
    groups = await _groups(
        session, tenant_id, start, end, api_key_id=api_key_id, by_day=True, include_fresh=include_fresh
    )
    return [
        UsageDay(dt.date.fromisoformat(day), variant, mode, _totals(tuple(groups[(day, variant, mode)])))
        for day, variant, mode in sorted(groups)
    ]


async def usage_by_variant_mode(
    session: AsyncSession, tenant_id: str, start: dt.datetime, end: dt.datetime
) -> dict[tuple[str, str], UsageTotals]:
    groups = await _groups(session, tenant_id, start, end, api_key_id=None, by_day=False, include_fresh=True)
    return {(variant, mode): _totals(tuple(sums)) for (_, variant, mode), sums in groups.items()}


async def usage_totals(
    session: AsyncSession, tenant_id: str, start: dt.datetime, end: dt.datetime
) -> UsageTotals:
    groups = await _groups(session, tenant_id, start, end, api_key_id=None, by_day=False, include_fresh=True)
    return _totals(tuple(sum(col) for col in zip(*groups.values(), strict=True)) if groups else ())


async def tenants_with_usage(session: AsyncSession, start: dt.datetime, end: dt.datetime) -> list[str]:
    """Tenants with usage in [start, end): in the rollup, or in records it may not hold yet."""
    table, when = _source(start, end)
    q = select(table.tenant_id).where(when >= start, when < end).distinct()
    tenants = set((await session.scalars(q)).all())
    state = await session.get(BillingJobState, STATE_KEY)
    r = UsageRecord
    fresh = select(r.tenant_id).where(r.started_at >= start, r.started_at < end).distinct()
    if state is not None:
        fresh = fresh.where(r.ingested_at >= dt.datetime.fromisoformat(state.value["last_started"]) - OVERLAP)
    tenants.update((await session.scalars(fresh)).all())
    return sorted(tenants)


def usage_csv(days: list[UsageDay]) -> str:
    """CSV export: one row per day, variant, mode and token class; exact USD amounts."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["date", "variant", "mode", "token_class", "tokens", "cost_usd"])
    for d in days:
        for tc, n, u in d.totals.line_items():
            w.writerow([d.day.isoformat(), d.variant, d.mode, str(tc), n, units_to_usd_str(u)])
    return out.getvalue()
