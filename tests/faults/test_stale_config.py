"""While the database does not answer, the request path's configuration keeps its last
values: the price catalog (Metering.quotes_at) and a tenant's budgets; past the stale limit,
or with a limit of 0, the outage surfaces (as a 503 at the edge)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.budgets.memory import MemoryBudgets
from billing.budgets.store import BudgetStore
from billing.catalog.store import CatalogStore
from billing.db import make_engine, make_sessionmaker
from billing.ledger.spool import UsageSpool
from billing.ledger.writer import UsageWriter
from billing.ratelimit import MemoryRateLimiter
from gateway.errors import is_database_outage
from gateway.service.metering import Metering
from tests.billing.conftest import create_tenant
from tests.e2e.server import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("stale_s", [60.0, 0.0])
async def test_prices_and_budgets_survive_a_database_outage(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, unique: str, stale_s: float
) -> None:
    tenant_id, key_id = await create_tenant(sessions, f"stale-{unique}")
    await BudgetStore(sessions).set_budget(
        scope="tenant", scope_id=tenant_id, tenant_id=tenant_id, limit_usd="5", actor="test"
    )
    dead = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/gone")  # nothing listens
    clock = Clock()
    metering = Metering(
        sessions=sessions,
        catalog_store=CatalogStore(sessions),
        budget_store=BudgetStore(sessions),
        budgets=MemoryBudgets(),
        writer=UsageWriter(sessions, UsageSpool(tmp_path / "spool")),
        limiter=MemoryRateLimiter(),
        stale_if_error_s=stale_s,
        clock=clock,
    )
    await metering.start()
    try:
        at = dt.datetime.now(dt.UTC)
        quotes = await metering.quotes_at(at)
        budgets = await metering.budgets_for(tenant_id, key_id)
        # The database goes away: both stores now read through an engine that cannot connect.
        metering.catalog_store = CatalogStore(make_sessionmaker(dead))
        metering.budget_store = BudgetStore(make_sessionmaker(dead))
        clock.now += 31  # past the catalog's 30 s and the budgets' 2 s
        assert await metering.quotes_at(at) == quotes  # prices never go stale: versions start later
        if stale_s:
            assert await metering.budgets_for(tenant_id, key_id) == budgets
            clock.now += stale_s
        with pytest.raises(Exception) as raised:
            await metering.budgets_for(tenant_id, key_id)
        assert is_database_outage(raised.value)
    finally:
        await metering.stop()
        await dead.dispose()
