"""Budgets: atomic worst-case reservations, settlement, release, reaping; config store."""

from billing.budgets.memory import MemoryBudgets
from billing.budgets.redis_backend import RedisBudgets
from billing.budgets.store import BudgetStore, spent_in_period
from billing.budgets.types import (
    Budget,
    BudgetAlert,
    BudgetBackend,
    BudgetMode,
    BudgetPeriod,
    BudgetScope,
    BudgetStatus,
    CounterNotSeededError,
    Reservation,
    SettleResult,
)

__all__ = [
    "Budget",
    "BudgetAlert",
    "BudgetBackend",
    "BudgetMode",
    "BudgetPeriod",
    "BudgetScope",
    "BudgetStatus",
    "BudgetStore",
    "CounterNotSeededError",
    "MemoryBudgets",
    "RedisBudgets",
    "Reservation",
    "SettleResult",
    "spent_in_period",
]
