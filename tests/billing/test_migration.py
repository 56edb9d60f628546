"""The billing migration upgrades and downgrades on SQLite (PostgreSQL: see conftest)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import inspect

from billing.db import make_engine
from gateway import migrate

BILLING_TABLES = {
    "price_versions",
    "price_promotions",
    "price_comparators",
    "usage_hourly",
    "usage_daily",
    "invoices",
    "budgets",
    "billing_job_state",
}


async def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    await engine.dispose()
    return names


def test_upgrade_downgrade_0002(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url, "0002_billing")
    assert asyncio.run(_tables(url)) >= BILLING_TABLES
    migrate.downgrade(url, "0001_initial")
    assert not BILLING_TABLES & asyncio.run(_tables(url))
    migrate.upgrade(url, "0002_billing")
    assert asyncio.run(_tables(url)) >= BILLING_TABLES
