"""Shared fixtures: migrated databases (SQLite always, PostgreSQL when configured) and Redis."""

from __future__ import annotations

import asyncio
import os
import uuid

# Triton kernels (kernels/) run on the CPU through Triton's interpreter; it is read when a
# kernel module is imported, so it is set before any test module imports one.
os.environ.setdefault("TRITON_INTERPRET", "1")
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing.db import make_engine, make_sessionmaker
from gateway import migrate

POSTGRES_URL = os.environ.get("GATEWAY_TEST_DATABASE_URL")
# The audit key of every app a test starts against the shared PostgreSQL database: an app's
# retention loop signs an anchor checkpoint at start, and the audit tests verify the whole
# chain with this key (one key per database, as in a deployment)
AUDIT_KEY = "test-audit-key-0123456789abcdef"
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL")

DB_PARAMS = [pytest.param("sqlite", id="sqlite")]
if POSTGRES_URL:
    DB_PARAMS.append(pytest.param("postgres", id="postgres", marks=pytest.mark.postgres))


async def _reset_postgres(url: str) -> None:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A freshly migrated PostgreSQL database, shared by the session's tests."""
    if not POSTGRES_URL:
        pytest.skip("GATEWAY_TEST_DATABASE_URL is not set")
    asyncio.run(_reset_postgres(POSTGRES_URL))
    migrate.upgrade(POSTGRES_URL)
    yield POSTGRES_URL


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(params=DB_PARAMS)
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated database URL: SQLite per test, and PostgreSQL (shared) when configured.

    PostgreSQL is shared across tests, so tests must create their own uniquely named rows.
    """
    name = "postgres_url" if request.param == "postgres" else "sqlite_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(db_engine)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for names in shared databases."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def redis_url() -> str:
    if not REDIS_URL:
        pytest.skip("GATEWAY_TEST_REDIS_URL is not set")
    return REDIS_URL
