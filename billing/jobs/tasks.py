"""Billing's periodic task functions. Each is a plain async function of a JobContext, so
the Celery app (billing.jobs.celery_app) and the in-process scheduler (embedded mode,
billing.jobs.scheduler) run exactly the same code. Each returns a small JSON-able dict."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.budgets.types import BudgetBackend
from billing.db import utcnow
from billing.ledger.invoices import generate_monthly_invoices, previous_month
from billing.ledger.rollup import run_rollup


@dataclass
class JobContext:
    sessions: async_sessionmaker[AsyncSession]
    budgets: BudgetBackend | None = None
    clock: Callable[[], dt.datetime] = field(default=utcnow)


async def hourly_rollup(ctx: JobContext) -> dict[str, Any]:
    """Rebuild the usage_hourly rows of every hour touched since the last run."""
    r = await run_rollup(ctx.sessions, ctx.clock())
    return {"hours_rebuilt": r.hours_rebuilt, "rows_written": r.rows_written}


async def monthly_invoices(
    ctx: JobContext, month: str | None = None, finalize: bool = True
) -> dict[str, Any]:
    """Invoice every tenant with usage in `month` ('YYYY-MM'; default: the previous month)."""
    m = dt.date.fromisoformat(f"{month}-01") if month else previous_month(ctx.clock())
    docs = await generate_monthly_invoices(ctx.sessions, m, finalize=finalize)
    return {
        "month": m.strftime("%Y-%m"),
        "invoices": len(docs),
        "total_cents": sum(d.total_cents for d in docs),
    }


async def budget_period_reset(ctx: JobContext) -> dict[str, Any]:
    """Start new budget periods: counters are keyed by period (a new day or month starts
    from zero by construction); this drops the state of finished periods."""
    if ctx.budgets is None:
        return {"purged": 0}
    purge = getattr(ctx.budgets, "purge_periods", None)
    return {"purged": int(await purge(ctx.clock())) if purge else 0}


async def reap_reservations(ctx: JobContext) -> dict[str, Any]:
    """Return budget reservations whose request died (lease expired)."""
    if ctx.budgets is None:
        return {"reaped": 0}
    return {"reaped": await ctx.budgets.reap()}


TaskFn = Callable[..., Awaitable[dict[str, Any]]]

TASKS: dict[str, TaskFn] = {
    "billing.hourly_rollup": hourly_rollup,
    "billing.monthly_invoices": monthly_invoices,
    "billing.budget_period_reset": budget_period_reset,
    "billing.reap_reservations": reap_reservations,
}


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    task: str
    every_seconds: float | None = None  # fixed interval
    monthly_day: int | None = None  # or: once a month on this day ...
    monthly_hour: int = 0  # ... at or after this UTC hour


DEFAULT_SCHEDULE: tuple[ScheduleEntry, ...] = (
    ScheduleEntry("billing.reap_reservations", every_seconds=30),
    ScheduleEntry("billing.hourly_rollup", every_seconds=300),  # keeps the current hour fresh
    ScheduleEntry("billing.budget_period_reset", every_seconds=3600),
    ScheduleEntry("billing.monthly_invoices", monthly_day=1, monthly_hour=2),
)
