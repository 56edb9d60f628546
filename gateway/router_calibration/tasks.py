"""The Celery job that refits tenants' router calibrations (daily, and on demand).

``refit(sessions, tenant_id=None)`` is the task body: one tenant, or every tenant with
request events in the window; tenants with too few cascaded requests are skipped and
counted, not failed. Each tenant commits on its own, so one failure does not undo others.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from celery import Celery
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import make_engine, make_sessionmaker, transaction
from gateway.errors import InvalidRequestError
from gateway.router_calibration import service

TASK_NAME = "gateway.router_calibration_refit"
EVERY_SECONDS = 24 * 3600.0
WINDOW_DAYS = 30.0


async def refit(
    sessions: async_sessionmaker[AsyncSession],
    *,
    tenant_id: str | None = None,
    window_days: float = WINDOW_DAYS,
    min_observations: int | None = None,
) -> dict[str, Any]:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=window_days)
    if tenant_id is None:
        async with transaction(sessions) as session:
            tenants = await service.tenants_with_cascades(session, since=since)
    else:
        tenants = [tenant_id]
    fitted: dict[str, int] = {}
    skipped: dict[str, str] = {}
    kwargs: dict[str, Any] = {} if min_observations is None else {"min_observations": min_observations}
    for tid in tenants:
        try:
            async with transaction(sessions) as session:
                stored = await service.fit_tenant(
                    session, tid, actor="job:router_calibration", since=since, **kwargs
                )
            fitted[tid] = stored.version
        except InvalidRequestError as exc:
            skipped[tid] = exc.message
    return {"fitted": fitted, "skipped": skipped}


def register(app: Celery, database_url: str) -> None:
    """Add the task and its daily beat entry to the worker's Celery app."""

    def run(**kwargs: Any) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            engine = make_engine(database_url)
            try:
                return await refit(make_sessionmaker(engine), **kwargs)
            finally:
                await engine.dispose()

        return asyncio.run(go())

    run.__name__ = "router_calibration_refit"
    app.task(name=TASK_NAME, shared=False)(run)
    app.conf.beat_schedule = {
        **(app.conf.beat_schedule or {}),
        TASK_NAME: {"task": TASK_NAME, "schedule": EVERY_SECONDS},
    }
