"""Budgets of a tenant or of one of its API keys: set or clear, with the audit event.

One path for the CLI (`gateway tenant budget`, `gateway key budget`) and the admin API
(`PUT /admin/tenants/{name}/budget`, `PUT/DELETE /admin/keys/{key_id}/budget`): the budget
store writes the row, and its `billing.budget.set` / `billing.budget.removed` event goes to
the audit log with the caller as actor. A gateway process caches a request's budgets for a
few seconds (`Metering.forget_budgets` drops its own copy at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.budgets.store import BudgetStore
from billing.budgets.types import DEFAULT_THRESHOLDS, BudgetScope
from gateway.service.recording import record_billing_events


async def set_budget(
    store: BudgetStore,
    sessions: async_sessionmaker[AsyncSession],
    *,
    scope: BudgetScope | str,
    scope_id: str,
    tenant_id: str,
    limit_usd: Decimal,
    period: str,
    mode: str,
    alert_thresholds: Sequence[int] = DEFAULT_THRESHOLDS,
    actor: str,
) -> dict[str, Any]:
    """Create or replace the budget of a tenant (scope_id = tenant id) or of a key
    (scope_id = key id); amounts in USD, exact to 1e-12. Returns the audited payload."""
    _, event = await store.set_budget(
        scope=scope,
        scope_id=scope_id,
        tenant_id=tenant_id,
        limit_usd=limit_usd,
        period=period,
        mode=mode,
        alert_thresholds=alert_thresholds,
        actor=actor,
    )
    await record_billing_events(sessions, [event])
    return dict(event["payload"])


async def clear_budget(
    store: BudgetStore,
    sessions: async_sessionmaker[AsyncSession],
    *,
    scope: BudgetScope | str,
    scope_id: str,
    actor: str,
) -> bool:
    """Remove a budget (audited); False when there was none (nothing is recorded)."""
    event = await store.remove_budget(scope, scope_id, actor=actor)
    if event is None:
        return False
    await record_billing_events(sessions, [event])
    return True
