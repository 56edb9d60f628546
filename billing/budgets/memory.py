"""Budgets for embedded mode (one process, no Redis): the same semantics as RedisBudgets.

Every operation runs under one asyncio.Lock and never awaits inside it, so a reserve is
atomic with respect to every other coroutine on the loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from billing.budgets.types import (
    Budget,
    BudgetAlert,
    BudgetMode,
    BudgetPeriod,
    BudgetStatus,
    CounterRef,
    Reservation,
    SettleResult,
    crossed_thresholds,
    period_key,
    period_ttl_seconds,
)
from billing.db import utcnow
from billing.errors import BudgetExceededError, DuplicateReservationError

SETTLED_MARKER_TTL = 86400.0


@dataclass
class _Counter:
    spent: int = 0
    reserved: int = 0
    alerted: set[int] = field(default_factory=set)
    touched: float = 0.0


@dataclass
class _Held:
    amount: int
    counters: tuple[str, ...]
    expires: float


class MemoryBudgets:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = asyncio.Lock()
        self._counters: dict[str, _Counter] = {}
        self._held: dict[str, _Held] = {}
        self._settled: dict[str, float] = {}

    async def reserve(
        self,
        reservation_id: str,
        budgets: list[Budget],
        amount_units: int,
        *,
        at: dt.datetime | None = None,
        lease_seconds: float = 600.0,
    ) -> Reservation:
        if amount_units < 0:
            raise ValueError("amount must be >= 0")
        at = at or utcnow()
        tenant = budgets[0].tenant_id if budgets else ""
        refs = tuple(CounterRef(b.counter_name(at), b) for b in budgets)
        async with self._lock:
            now = self._clock()
            held = self._held.get(reservation_id)
            if held is not None:
                return Reservation(reservation_id, tenant, amount_units, refs, held.expires)
            if reservation_id in self._settled:
                raise DuplicateReservationError(f"reservation {reservation_id} was already settled")
            for ref in refs:
                c = self._counters.get(ref.name) or _Counter()
                b = ref.budget
                if b.mode is BudgetMode.HARD and c.spent + c.reserved + amount_units > b.limit_units:
                    raise BudgetExceededError(
                        scope=str(b.scope),
                        scope_id=b.scope_id,
                        period=b.period_key(at),
                        limit_units=b.limit_units,
                        spent_units=c.spent,
                        reserved_units=c.reserved,
                        requested_units=amount_units,
                    )
            for ref in refs:
                c = self._counters.setdefault(ref.name, _Counter())
                c.reserved += amount_units
                c.touched = now
            expires = now + lease_seconds
            self._held[reservation_id] = _Held(amount_units, tuple(r.name for r in refs), expires)
        return Reservation(reservation_id, tenant, amount_units, refs, expires)

    async def settle(self, reservation: Reservation, actual_units: int) -> SettleResult:
        if actual_units < 0:
            raise ValueError("actual cost must be >= 0")
        async with self._lock:
            now = self._clock()
            if reservation.id in self._settled:
                return SettleResult(0, already_settled=True)
            held = self._held.pop(reservation.id, None)
            alerts: list[BudgetAlert] = []
            for ref in reservation.counters:
                c = self._counters.setdefault(ref.name, _Counter())
                if held is not None:
                    c.reserved = max(c.reserved - held.amount, 0)
                before = c.spent
                c.spent += actual_units
                c.touched = now
                for t in crossed_thresholds(ref.budget, before, c.spent):
                    if t not in c.alerted:
                        c.alerted.add(t)
                        b = ref.budget
                        alerts.append(
                            BudgetAlert(
                                str(b.scope),
                                b.scope_id,
                                b.tenant_id,
                                ref.name.rsplit(":", 1)[-1],
                                t,
                                c.spent,
                                b.limit_units,
                                str(b.mode),
                            )
                        )
            self._settled[reservation.id] = now + SETTLED_MARKER_TTL
        return SettleResult(actual_units, False, tuple(alerts))

    async def release(self, reservation: Reservation) -> bool:
        async with self._lock:
            return self._unhold(reservation.id)

    async def extend(self, reservation: Reservation, lease_seconds: float = 600.0) -> bool:
        async with self._lock:
            held = self._held.get(reservation.id)
            if held is None:
                return False
            held.expires = self._clock() + lease_seconds
            return True

    async def reap(self, limit: int = 1000) -> int:
        async with self._lock:
            now = self._clock()
            expired = [rid for rid, h in self._held.items() if h.expires <= now][:limit]
            for rid in expired:
                self._unhold(rid)
            for rid in [r for r, until in self._settled.items() if until <= now]:
                del self._settled[rid]
            return len(expired)

    async def status(self, budget: Budget, at: dt.datetime | None = None) -> BudgetStatus:
        at = at or utcnow()
        async with self._lock:
            c = self._counters.get(budget.counter_name(at)) or _Counter()
            return BudgetStatus(budget, budget.period_key(at), c.spent, c.reserved)

    async def seed_spent(self, budget: Budget, spent_units: int, at: dt.datetime | None = None) -> bool:
        async with self._lock:
            name = budget.counter_name(at or utcnow())
            if name in self._counters:
                return False
            self._counters[name] = _Counter(spent=spent_units, touched=self._clock())
            return True

    async def in_flight(self) -> int:
        async with self._lock:
            return len(self._held)

    async def reset_period(self, budget: Budget, at: dt.datetime | None = None) -> None:
        async with self._lock:
            c = self._counters.setdefault(budget.counter_name(at or utcnow()), _Counter())
            c.spent = 0
            c.alerted.clear()

    async def purge_periods(self, at: dt.datetime | None = None) -> int:
        """Budget period reset: drop counters of past periods that nothing touched for
        their retention time (Redis expires them by TTL instead). Current periods stay."""
        at = at or utcnow()
        async with self._lock:
            now = self._clock()
            drop = []
            for name, c in self._counters.items():
                if c.reserved:
                    continue
                pkey = name.rsplit(":", 1)[-1]
                period = {"d": "day", "m": "month"}.get(pkey[0])
                if period is None:
                    continue
                bp = BudgetPeriod(period)
                if pkey != period_key(bp, at) and now - c.touched >= period_ttl_seconds(bp):
                    drop.append(name)
            for name in drop:
                del self._counters[name]
            return len(drop)

    def _unhold(self, reservation_id: str) -> bool:
        held = self._held.pop(reservation_id, None)
        if held is None:
            return False
        for name in held.counters:
            c = self._counters.get(name)
            if c is not None:
                c.reserved = max(c.reserved - held.amount, 0)
        return True
