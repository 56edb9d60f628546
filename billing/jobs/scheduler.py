"""The in-process job scheduler for embedded mode (no Celery): the same task functions on
the same schedule, in the gateway's event loop. One task runs at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from billing.jobs.tasks import DEFAULT_SCHEDULE, TASKS, JobContext, ScheduleEntry

log = logging.getLogger(__name__)


class JobScheduler:
    def __init__(
        self,
        ctx: JobContext,
        schedule: Sequence[ScheduleEntry] = DEFAULT_SCHEDULE,
        *,
        tick_seconds: float = 1.0,
    ) -> None:
        self.ctx = ctx
        self.schedule = tuple(schedule)
        self.tick_seconds = tick_seconds
        self._last: dict[str, float] = {}
        self._last_month: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self.results: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="billing-jobs")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_due(self, monotonic_now: float | None = None) -> list[str]:
        """Run every entry that is due now; returns the task names run."""
        now = time.monotonic() if monotonic_now is None else monotonic_now
        wall = self.ctx.clock()
        ran = []
        for entry in self.schedule:
            if entry.every_seconds is not None:
                last = self._last.get(entry.task)
                if last is not None and now - last < entry.every_seconds:
                    continue
                self._last[entry.task] = now
            else:
                month = wall.strftime("%Y-%m")
                if (
                    wall.day < (entry.monthly_day or 1)
                    or wall.hour < entry.monthly_hour
                    or self._last_month.get(entry.task) == month
                ):
                    continue
                self._last_month[entry.task] = month
            await self.run(entry.task)
            ran.append(entry.task)
        return ran

    async def run(self, name: str, **kwargs: Any) -> dict[str, Any]:
        try:
            result = await TASKS[name](self.ctx, **kwargs)
        except Exception as exc:  # a failing job must not stop the others
            log.exception("billing job %s failed", name)
            result = {"error": repr(exc)}
        self.results[name] = result
        return result

    async def _loop(self) -> None:
        while True:
            await self.run_due()
            await asyncio.sleep(self.tick_seconds)
