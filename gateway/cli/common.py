"""Helpers shared by the CLI commands: settings, a database session, error reporting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncSession

from billing.db import make_engine, make_sessionmaker
from gateway.errors import GatewayError
from gateway.settings import Settings

T = TypeVar("T")


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None


@asynccontextmanager
async def db_transaction(settings: Settings) -> AsyncIterator[AsyncSession]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            yield session
    finally:
        await engine.dispose()


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine; domain errors become a one-line message and exit status 1."""
    try:
        return asyncio.run(factory())
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, sort_keys=True, default=str))
