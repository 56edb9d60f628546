"""The hourly rollup: usage_records summed into usage_hourly (per key) and usage_daily
(per tenant), rebuilt hour by hour (and the days containing those hours).

Rebuilding an hour deletes its rollup rows and re-aggregates the hour's records, so it is
idempotent and also correct for records that arrive late (spool replays): `run_rollup`
rebuilds every hour touched by records *ingested* since its previous run (with an overlap
for transactions that committed late). On PostgreSQL concurrent runs are serialized with
an advisory lock; only priced records (cost_total not null) are counted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, and_, delete, func, insert, literal, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import transaction, utcnow
from billing.ledger.models import BillingJobState, UsageDaily, UsageHourly
from billing.ledger.sqlexpr import day_start_of, hour_of
from billing.models import UsageRecord
from billing.sql import dialect_of

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
_SUM_COLUMNS = (
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
STATE_KEY = "rollup"
OVERLAP = dt.timedelta(minutes=5)
MAX_HOURS_PER_TRANSACTION = 24
_LOCK_ID = 0x6269_6C6C  # "bill"


@dataclass(frozen=True, slots=True)
class RollupResult:
    hours_rebuilt: int
    rows_written: int
    since: dt.datetime | None
    ran_at: dt.datetime


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


def floor_hour(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


async def rollup_range(session: AsyncSession, start: dt.datetime, end: dt.datetime) -> int:
    """Rebuild usage_hourly for the hours in [floor(start), end) inside `session`'s
    transaction; returns the number of rollup rows written."""
    start = floor_hour(start)
    dialect = dialect_of(session)
    r, h = _table(UsageRecord).c, _table(UsageHourly)
    await session.execute(delete(h).where(and_(h.c.hour >= start, h.c.hour < end)))
    key = func.coalesce(r.api_key_id, literal(""))
    hour = hour_of(dialect, r.started_at)
    agg = (
        select(
            r.tenant_id,
            hour.label("hour"),
            key.label("api_key_id"),
            r.variant,
            r.mode,
            func.count().label("requests"),
            func.sum(r.prompt_cache_hit_tokens),
            func.sum(r.prompt_cache_miss_tokens),
            func.sum(r.completion_tokens),
            func.sum(r.reasoning_tokens),
            func.sum(r.cost_cache_hit),
            func.sum(r.cost_cache_miss),
            func.sum(r.cost_output),
            func.sum(r.cost_total),
        )
        .where(r.started_at >= start, r.started_at < end, r.cost_total.is_not(None))
        .group_by(r.tenant_id, hour, key, r.variant, r.mode)
    )
    columns = [
        "tenant_id",
        "hour",
        "api_key_id",
        "variant",
        "mode",
        "requests",
        "cache_hit_tokens",
        "cache_miss_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cost_cache_hit",
        "cost_cache_miss",
        "cost_output",
        "cost_total",
    ]
    result = await session.execute(insert(h).from_select(columns, agg))
    await _rebuild_days(session, start, end)
    return max(result.rowcount or 0, 0)  # type: ignore[attr-defined]


async def _rebuild_days(session: AsyncSession, start: dt.datetime, end: dt.datetime) -> None:
    """Rebuild usage_daily for every day overlapping [start, end) from usage_hourly."""
    dialect = dialect_of(session)
    first = start.replace(hour=0)
    last = floor_hour(end - dt.timedelta(microseconds=1)).replace(hour=0) + DAY
    h, d = _table(UsageHourly).c, _table(UsageDaily)
    await session.execute(delete(d).where(and_(d.c.day >= first, d.c.day < last)))
    day = day_start_of(dialect, h.hour)
    agg = (
        select(h.tenant_id, day.label("day"), h.variant, h.mode, *(func.sum(h[c]) for c in _SUM_COLUMNS))
        .where(h.hour >= first, h.hour < last)
        .group_by(h.tenant_id, day, h.variant, h.mode)
    )
    await session.execute(insert(d).from_select(["tenant_id", "day", "variant", "mode", *_SUM_COLUMNS], agg))


async def rollup_hours(
    sessions: async_sessionmaker[AsyncSession], hours: Iterable[dt.datetime]
) -> tuple[int, int]:
    """Rebuild the given hours, contiguous runs together (at most a day per transaction).
    Returns (hours rebuilt, rows written)."""
    ordered = sorted({floor_hour(h) for h in hours})
    rows = 0
    for start, end in _ranges(ordered):
        async with transaction(sessions) as session:
            await _lock(session)
            rows += await rollup_range(session, start, end)
    return len(ordered), rows


async def rollup_period(
    sessions: async_sessionmaker[AsyncSession], start: dt.datetime, end: dt.datetime
) -> int:
    """Rebuild every hour in [start, end) (e.g. a whole month before invoicing)."""
    hours = []
    at = floor_hour(start)
    while at < end:
        hours.append(at)
        at += HOUR
    return (await rollup_hours(sessions, hours))[1]


async def run_rollup(
    sessions: async_sessionmaker[AsyncSession], now: dt.datetime | None = None
) -> RollupResult:
    """The periodic job: rebuild the hours touched by records ingested since the last run."""
    now = now or utcnow()
    async with transaction(sessions) as session:
        state = await session.get(BillingJobState, STATE_KEY)
        since = dt.datetime.fromisoformat(state.value["last_started"]) - OVERLAP if state else None
        dialect = dialect_of(session)
        r = _table(UsageRecord).c
        q = select(hour_of(dialect, r.started_at)).distinct()
        if since is not None:
            q = q.where(r.ingested_at >= since)
        hours = [_parse_hour(v) for v in (await session.scalars(q)).all()]
    rebuilt, rows = await rollup_hours(sessions, hours)
    async with transaction(sessions) as session:
        state = await session.get(BillingJobState, STATE_KEY)
        value = {"last_started": now.isoformat(), "hours_rebuilt": rebuilt}
        if state is None:
            session.add(BillingJobState(name=STATE_KEY, value=value, updated_at=utcnow()))
        else:
            state.value, state.updated_at = value, utcnow()
    return RollupResult(rebuilt, rows, since, now)


def _parse_hour(value: object) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)


def _ranges(hours: list[dt.datetime]) -> list[tuple[dt.datetime, dt.datetime]]:
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for h in hours:
        if out and out[-1][1] == h and (h - out[-1][0]) < HOUR * MAX_HOURS_PER_TRANSACTION:
            out[-1] = (out[-1][0], h + HOUR)
        else:
            out.append((h, h + HOUR))
    return out


async def _lock(session: AsyncSession) -> None:
    if dialect_of(session) == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
