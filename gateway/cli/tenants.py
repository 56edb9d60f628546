"""`gateway tenant ...`: tenants."""

from __future__ import annotations

import click

from gateway.audit.log import append_event
from gateway.auth import service as auth
from gateway.cli.common import db_transaction, emit_json, load_settings, run_async


@click.group()
def tenant() -> None:
    """Manage tenants."""


@tenant.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create(name: str, as_json: bool) -> None:
    """Create a tenant."""
    settings = load_settings()

    async def go() -> dict[str, str]:
        async with db_transaction(settings) as session:
            row = await auth.create_tenant(session, name)
            await append_event(
                session, kind="tenant.created", actor="cli", tenant_id=row.id, payload={"name": row.name}
            )
            return {"id": row.id, "name": row.name}

    created = run_async(go)
    if as_json:
        emit_json(created)
    else:
        click.echo(f"created tenant {created['name']} ({created['id']})")
