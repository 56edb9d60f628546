"""`gateway key ...`: tenant API keys. Secrets are printed once and never stored."""

from __future__ import annotations

import datetime as dt

import click
from sqlalchemy.ext.asyncio import AsyncSession

from billing.db import utcnow
from gateway.audit.log import append_event
from gateway.auth import service as auth
from gateway.auth.keys import load_or_create_pepper
from gateway.cli import limits
from gateway.cli.common import db_transaction, emit_json, load_settings, run_async


@click.group()
def key() -> None:
    """Manage API keys."""


@key.command("create")
@click.option("--tenant", "tenant_name", required=True, help="Tenant name.")
@click.option("--name", default="", help="A label for the key.")
@click.option("--expires-in-days", type=click.IntRange(min=1), default=None, help="Expiry.")
@limits.rpm
@limits.tpm
@click.option("--json", "as_json", is_flag=True, help='Print {"key": ..., "tenant": ...}.')
def create(
    tenant_name: str, name: str, expires_in_days: int | None, rpm: int | None, tpm: int | None, as_json: bool
) -> None:
    """Create a key and print its secret once."""
    settings = load_settings()
    pepper = load_or_create_pepper(settings.key_pepper, settings.data_dir)
    expires = utcnow() + dt.timedelta(days=expires_in_days) if expires_in_days else None

    async def go() -> auth.IssuedKey:
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            issued = await auth.create_key(
                session,
                tenant,
                pepper,
                name=name,
                expires_at=expires,
                requests_per_minute=rpm or None,
                tokens_per_minute=tpm or None,
            )
            await append_event(
                session,
                kind="key.created",
                actor="cli",
                tenant_id=tenant.id,
                payload={"key_id": issued.id, "prefix": issued.display_prefix, "expires_at": expires},
            )
            return issued

    issued = run_async(go)
    if as_json:
        emit_json({"key": issued.secret, "tenant": issued.tenant_name, "id": issued.id})
        return
    click.echo(f"API key for tenant {issued.tenant_name} (id {issued.id}); it is shown only once:")
    click.echo(issued.secret)


@key.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key by id; requests with it get 401 from then on."""
    settings = load_settings()

    async def go() -> None:
        async with db_transaction(settings) as session:
            row = await auth.revoke_key(session, key_id)
            await append_event(
                session, kind="key.revoked", actor="cli", tenant_id=row.tenant_id, payload={"key_id": key_id}
            )

    run_async(go)
    click.echo(f"revoked {key_id}")


@key.command("list")
@click.option("--tenant", "tenant_name", required=True, help="Tenant name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(tenant_name: str, as_json: bool) -> None:
    """List a tenant's keys (prefixes only; secrets are never stored)."""
    settings = load_settings()

    async def go() -> list[dict[str, object]]:
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            return [
                {
                    "id": k.id,
                    "name": k.name,
                    "prefix": k.display_prefix,
                    "created_at": k.created_at,
                    "expires_at": k.expires_at,
                    "revoked_at": k.revoked_at,
                    "last_used_at": k.last_used_at,
                    "rpm": k.requests_per_minute,
                    "tpm": k.tokens_per_minute,
                }
                for k in await auth.list_keys(session, tenant.id)
            ]

    rows = run_async(go)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        state = "revoked" if row["revoked_at"] else "active"
        own = "".join(f"  {k} {row[k]}" for k in ("rpm", "tpm") if row[k])
        click.echo(f"{row['id']}  {row['prefix']}...  {state}  last used {row['last_used_at'] or '-'}{own}")


list_.name = "list"


def _per_minute(value: int | None) -> str:
    return str(value) if value else "no limit"


@key.command("limits")
@click.argument("key_id")
@limits.rpm
@limits.tpm
def set_limits(key_id: str, rpm: int | None, tpm: int | None) -> None:
    """Set a key's own rate limits (0 removes a limit); the tenant's apply as well."""
    if rpm is None and tpm is None:
        raise click.UsageError("give --rpm and/or --tpm (0 removes a limit)")
    settings = load_settings()

    async def go() -> tuple[int | None, int | None]:
        async with db_transaction(settings) as session:
            row = auth.require_unrevoked(await auth.get_key(session, key_id))
            await auth.set_rate_limits(
                session,
                row,
                requests_per_minute=rpm if rpm is not None else row.requests_per_minute,
                tokens_per_minute=tpm if tpm is not None else row.tokens_per_minute,
                actor="cli",
            )
            return row.requests_per_minute, row.tokens_per_minute

    now_rpm, now_tpm = run_async(go)
    click.echo(f"key {key_id}: {_per_minute(now_rpm)} requests and {_per_minute(now_tpm)} tokens per minute")


set_limits.name = "limits"


@key.command("budget")
@click.argument("key_id")
@click.option("--budget-usd", default=None, help="Budget amount in USD.")
@limits.budget_period
@limits.budget_mode
@click.option("--clear", is_flag=True, help="Remove the key's own budget (the tenant's still applies).")
def budget(key_id: str, budget_usd: str | None, budget_period: str, budget_mode: str, clear: bool) -> None:
    """Set, change or remove a key's own budget; the tenant's applies as well."""

    async def locate(session: AsyncSession) -> tuple[str, str]:
        row = auth.require_unrevoked(await auth.get_key(session, key_id))
        return row.id, row.tenant_id

    limits.change_budget(
        f"key {key_id}",
        "key",
        locate,
        budget_usd,
        clear,
        budget_period,
        budget_mode,
        no_budget="had no budget of its own",
    )
