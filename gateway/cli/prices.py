"""`gateway prices ...`: the versioned price catalog (import, export)."""

from __future__ import annotations

from pathlib import Path

import click

from billing.catalog.io import dumps_catalog, loads_document, parse_catalog
from billing.catalog.store import CatalogStore
from billing.db import make_engine, make_sessionmaker
from billing.errors import BillingError
from gateway.cli.common import load_settings, run_async
from gateway.service.recording import record_billing_events


@click.group()
def prices() -> None:
    """Manage the price catalog."""


@prices.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(file: Path) -> None:
    """Import versions, promotions and comparators from a JSON or YAML FILE."""
    settings = load_settings()
    try:
        document = loads_document(file.read_text())  # decimals stay exact (no YAML floats)
        parse_catalog(document)  # validate before touching the database
    except (BillingError, ValueError) as exc:
        raise click.ClickException(f"{file}: {exc}") from None

    async def go() -> int:
        engine = make_engine(settings.resolved_database_url)
        try:
            sessions = make_sessionmaker(engine)
            change = await CatalogStore(sessions).import_document(document, actor="cli")
            await record_billing_events(sessions, [change.event])
            return len(change.catalog.versions)
        finally:
            await engine.dispose()

    try:
        versions = run_async(go)
    except BillingError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"imported {file}; the catalog has {versions} price versions")


@prices.command("export")
@click.option("--format", "fmt", type=click.Choice(["json", "yaml"]), default="json", show_default=True)
def export(fmt: str) -> None:
    """Print the whole catalog (the seed is stored on first use)."""
    settings = load_settings()

    async def go() -> str:
        engine = make_engine(settings.resolved_database_url)
        try:
            catalog = await CatalogStore(make_sessionmaker(engine)).load()
            return dumps_catalog(catalog, fmt)
        finally:
            await engine.dispose()

    click.echo(run_async(go))


import_.name = "import"
