"""Budget reservations that stay exact through a Redis outage or a Redis that lost its data.

The request path reserves (worst case), records its usage entry in the ledger, then settles
(actual cost). Redis counts `spent`; the ledger is the truth it is seeded from. Three things
can go wrong, and each is handled here:

- Redis restarted without persistence: every counter and reservation is gone. The backend
  (require_seed) refuses an unseeded counter, and the guard seeds it from the ledger before
  retrying. A request recorded but not yet settled when the seed reads the ledger would be
  counted twice (in the ledger's sum and again by its settle), so the seed subtracts exactly
  those of this process's pending entries that the ledger already holds.
- Redis does not answer: `fail_open=False` refuses the request (RedisUnavailableError, a
  503); `fail_open=True` serves it without a reservation (a detached one, amount 0) and
  settles its actual cost when Redis answers again.
- A settle fails (Redis down): it is kept and retried in the background until Redis takes
  it; settles are exactly-once by reservation id, so a retry of one that did land is a no-op.

With several replicas the subtraction only knows this process's pending entries: a restart
of Redis under load may then over- or under-count by what other replicas had in flight.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.budgets.store import recorded_attempts, spent_in_period
from billing.budgets.types import (
    Budget,
    BudgetBackend,
    BudgetScope,
    BudgetStatus,
    CounterNotSeededError,
    CounterRef,
    Reservation,
    SettleResult,
    period_start,
)
from billing.db import utcnow
from billing.ledger.entry import UsageEntry
from billing.redis_client import REDIS_OUTAGE, RedisUnavailableError

log = logging.getLogger(__name__)

_T = TypeVar("_T")

RETRY_INTERVAL_S = 1.0
STALE_OPEN_S = 3600.0  # reservations are leased for 600 s
MAX_OWED = 200_000  # settles kept for retry (about a minute of an outage at 3,000 rps)


@dataclass
class _Open:
    reservation: Reservation
    at: dt.datetime  # when it was reserved: names its counters' period
    entries: list[UsageEntry]  # recorded in the ledger, not yet counted by a settle
    owed: int | None = None  # the actual cost of a settle that failed, to retry


class BudgetGuard:
    def __init__(
        self,
        backend: BudgetBackend,
        sessions: async_sessionmaker[AsyncSession],
        flush_ledger: Callable[[], Awaitable[None]],
        *,
        fail_open: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self._sessions = sessions
        self._flush_ledger = flush_ledger
        self.fail_open = fail_open
        self._clock = clock
        self._open: dict[str, _Open] = {}
        self._seeded: set[str] = set()
        self._seeds = 0  # seeds done so far; _seeded_by: the count when each counter was seeded
        self._seeded_by: dict[str, int] = {}
        self._seed_lock = asyncio.Lock()
        self._down_since: float | None = None
        self._retrying: asyncio.Task[None] | None = None

    # -- the request path ---------------------------------------------------------------------

    async def reserve(
        self, reservation_id: str, budgets: list[Budget], amount_units: int, at: dt.datetime
    ) -> Reservation:
        """Hold the worst case against every budget (BudgetExceededError for a hard budget
        that cannot cover it). Redis down: RedisUnavailableError, or with fail_open a detached
        reservation that settles the actual cost later."""
        try:
            await self._first_use(budgets, at)
            reservation = await self._seeding_retry(
                lambda: self.backend.reserve(reservation_id, budgets, amount_units, at=at), at
            )
        except REDIS_OUTAGE as exc:
            self._went_down(exc)
            if not self.fail_open:
                raise RedisUnavailableError("Budgets") from exc
            refs = tuple(CounterRef(b.counter_name(at), b) for b in budgets)
            reservation = Reservation(reservation_id, budgets[0].tenant_id if budgets else "", 0, refs, 0.0)
        else:
            self._came_back()
        self._open[reservation_id] = _Open(reservation, at, [])
        if len(self._open) % 1024 == 0:
            self._prune(at)
        return reservation

    def _prune(self, now: dt.datetime) -> None:
        # A reservation whose request never settled nor released it (a path that forgot):
        # its lease expired long ago, so the reaper returned it; stop tracking it.
        cutoff = now - dt.timedelta(seconds=STALE_OPEN_S)
        for rid in [r for r, h in self._open.items() if h.owed is None and h.at < cutoff]:
            del self._open[rid]

    def recorded(self, entry: UsageEntry) -> None:
        """Note a usage entry handed to the ledger for a request that holds a reservation
        (call it before the writer takes the entry)."""
        held = self._open.get(entry.request_id)
        if held is not None:
            held.entries.append(entry)

    async def settle(self, reservation: Reservation, actual_units: int) -> SettleResult:
        """Charge the actual cost (exactly once). Redis down: kept and retried later."""
        if actual_units < 0:
            raise ValueError("actual cost must be >= 0")
        held = self._open.get(reservation.id) or _Open(reservation, utcnow(), [])
        self._open[reservation.id] = held
        try:
            result = await self._settle_now(held, actual_units)
        except REDIS_OUTAGE as exc:
            self._went_down(exc)
            self._owe(held, actual_units)
            return SettleResult(0)
        except Exception:
            # The ledger could not be read for a seed (database down; its driver may raise a
            # bare OSError): retried like an outage.
            log.warning("settling %s deferred: its budget counter could not be seeded", reservation.id)
            self._owe(held, actual_units)
            return SettleResult(0)
        self._came_back()
        self._open.pop(reservation.id, None)
        return result

    async def release(self, reservation: Reservation) -> bool:
        self._open.pop(reservation.id, None)
        try:
            return await self.backend.release(reservation)
        except REDIS_OUTAGE as exc:  # the lease reaper returns it (or Redis lost it anyway)
            self._went_down(exc)
            return False

    async def status(self, budget: Budget, at: dt.datetime) -> BudgetStatus:
        """Spent and reserved in the period containing `at`, seeding the counter first."""
        await self._first_use([budget], at)
        return await self.backend.status(budget, at)

    @property
    def seeds(self) -> int:
        """Counters seeded from the ledger so far by this process."""
        return self._seeds

    @property
    def owed(self) -> int:
        """Settles waiting for Redis."""
        return sum(h.owed is not None for h in self._open.values())

    async def retry_owed(self) -> int:
        """Retry every failed settle now; returns how many landed."""
        done = 0
        for rid, held in list(self._open.items()):
            if held.owed is None:
                continue
            try:
                await self._settle_now(held, held.owed)
            except REDIS_OUTAGE as exc:
                self._went_down(exc)
                break
            except Exception:
                log.warning("retrying a deferred settle failed; trying again later")
                break
            self._open.pop(rid, None)
            done += 1
        if done:
            self._came_back()
            log.info("%d deferred budget settles applied", done)
        return done

    # -- seeding ------------------------------------------------------------------------------

    async def _settle_now(self, held: _Open, actual: int) -> SettleResult:
        return await self._seeding_retry(lambda: self.backend.settle(held.reservation, actual), held.at)

    async def _seeding_retry(self, call: Callable[[], Awaitable[_T]], at: dt.datetime) -> _T:
        for _ in range(8):  # each round seeds one more counter of the request
            tried_at = self._seeds
            try:
                return await call()
            except CounterNotSeededError as e:
                await self._seed(e.budget, at, force=True, refused_at=tried_at)
        return await call()

    async def _first_use(self, budgets: list[Budget], at: dt.datetime) -> None:
        # A counter this process has not used in this period starts from the ledger, so a
        # restart of the gateway (or of a Redis without persistence) forgets nothing spent.
        for budget in budgets:
            if budget.counter_name(at) not in self._seeded:
                await self._seed(budget, at, force=False)

    async def _seed(self, budget: Budget, at: dt.datetime, *, force: bool, refused_at: int = -1) -> None:
        name = budget.counter_name(at)
        async with self._seed_lock:
            if not force and name in self._seeded:
                return
            if force and self._seeded_by.get(name, -1) > refused_at:
                return  # seeded since the refusal (the requests in flight after a restart)
            # Records accepted before now must be in the ledger's sum (they may have been
            # settled on the Redis that was lost).
            await self._flush_ledger()
            pending = [e for h in self._open.values() for e in h.entries if _counts_toward(e, budget, at)]
            async with self._sessions() as session:
                spent = await spent_in_period(session, budget, at)
                stored = await recorded_attempts(session, sorted({e.request_id for e in pending}))
            # Pending entries the sum holds are counted again by their settle: take them out.
            twice = sum(e.cost_total or 0 for e in pending if (e.request_id, e.attempt) in stored)
            if await self.backend.seed_spent(budget, spent - twice, at):
                log.info("budget counter %s seeded from the ledger", name)
            self._seeded.add(name)
            self._seeds += 1
            self._seeded_by[name] = self._seeds

    # -- outage bookkeeping -------------------------------------------------------------------

    def _owe(self, held: _Open, actual: int) -> None:
        if held.owed is None and self.owed >= MAX_OWED:
            log.error("too many deferred settles; dropping one (the ledger still has its usage)")
            self._open.pop(held.reservation.id, None)
            return
        held.owed = actual
        if self._retrying is None:
            self._retrying = asyncio.create_task(self._retry_until_done(), name="budget-settle-retry")

    async def _retry_until_done(self) -> None:
        try:
            while self.owed:
                await asyncio.sleep(RETRY_INTERVAL_S)
                try:
                    await self.retry_owed()
                except Exception:  # never let the retry loop die with settles still owed
                    log.exception("retrying deferred settles failed")
        finally:
            self._retrying = None

    def _went_down(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = self._clock()
            log.warning(
                "Redis does not answer (%s): budgets %s",
                type(exc).__name__,
                "fail open" if self.fail_open else "refuse",
            )

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.warning("Redis answers again after %.1f s", self._clock() - self._down_since)
            self._down_since = None

    async def stop(self) -> None:
        """Stop retrying (what is still owed is in the ledger; a restart seeds from it)."""
        task, self._retrying = self._retrying, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _counts_toward(entry: UsageEntry, budget: Budget, at: dt.datetime) -> bool:
    owner = entry.tenant_id if budget.scope is BudgetScope.TENANT else entry.api_key_id
    if owner != budget.scope_id:
        return False
    start = period_start(budget.period, at)
    return start is None or entry.started_at >= start
