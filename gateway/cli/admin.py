"""`gateway admin ...`: operator keys for the admin API and console."""

from __future__ import annotations

import click

from gateway.audit.log import append_event
from gateway.auth.admin import create_admin_key, revoke_admin_key
from gateway.auth.keys import load_or_create_pepper
from gateway.cli.common import db_transaction, emit_json, load_settings, run_async


@click.group()
def admin() -> None:
    """Manage operator (admin) keys."""


@admin.group("key")
def admin_key() -> None:
    """Admin keys."""


@admin_key.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help='Print {"key": ..., "name": ...}.')
def create(name: str, as_json: bool) -> None:
    """Create an admin key and print its secret once."""
    settings = load_settings()
    pepper = load_or_create_pepper(settings.key_pepper, settings.data_dir)

    async def go() -> tuple[str, str]:
        async with db_transaction(settings) as session:
            row, secret = await create_admin_key(session, name, pepper)
            await append_event(
                session,
                kind="admin_key.created",
                actor="cli",
                payload={"name": name, "prefix": row.display_prefix},
            )
            return row.id, secret

    key_id, secret = run_async(go)
    if as_json:
        emit_json({"id": key_id, "name": name, "key": secret})
    else:
        click.echo(f"admin key {name} ({key_id}); it is shown only once:\n{secret}")


@admin_key.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke an admin key by name."""
    settings = load_settings()

    async def go() -> None:
        async with db_transaction(settings) as session:
            await revoke_admin_key(session, name)
            await append_event(session, kind="admin_key.revoked", actor="cli", payload={"name": name})

    run_async(go)
    click.echo(f"revoked admin key {name}")
