"""Shared click options for budgets and rate limits, and the budget changes of
`gateway tenant` and `gateway key`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation

import click
from sqlalchemy.ext.asyncio import AsyncSession

from billing.budgets.store import BudgetStore
from billing.cost import usd_to_units
from billing.db import make_engine, make_sessionmaker
from billing.errors import CatalogError
from gateway.auth import budgets
from gateway.cli.common import db_transaction, load_settings, run_async
from gateway.settings import Settings


def parse_usd(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a decimal amount") from None
    if not amount.is_finite() or amount < 0:
        raise click.BadParameter("the amount must be a non-negative number")
    try:
        usd_to_units(amount)
    except CatalogError as exc:  # finer than the budgets' unit
        raise click.BadParameter(str(exc)) from None
    return amount


budget_usd = click.option("--budget-usd", default=None, help="Budget amount in USD (e.g. 100 or 12.50).")
budget_period = click.option(
    "--budget-period", type=click.Choice(["day", "month", "none"]), default="month", show_default=True
)
budget_mode = click.option(
    "--budget-mode",
    type=click.Choice(["hard", "soft"]),
    default="hard",
    show_default=True,
    help="hard rejects requests the budget cannot cover; soft only alerts.",
)
rpm = click.option("--rpm", type=click.IntRange(min=0), default=None, help="Requests per minute (0: none).")
tpm = click.option("--tpm", type=click.IntRange(min=0), default=None, help="Tokens per minute (0: none).")


async def set_budget(
    settings: Settings, scope: str, scope_id: str, tenant_id: str, amount: Decimal, period: str, mode: str
) -> dict[str, object]:
    """A tenant's or a key's budget (`gateway tenant budget`, `gateway key budget`), audited."""
    engine = make_engine(settings.resolved_database_url)
    try:
        sessions = make_sessionmaker(engine)
        return await budgets.set_budget(
            BudgetStore(sessions),
            sessions,
            scope=scope,
            scope_id=scope_id,
            tenant_id=tenant_id,
            limit_usd=amount,
            period=period,
            mode=mode,
            actor="cli",
        )
    finally:
        await engine.dispose()


async def clear_budget(settings: Settings, scope: str, scope_id: str) -> bool:
    """Remove a tenant's or a key's own budget (audited); False when there was none."""
    engine = make_engine(settings.resolved_database_url)
    try:
        sessions = make_sessionmaker(engine)
        return await budgets.clear_budget(
            BudgetStore(sessions), sessions, scope=scope, scope_id=scope_id, actor="cli"
        )
    finally:
        await engine.dispose()


def change_budget(
    who: str,
    scope: str,
    locate: Callable[[AsyncSession], Awaitable[tuple[str, str]]],
    budget_usd: str | None,
    clear: bool,
    period: str,
    mode: str,
    *,
    no_budget: str,
) -> None:
    """`gateway tenant budget` / `gateway key budget`: set the budget, or remove it with
    --clear, and say what happened. `locate` finds (scope id, tenant id) in the database."""
    if clear == (budget_usd is not None):
        raise click.UsageError("give either --budget-usd or --clear")
    settings = load_settings()
    amount = parse_usd(budget_usd)

    async def go() -> dict[str, object] | bool:
        async with db_transaction(settings) as session:
            scope_id, tenant_id = await locate(session)
        if amount is None:
            return await clear_budget(settings, scope, scope_id)
        return await set_budget(settings, scope, scope_id, tenant_id, amount, period, mode)

    done = run_async(go)
    if isinstance(done, dict):
        click.echo(f"{who}: {done['mode']} budget {done['limit_usd']} USD per {done['period']}")
    else:
        click.echo(f"{who}: budget removed" if done else f"{who}: {no_budget}")
