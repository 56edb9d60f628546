"""Dialect helpers shared by the billing stores (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import Insert


def insert_ignore(dialect: str, table: Table, conflict_columns: Sequence[str]) -> Insert:
    """INSERT ... ON CONFLICT (cols) DO NOTHING for PostgreSQL and SQLite."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
    raise NotImplementedError(f"dialect {dialect} is not supported")


def dialect_of(conn: AsyncSession | AsyncConnection) -> str:
    bind: Any = conn.get_bind() if isinstance(conn, AsyncSession) else conn
    return str(bind.dialect.name)
