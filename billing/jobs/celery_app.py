"""The Celery app for billing's periodic work (Redis broker, beat schedule).

    celery -A billing.jobs.celery_app worker -B --loglevel=INFO

reads GATEWAY_DATABASE_URL and GATEWAY_REDIS_URL (the broker; also the budgets store).
Nothing happens at import time: the module-level `app` is created on first access.
Each task runs the async task function of billing.jobs.tasks in a fresh event loop, with
an engine and a Redis client that live for that one task.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from celery import Celery
from celery.schedules import crontab

from billing.budgets.redis_backend import RedisBudgets
from billing.db import make_engine, make_sessionmaker
from billing.jobs.tasks import DEFAULT_SCHEDULE, TASKS, JobContext


def create_celery_app(
    *,
    broker_url: str,
    database_url: str,
    redis_url: str | None = None,
    result_backend: str | None = None,
    budget_prefix: str = "gw:",
    queue: str = "billing",
) -> Celery:
    app = Celery("billing", broker=broker_url, backend=result_backend)
    app.conf.update(
        task_default_queue=queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,  # every task is idempotent; a crash means a rerun
        worker_prefetch_multiplier=1,
        timezone="UTC",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        beat_schedule=_beat_schedule(),
    )
    settings = {"database_url": database_url, "redis_url": redis_url or broker_url, "prefix": budget_prefix}

    for name in TASKS:

        def _make(task_name: str) -> Any:
            def run(**kwargs: Any) -> dict[str, Any]:
                return asyncio.run(_run(task_name, settings, kwargs))

            run.__name__ = task_name.rsplit(".", 1)[-1]
            # shared=False: another app in the same process (tests) must not pick up this
            # app's tasks, which carry its own settings
            return app.task(name=task_name, shared=False)(run)

        _make(name)
    return app


async def _run(task_name: str, settings: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    engine = make_engine(settings["database_url"])
    budgets = RedisBudgets.from_url(settings["redis_url"], prefix=settings["prefix"])
    try:
        ctx = JobContext(make_sessionmaker(engine), budgets)
        return await TASKS[task_name](ctx, **kwargs)
    finally:
        await budgets.close()
        await engine.dispose()


def _beat_schedule() -> dict[str, dict[str, Any]]:
    schedule: dict[str, dict[str, Any]] = {}
    for entry in DEFAULT_SCHEDULE:
        if entry.every_seconds is not None:
            when: Any = entry.every_seconds
        else:
            when = crontab(minute=0, hour=entry.monthly_hour, day_of_month=entry.monthly_day or 1)
        schedule[entry.task] = {"task": entry.task, "schedule": when}
    return schedule


def app_from_env() -> Celery:
    redis_url = os.environ.get("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379/0")
    database_url = os.environ.get("GATEWAY_DATABASE_URL", "sqlite+aiosqlite:///var/gateway.db")
    return create_celery_app(
        broker_url=redis_url,
        database_url=database_url,
        redis_url=redis_url,
        result_backend=os.environ.get("GATEWAY_CELERY_RESULT_BACKEND"),
    )


_app: Celery | None = None


def __getattr__(name: str) -> Any:  # lazy `app` for the celery CLI (-A billing.jobs.celery_app)
    global _app
    if name in ("app", "celery"):
        if _app is None:
            _app = app_from_env()
        return _app
    raise AttributeError(name)
