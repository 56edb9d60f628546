"""Budget vocabulary shared by the Redis and in-process implementations.

Amounts are integer units of 1e-12 USD. A budget counts `spent` (settled actual cost) and
`reserved` (worst-case cost of requests in flight) per period; a *hard* budget admits a
request only if spent + reserved + worst case <= limit, so concurrent requests can never
overspend it; a *soft* budget admits everything and only raises alerts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class BudgetPeriod(StrEnum):
    DAY = "day"
    MONTH = "month"
    NONE = "none"


class BudgetMode(StrEnum):
    HARD = "hard"
    SOFT = "soft"


class BudgetScope(StrEnum):
    TENANT = "tenant"
    KEY = "key"


DEFAULT_THRESHOLDS: tuple[int, ...] = (50, 80, 100)


@dataclass(frozen=True, slots=True)
class Budget:
    scope: BudgetScope
    scope_id: str  # tenant id or API key id
    tenant_id: str
    limit_units: int
    period: BudgetPeriod = BudgetPeriod.MONTH
    mode: BudgetMode = BudgetMode.HARD
    alert_thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS  # percent of the limit

    def __post_init__(self) -> None:
        if self.limit_units < 0:
            raise ValueError("a budget limit cannot be negative")
        if any(not 0 < t <= 1000 for t in self.alert_thresholds):
            raise ValueError("alert thresholds are percents in (0, 1000]")

    def period_key(self, at: dt.datetime) -> str:
        return period_key(self.period, at)

    def counter_name(self, at: dt.datetime) -> str:
        return f"{self.scope}:{self.scope_id}:{self.period_key(at)}"


def period_key(period: BudgetPeriod, at: dt.datetime) -> str:
    at = at.astimezone(dt.UTC)
    if period is BudgetPeriod.DAY:
        return at.strftime("d%Y-%m-%d")
    if period is BudgetPeriod.MONTH:
        return at.strftime("m%Y-%m")
    return "all"


def period_start(period: BudgetPeriod, at: dt.datetime) -> dt.datetime | None:
    at = at.astimezone(dt.UTC)
    if period is BudgetPeriod.DAY:
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is BudgetPeriod.MONTH:
        return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


def period_ttl_seconds(period: BudgetPeriod) -> int:
    """How long a period's counters are kept after their last use (0: forever)."""
    return {BudgetPeriod.DAY: 3 * 86400, BudgetPeriod.MONTH: 70 * 86400}.get(period, 0)


@dataclass(frozen=True, slots=True)
class CounterRef:
    name: str  # e.g. "tenant:ten_x:m2026-11"
    budget: Budget


@dataclass(frozen=True, slots=True)
class Reservation:
    """A worst-case amount held against one or more budget counters until settled,
    released or reaped. Keep it for the request's lifetime; it is plain data."""

    id: str
    tenant_id: str
    amount_units: int
    counters: tuple[CounterRef, ...]
    lease_expires_at: float  # epoch seconds (Redis server clock for the Redis backend)


class CounterNotSeededError(Exception):
    """A backend that requires seeding met a counter whose period's spend was never taken
    from the ledger (e.g. Redis restarted without persistence): seed it, then retry."""

    def __init__(self, budget: Budget) -> None:
        super().__init__(f"budget counter of {budget.scope} {budget.scope_id} is not seeded")
        self.budget = budget


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    scope: str
    scope_id: str
    tenant_id: str
    period: str  # the period key, e.g. m2026-11
    threshold_pct: int
    spent_units: int
    limit_units: int
    mode: str

    def to_event(self) -> dict[str, object]:
        """An audit/notification event for the gateway to record."""
        return {
            "kind": "billing.budget.threshold_crossed",
            "actor": "billing",
            "tenant_id": self.tenant_id,
            "payload": {
                "scope": self.scope,
                "scope_id": self.scope_id,
                "period": self.period,
                "threshold_pct": self.threshold_pct,
                "spent_units": self.spent_units,
                "limit_units": self.limit_units,
                "mode": self.mode,
            },
        }


@dataclass(frozen=True, slots=True)
class SettleResult:
    charged_units: int
    already_settled: bool = False
    alerts: tuple[BudgetAlert, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    budget: Budget
    period: str
    spent_units: int
    reserved_units: int

    @property
    def remaining_units(self) -> int:
        return max(self.budget.limit_units - self.spent_units - self.reserved_units, 0)


class BudgetBackend(Protocol):
    """Implemented by RedisBudgets (shared by replicas) and MemoryBudgets (one process)."""

    async def reserve(
        self,
        reservation_id: str,
        budgets: list[Budget],
        amount_units: int,
        *,
        at: dt.datetime | None = None,
        lease_seconds: float = 600.0,
    ) -> Reservation: ...

    async def settle(self, reservation: Reservation, actual_units: int) -> SettleResult: ...

    async def release(self, reservation: Reservation) -> bool: ...

    async def extend(self, reservation: Reservation, lease_seconds: float = 600.0) -> bool: ...

    async def reap(self, limit: int = 1000) -> int: ...

    async def status(self, budget: Budget, at: dt.datetime | None = None) -> BudgetStatus: ...

    async def seed_spent(self, budget: Budget, spent_units: int, at: dt.datetime | None = None) -> bool: ...

    async def in_flight(self) -> int: ...


def crossed_thresholds(budget: Budget, before: int, after: int) -> list[int]:
    """Thresholds t with before < t% of limit <= after (exact integer arithmetic)."""
    if budget.limit_units <= 0:
        return [t for t in budget.alert_thresholds if after > before] if after > 0 else []
    return [t for t in budget.alert_thresholds if before * 100 < t * budget.limit_units <= after * 100]
