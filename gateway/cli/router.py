"""`gateway router eval`: the router's quality and savings on a labelled CSV."""

from __future__ import annotations

import json
from pathlib import Path

import click

from policy.router import evaluate


@click.group()
def router() -> None:
    """The prompt router behind model `auto`."""


@router.command("eval")
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with columns prompt, weak_correct, strong_correct.",
)
def eval_(data: Path) -> None:
    """Print apgr, cpt50, cpt80, strong_share_at_95 and cost_saving_at_95 as one JSON object."""
    try:
        result = evaluate(data)
    except (KeyError, ValueError) as exc:
        raise click.ClickException(f"{data}: {exc}") from None
    click.echo(json.dumps(result, sort_keys=True))


eval_.name = "eval"
