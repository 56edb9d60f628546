"""Budgets shared by every gateway replica, in Redis (one Redis address; not Cluster: the
reaper touches keys that the script cannot declare up front)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from redis.asyncio import Redis

from billing.budgets import lua
from billing.budgets.types import (
    Budget,
    BudgetAlert,
    BudgetMode,
    BudgetStatus,
    CounterNotSeededError,
    CounterRef,
    Reservation,
    SettleResult,
    crossed_thresholds,
    period_ttl_seconds,
)
from billing.db import utcnow
from billing.errors import BudgetExceededError, DuplicateReservationError
from billing.redis_client import make_redis

SETTLED_MARKER_TTL = 86400


class RedisBudgets:
    """require_seed: reserve and settle raise CounterNotSeededError for a counter that was
    never seeded from the ledger (`seed_spent`), so that a Redis that lost its data does not
    count a period's spend from zero. The gateway sets it; without it a missing counter
    starts at zero (and `seed_spent` fills it if nothing was settled on it yet)."""

    def __init__(self, redis: Redis, *, prefix: str = "gw:", require_seed: bool = False) -> None:
        self._r = redis
        self._p = prefix
        self._require_seed = "1" if require_seed else "0"
        self._reserve = redis.register_script(lua.RESERVE)
        self._settle = redis.register_script(lua.SETTLE)
        self._release = redis.register_script(lua.RELEASE)
        self._extend = redis.register_script(lua.EXTEND)
        self._reap = redis.register_script(lua.REAP)
        self._seed = redis.register_script(lua.SEED)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisBudgets:
        return cls(make_redis(url), **kwargs)

    async def close(self) -> None:
        await self._r.aclose()

    # keys
    def _ck(self, name: str) -> str:
        return f"{self._p}bud:{name}"

    def _rk(self, reservation_id: str) -> str:
        return f"{self._p}bres:{reservation_id}"

    @property
    def _leases(self) -> str:
        return f"{self._p}bres-leases"

    def _done(self, reservation_id: str) -> str:
        return f"{self._p}bres-done:{reservation_id}"

    async def reserve(
        self,
        reservation_id: str,
        budgets: list[Budget],
        amount_units: int,
        *,
        at: dt.datetime | None = None,
        lease_seconds: float = 600.0,
    ) -> Reservation:
        """Hold `amount_units` (the worst case) against every budget, or none of them.
        Raises BudgetExceededError naming the first hard budget that cannot cover it."""
        if amount_units < 0:
            raise ValueError("amount must be >= 0")
        at = at or utcnow()
        tenant = budgets[0].tenant_id if budgets else ""
        refs = tuple(CounterRef(b.counter_name(at), b) for b in budgets)
        args: list[Any] = [
            reservation_id,
            str(amount_units),
            int(lease_seconds * 1000),
            tenant,
            self._require_seed,
        ]
        for ref in refs:
            args += [str(ref.budget.limit_units), str(ref.budget.mode), period_ttl_seconds(ref.budget.period)]
        keys = [
            self._rk(reservation_id),
            self._leases,
            self._done(reservation_id),
            *(self._ck(r.name) for r in refs),
        ]
        result = await self._reserve(keys=keys, args=args)
        tag = _s(result[0])
        if tag == "used":
            raise DuplicateReservationError(f"reservation {reservation_id} was already settled")
        if tag == "seed":
            raise CounterNotSeededError(refs[int(_s(result[1])) - 1].budget)
        if tag == "deny":
            ref = refs[int(_s(result[1])) - 1]
            raise BudgetExceededError(
                scope=str(ref.budget.scope),
                scope_id=ref.budget.scope_id,
                period=ref.budget.period_key(at),
                limit_units=ref.budget.limit_units,
                spent_units=int(_s(result[2])),
                reserved_units=int(_s(result[3])),
                requested_units=amount_units,
            )
        return Reservation(reservation_id, tenant, amount_units, refs, int(_s(result[1])) / 1000)

    async def settle(self, reservation: Reservation, actual_units: int) -> SettleResult:
        """Replace the held amount by the actual cost (exactly once per reservation id).
        Charges the actual cost even if the reservation was reaped meanwhile."""
        if actual_units < 0:
            raise ValueError("actual cost must be >= 0")
        keys = [
            self._rk(reservation.id),
            self._leases,
            self._done(reservation.id),
            *(self._ck(r.name) for r in reservation.counters),
        ]
        args: list[Any] = [reservation.id, str(actual_units), SETTLED_MARKER_TTL, self._require_seed]
        result = await self._settle(keys=keys, args=args)
        if _s(result[0]) == "already":
            return SettleResult(0, already_settled=True)
        if _s(result[0]) == "seed":
            raise CounterNotSeededError(reservation.counters[int(_s(result[1])) - 1].budget)
        alerts: list[BudgetAlert] = []
        for i, ref in enumerate(reservation.counters):
            before, after = int(_s(result[1 + 2 * i])), int(_s(result[2 + 2 * i]))
            for t in crossed_thresholds(ref.budget, before, after):
                if await self._r.hsetnx(self._ck(ref.name), f"alert:{t}", "1"):
                    alerts.append(_alert(ref, t, after))
        return SettleResult(actual_units, False, tuple(alerts))

    async def release(self, reservation: Reservation) -> bool:
        """Return the held amount (error, cancel before any billable token). False if the
        reservation was already settled, released or reaped."""
        return bool(await self._release(keys=[self._rk(reservation.id), self._leases], args=[reservation.id]))

    async def extend(self, reservation: Reservation, lease_seconds: float = 600.0) -> bool:
        return bool(
            await self._extend(
                keys=[self._rk(reservation.id), self._leases],
                args=[reservation.id, int(lease_seconds * 1000)],
            )
        )

    async def reap(self, limit: int = 1000) -> int:
        """Release reservations whose lease expired (their request died with its replica)."""
        return int(await self._reap(keys=[self._leases], args=[self._rk(""), limit]))

    async def status(self, budget: Budget, at: dt.datetime | None = None) -> BudgetStatus:
        at = at or utcnow()
        spent, reserved = await self._r.hmget(self._ck(budget.counter_name(at)), ["spent", "reserved"])
        return BudgetStatus(budget, budget.period_key(at), int(spent or 0), int(reserved or 0))

    async def seed_spent(self, budget: Budget, spent_units: int, at: dt.datetime | None = None) -> bool:
        """Initialise a period's spent from the ledger if Redis has no counter (e.g. after a
        Redis restart without persistence) and mark the counter seeded. Returns True if it
        was set."""
        key = self._ck(budget.counter_name(at or utcnow()))
        ttl = period_ttl_seconds(budget.period)
        return bool(await self._seed(keys=[key], args=[str(spent_units), ttl]))

    async def in_flight(self) -> int:
        return int(await self._r.zcard(self._leases))

    async def purge_periods(self, at: dt.datetime | None = None) -> int:
        """Period counters expire by TTL in Redis; nothing to purge (kept for the interface)."""
        return 0

    async def reset_period(self, budget: Budget, at: dt.datetime | None = None) -> None:
        """Admin reset of the current period's spend (e.g. after a top-up)."""
        await self._r.hset(self._ck(budget.counter_name(at or utcnow())), "spent", "0")


def _alert(ref: CounterRef, threshold: int, spent: int) -> BudgetAlert:
    b = ref.budget
    return BudgetAlert(
        str(b.scope),
        b.scope_id,
        b.tenant_id,
        ref.name.rsplit(":", 1)[-1],
        threshold,
        spent,
        b.limit_units,
        str(b.mode),
    )


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["BudgetMode", "RedisBudgets"]
