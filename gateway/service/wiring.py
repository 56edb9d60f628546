"""Builds the billing and policy services the request path needs, from settings."""

from __future__ import annotations

from contextlib import AsyncExitStack

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.budgets.memory import MemoryBudgets
from billing.budgets.redis_backend import RedisBudgets
from billing.budgets.store import BudgetStore
from billing.budgets.types import BudgetBackend
from billing.catalog.store import CatalogStore
from billing.jobs import JobContext, JobScheduler
from billing.ledger.spool import UsageSpool
from billing.ledger.writer import UsageWriter
from billing.ratelimit import MemoryRateLimiter, RedisRateLimiter
from gateway.service.metering import Metering, RateLimiter
from gateway.settings import Settings


async def start_metering(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], stack: AsyncExitStack
) -> Metering:
    """Metering with Redis-backed budgets when GATEWAY_REDIS_URL is set, else in-process."""
    budgets: BudgetBackend
    limiter: RateLimiter
    fail_open = settings.redis_failure == "open"
    if settings.redis_url:
        # require_seed: a Redis that lost its data is re-seeded from the ledger before it counts.
        redis_budgets = RedisBudgets.from_url(settings.redis_url, require_seed=True)
        stack.push_async_callback(redis_budgets.close)
        budgets = redis_budgets
        redis_limiter = RedisRateLimiter.from_url(settings.redis_url, fail_open=fail_open)
        stack.push_async_callback(redis_limiter.close)
        limiter = redis_limiter
    else:
        budgets = MemoryBudgets()
        limiter = MemoryRateLimiter()
    metering = Metering(
        sessions=sessions,
        catalog_store=CatalogStore(sessions),
        budget_store=BudgetStore(sessions),
        budgets=budgets,
        writer=UsageWriter(sessions, UsageSpool(settings.data_dir / "spool")),
        limiter=limiter,
        redis_fail_open=fail_open,
        stale_if_error_s=settings.stale_if_error_s,
    )
    await metering.start()
    stack.push_async_callback(metering.stop)
    if runs_jobs_in_process(settings):
        scheduler = JobScheduler(JobContext(sessions=sessions, budgets=budgets))
        await scheduler.start()
        stack.push_async_callback(scheduler.stop)
    return metering


def runs_jobs_in_process(settings: Settings) -> bool:
    """Embedded mode runs billing's periodic jobs in the event loop; with Redis, the Celery
    worker and beat run them (GATEWAY_JOBS=inprocess|celery|auto)."""
    if settings.jobs == "auto":
        return not settings.redis_url
    return settings.jobs == "inprocess"
