"""Shared click options for budgets and rate limits."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import click


def parse_usd(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a decimal amount") from None
    if not amount.is_finite() or amount < 0:
        raise click.BadParameter("the amount must be a non-negative number")
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
