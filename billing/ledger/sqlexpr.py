"""Dialect-specific SQL expressions for UTC hour/day truncation of UTCDateTime columns."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, literal_column, text
from sqlalchemy.sql.elements import ColumnElement


def hour_of(dialect: str, column: Any) -> ColumnElement[Any]:
    """The UTC hour containing `column`, as a value the UTCDateTime column type stores."""
    if dialect == "postgresql":
        return func.timezone("UTC", func.date_trunc("hour", func.timezone("UTC", column)))
    # SQLite stores UTCDateTime as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC.
    return func.strftime("%Y-%m-%d %H:00:00.000000", column)


def day_start_of(dialect: str, column: Any) -> ColumnElement[Any]:
    """00:00 UTC of the day containing `column`, as a value the UTCDateTime type stores."""
    if dialect == "postgresql":
        return func.timezone("UTC", func.date_trunc("day", func.timezone("UTC", column)))
    return func.strftime("%Y-%m-%d 00:00:00.000000", column)


def day_of(dialect: str, column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of `column` as 'YYYY-MM-DD' text on both dialects."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), literal_column("'YYYY-MM-DD'"))
    return func.substr(column, 1, 10)


__all__ = ["day_of", "day_start_of", "hour_of", "text"]
