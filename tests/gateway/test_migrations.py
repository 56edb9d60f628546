"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from billing.db import make_engine
from gateway import migrate
from gateway.db_models import metadata


async def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": False}), metadata
                )
            )
    finally:
        await engine.dispose()


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    assert await _diff(database_url) == []


def test_single_head_and_full_round_trip(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    heads = migrate.current_heads(url)
    assert len(heads) == 1, f"the migrations must have one head, not {heads}"
    migrate.upgrade(url)
    migrate.downgrade(url, "base")
    migrate.upgrade(url)
    assert asyncio.run(_diff(url)) == []
