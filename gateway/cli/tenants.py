"""`gateway tenant ...`: tenants, their budgets and rate limits."""

from __future__ import annotations

import click
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.log import append_event
from gateway.auth import service as auth
from gateway.cli import limits
from gateway.cli.common import db_transaction, emit_json, load_settings, run_async


@click.group()
def tenant() -> None:
    """Manage tenants."""


@tenant.command("create")
@click.argument("name")
@limits.budget_usd
@limits.budget_period
@limits.budget_mode
@limits.rpm
@limits.tpm
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create(
    name: str,
    budget_usd: str | None,
    budget_period: str,
    budget_mode: str,
    rpm: int | None,
    tpm: int | None,
    as_json: bool,
) -> None:
    """Create a tenant, optionally with a budget and rate limits."""
    settings = load_settings()
    amount = limits.parse_usd(budget_usd)

    async def go() -> dict[str, object]:
        async with db_transaction(settings) as session:
            row = await auth.create_tenant(session, name)
            await auth.set_rate_limits(
                session, row, requests_per_minute=rpm, tokens_per_minute=tpm, actor=None
            )
            await append_event(
                session,
                kind="tenant.created",
                actor="cli",
                tenant_id=row.id,
                payload={"name": row.name, "requests_per_minute": rpm, "tokens_per_minute": tpm},
            )
            created: dict[str, object] = {"id": row.id, "name": row.name}
        if amount is not None:
            tenant_id = str(created["id"])
            created["budget"] = await limits.set_budget(
                settings, "tenant", tenant_id, tenant_id, amount, budget_period, budget_mode
            )
        return created

    created = run_async(go)
    if as_json:
        emit_json(created)
    else:
        click.echo(f"created tenant {created['name']} ({created['id']})")


@tenant.command("budget")
@click.argument("name")
@click.option("--budget-usd", default=None, help="Budget amount in USD.")
@limits.budget_period
@limits.budget_mode
@click.option("--clear", is_flag=True, help="Remove the tenant's budget (its keys' own budgets stay).")
def budget(name: str, budget_usd: str | None, budget_period: str, budget_mode: str, clear: bool) -> None:
    """Set, change or remove a tenant's budget."""

    async def locate(session: AsyncSession) -> tuple[str, str]:
        tenant_id = (await auth.get_tenant_by_name(session, name)).id
        return tenant_id, tenant_id

    limits.change_budget(
        f"tenant {name}",
        "tenant",
        locate,
        budget_usd,
        clear,
        budget_period,
        budget_mode,
        no_budget="had no budget",
    )


@tenant.command("limits")
@click.argument("name")
@limits.rpm
@limits.tpm
def set_limits(name: str, rpm: int | None, tpm: int | None) -> None:
    """Set a tenant's rate limits across all its keys (0 removes a limit)."""
    settings = load_settings()

    async def go() -> None:
        async with db_transaction(settings) as session:
            row = await auth.get_tenant_by_name(session, name)
            await auth.set_rate_limits(
                session,
                row,
                requests_per_minute=rpm if rpm is not None else row.requests_per_minute,
                tokens_per_minute=tpm if tpm is not None else row.tokens_per_minute,
                actor="cli",
            )

    run_async(go)
    click.echo(f"tenant {name}: limits updated")


set_limits.name = "limits"
