"""`gateway router ...`: evaluate the router (in and off its training distribution) and fit a
tenant's calibration from its cascade outcomes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from gateway.auth import service as auth
from gateway.cli.common import db_transaction, emit_json, load_settings, run_async
from gateway.router_calibration import service as calibration
from policy.router import evaluate

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "routing"


@click.group()
def router() -> None:
    """The prompt router behind model `auto`."""


def _needs_sklearn() -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "this protocol trains models: install the train extra (pip install 'deepseek-gateway[train]' "
            "or pip install scikit-learn); serving does not need it"
        ) from None


@router.command("eval")
@click.option(
    "--data",
    "data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with columns prompt, weak_correct, strong_correct: score the shipped router on it.",
)
@click.option(
    "--protocol",
    type=click.Choice(["file", "transfer"]),
    default="file",
    show_default=True,
    help="file: the shipped router on --data. transfer: retrain per fold (gsm8k<->mmlu, "
    "leave one MMLU area out, held-out) next to the random, length and TF-IDF+LR baselines.",
)
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder with gsm8k.csv and mmlu.csv (transfer; default ../shared/data/routing).",
)
@click.option("--fold", "folds", multiple=True, help="Only these folds (transfer), e.g. mmlu->gsm8k.")
@click.option("--baselines", is_flag=True, help="With --data: also score random, length and TF-IDF+LR.")
def eval_(
    data: Path | None, protocol: str, data_dir: Path | None, folds: tuple[str, ...], baselines: bool
) -> None:
    """Print the router's quality and savings as one JSON object."""
    try:
        if protocol == "transfer":
            _needs_sklearn()
            from policy.router.transfer import transfer_report

            result = transfer_report(data_dir or DEFAULT_DATA_DIR, only=folds)
        elif data is None:
            raise click.UsageError("--data FILE.csv is required (or --protocol transfer)")
        elif baselines:
            _needs_sklearn()
            from policy.router.transfer import file_report

            result = file_report(data, data_dir or DEFAULT_DATA_DIR)
        else:
            result = evaluate(data)
    except (KeyError, ValueError, AssertionError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result, sort_keys=True))


eval_.name = "eval"


def _since(days: float | None) -> dt.datetime | None:
    return None if days is None else dt.datetime.now(dt.UTC) - dt.timedelta(days=days)


@router.command("fit")
@click.option("--tenant", "tenant_name", required=True, help="Tenant name.")
@click.option("--days", type=float, default=None, help="Only the last DAYS of audit events (default: all).")
@click.option("--min-observations", type=int, default=None, help="Refuse to fit on fewer (default 50).")
@click.option("--no-activate", is_flag=True, help="Store the new version without activating it.")
def fit(tenant_name: str, days: float | None, min_observations: int | None, no_activate: bool) -> None:
    """Refit the tenant's router calibration from its cascade escalations; store a new version."""
    settings = load_settings()

    async def go() -> calibration.StoredCalibration:
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            kwargs = {} if min_observations is None else {"min_observations": min_observations}
            return await calibration.fit_tenant(
                session, tenant.id, actor="cli", since=_since(days), activate=not no_activate, **kwargs
            )

    emit_json(run_async(go).as_dict())


@router.command("calibrations")
@click.option("--tenant", "tenant_name", required=True, help="Tenant name.")
def calibrations(tenant_name: str) -> None:
    """List the tenant's calibration versions (one JSON object per line, oldest first)."""
    settings = load_settings()

    async def go() -> list[calibration.StoredCalibration]:
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            return await calibration.list_versions(session, tenant.id)

    for stored in run_async(go):
        doc = stored.document
        emit_json(
            {
                "version": stored.version,
                "active": stored.active,
                "observations": stored.observations,
                "direct_threshold": doc.get("direct_threshold"),
                "escalation_rate": doc.get("escalation_rate"),
                "holdout_auc": (doc.get("holdout") or {}).get("auc"),
                "created_at": stored.created_at,
                "created_by": stored.created_by,
            }
        )


@router.command("rollback")
@click.option("--tenant", "tenant_name", required=True, help="Tenant name.")
@click.option("--to", "to_version", type=int, default=None, help="Version (default: the previous one).")
@click.option("--off", is_flag=True, help="Activate none: route the tenant uncalibrated (versions are kept).")
def rollback(tenant_name: str, to_version: int | None, off: bool) -> None:
    """Activate an earlier calibration version (or none, with --off); takes effect within 2 s."""
    if off and to_version is not None:
        raise click.UsageError("--off and --to exclude each other")
    settings = load_settings()

    async def go() -> int:
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            if off:
                return await calibration.deactivate(session, tenant.id, actor="cli")
            stored = await calibration.rollback(session, tenant.id, actor="cli", to_version=to_version)
            return stored.version

    version = run_async(go)
    if off:
        click.echo(
            f"router calibration version {version} deactivated: tenant {tenant_name} is routed uncalibrated"
        )
    else:
        click.echo(f"router calibration version {version} is active for tenant {tenant_name}")
