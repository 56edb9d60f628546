"""Budget configuration in the database, and the ledger's spend for a budget's period.

The gateway caches `budgets_for(tenant, key)` and passes the list to `reserve`; a change
returns an audit event dict. `spent_in_period` reads the ledger so that a counter lost
with Redis can be re-seeded (`BudgetBackend.seed_spent`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.budgets.models import BudgetRow
from billing.budgets.types import (
    DEFAULT_THRESHOLDS,
    Budget,
    BudgetMode,
    BudgetPeriod,
    BudgetScope,
    period_start,
)
from billing.cost import units_to_usd_str, usd_to_units
from billing.db import transaction, utcnow
from billing.models import UsageRecord


def _budget(row: BudgetRow) -> Budget:
    return Budget(
        BudgetScope(row.scope),
        row.scope_id,
        row.tenant_id,
        row.limit_units,
        BudgetPeriod(row.period),
        BudgetMode(row.mode),
        tuple(row.alert_thresholds),
    )


class BudgetStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def set_budget(
        self,
        *,
        scope: BudgetScope | str,
        scope_id: str,
        tenant_id: str,
        limit_usd: Decimal | str | None = None,
        limit_units: int | None = None,
        period: BudgetPeriod | str = BudgetPeriod.MONTH,
        mode: BudgetMode | str = BudgetMode.HARD,
        alert_thresholds: Sequence[int] = DEFAULT_THRESHOLDS,
        actor: str,
    ) -> tuple[Budget, dict[str, Any]]:
        """Create or replace the budget of a tenant or key (`--budget-usd 100` ->
        limit_usd=Decimal("100")). Returns the budget and its audit event."""
        if (limit_usd is None) == (limit_units is None):
            raise ValueError("give exactly one of limit_usd and limit_units")
        units = usd_to_units(limit_usd) if limit_usd is not None else int(limit_units or 0)
        budget = Budget(
            BudgetScope(scope),
            scope_id,
            tenant_id,
            units,
            BudgetPeriod(period),
            BudgetMode(mode),
            tuple(sorted(set(alert_thresholds))),
        )
        async with transaction(self._sessions) as session:
            row = (
                await session.scalars(
                    select(BudgetRow)
                    .where(BudgetRow.scope == str(budget.scope), BudgetRow.scope_id == scope_id)
                    .with_for_update()
                )
            ).one_or_none()
            if row is None:
                row = BudgetRow(scope=str(budget.scope), scope_id=scope_id)
                session.add(row)
            row.tenant_id, row.limit_units = tenant_id, units
            row.period, row.mode = str(budget.period), str(budget.mode)
            row.alert_thresholds, row.updated_at = list(budget.alert_thresholds), utcnow()
        event = {
            "kind": "billing.budget.set",
            "actor": actor,
            "tenant_id": tenant_id,
            "payload": {
                "scope": str(budget.scope),
                "scope_id": scope_id,
                "limit_usd": units_to_usd_str(units),
                "period": str(budget.period),
                "mode": str(budget.mode),
                "alert_thresholds": list(budget.alert_thresholds),
            },
        }
        return budget, event

    async def remove_budget(
        self, scope: BudgetScope | str, scope_id: str, *, actor: str
    ) -> dict[str, Any] | None:
        async with transaction(self._sessions) as session:
            row = (
                await session.scalars(
                    select(BudgetRow).where(BudgetRow.scope == str(scope), BudgetRow.scope_id == scope_id)
                )
            ).one_or_none()
            if row is None:
                return None
            tenant_id = row.tenant_id
            await session.execute(delete(BudgetRow).where(BudgetRow.id == row.id))
        return {
            "kind": "billing.budget.removed",
            "actor": actor,
            "tenant_id": tenant_id,
            "payload": {"scope": str(scope), "scope_id": scope_id},
        }

    async def get(self, scope: BudgetScope | str, scope_id: str) -> Budget | None:
        async with self._sessions() as session:
            row = (
                await session.scalars(
                    select(BudgetRow).where(BudgetRow.scope == str(scope), BudgetRow.scope_id == scope_id)
                )
            ).one_or_none()
            return _budget(row) if row else None

    async def of_tenant(self, tenant_id: str) -> list[Budget]:
        """Every budget of a tenant (read-only): its own first, then its keys' by key id."""
        async with self._sessions() as session:
            rows = (await session.scalars(select(BudgetRow).where(BudgetRow.tenant_id == tenant_id))).all()
        return sorted((_budget(r) for r in rows), key=lambda b: (b.scope != BudgetScope.TENANT, b.scope_id))

    async def budgets_for(self, tenant_id: str, api_key_id: str | None) -> list[Budget]:
        """The budgets a request must reserve against: the tenant's, then the key's."""
        conds = [(BudgetRow.scope == "tenant") & (BudgetRow.scope_id == tenant_id)]
        if api_key_id:
            conds.append((BudgetRow.scope == "key") & (BudgetRow.scope_id == api_key_id))
        async with self._sessions() as session:
            rows = (await session.scalars(select(BudgetRow).where(or_(*conds)))).all()
        return sorted((_budget(r) for r in rows), key=lambda b: b.scope != BudgetScope.TENANT)


async def spent_in_period(session: AsyncSession, budget: Budget, at: dt.datetime) -> int:
    """Exact units spent in the budget's period containing `at`, from usage_records."""
    col = UsageRecord.tenant_id if budget.scope is BudgetScope.TENANT else UsageRecord.api_key_id
    q = select(func.coalesce(func.sum(UsageRecord.cost_total), 0)).where(col == budget.scope_id)
    start = period_start(budget.period, at)
    if start is not None:
        q = q.where(UsageRecord.started_at >= start)
    return int(await session.scalar(q) or 0)


async def recorded_attempts(session: AsyncSession, request_ids: Sequence[str]) -> set[tuple[str, int]]:
    """The (request_id, attempt) pairs of these requests that are in usage_records."""
    if not request_ids:
        return set()
    rows = await session.execute(
        select(UsageRecord.request_id, UsageRecord.attempt).where(
            UsageRecord.request_id.in_(list(request_ids))
        )
    )
    return {(r[0], int(r[1])) for r in rows}
