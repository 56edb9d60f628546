"""`gateway policy ...`: tenant policies (validated, versioned, atomically activated)."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.auth import service as auth
from gateway.cli.common import db_transaction, emit_json, load_settings, run_async
from gateway.service.tenant_policies import activate_policy, rollback_policy
from policy import repository
from policy.errors import PolicyError, PolicyValidationError


def _policy_errors(exc: PolicyError) -> click.ClickException:
    if isinstance(exc, PolicyValidationError):
        return click.ClickException("invalid policy:\n  " + "\n  ".join(exc.errors))
    return click.ClickException(exc.message)


@click.group()
def policy() -> None:
    """Manage tenant policies."""


@policy.command("set")
@click.option("--tenant", "tenant_name", required=True, help="Tenant name.")
@click.option("--comment", default=None, help="Why this version exists.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def set_(tenant_name: str, comment: str | None, file: Path) -> None:
    """Validate FILE (YAML or JSON) and activate it as the tenant's new policy version."""
    settings = load_settings()
    source = file.read_text()

    async def go() -> int:
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            stored = await activate_policy(session, tenant.id, source, actor="cli", comment=comment)
            return stored.version

    try:
        version = run_async(go)
    except PolicyError as exc:
        raise _policy_errors(exc) from None
    click.echo(f"policy version {version} is active for tenant {tenant_name}")


@policy.command("show")
@click.option("--tenant", "tenant_name", required=True, help="Tenant name.")
@click.option("--json", "as_json", is_flag=True, help="Print the document and its metadata as JSON.")
def show(tenant_name: str, as_json: bool) -> None:
    """Print the tenant's active policy."""
    settings = load_settings()

    async def go() -> repository.StoredPolicy | None:
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            return await repository.get_active_version(session, tenant.id)

    stored = run_async(go)
    if stored is None:
        if as_json:
            emit_json({"tenant": tenant_name, "version": None, "document": None})
        else:
            click.echo(f"tenant {tenant_name} has no policy of its own: the default policy applies")
        return
    if as_json:
        emit_json(
            {
                "tenant": tenant_name,
                "version": stored.version,
                "digest": stored.digest,
                "created_by": stored.created_by,
                "created_at": stored.created_at,
                "document": dict(stored.document),
            }
        )
        return
    click.echo(f"# tenant {tenant_name}, policy version {stored.version} (sha256 {stored.digest[:12]})")
    click.echo(stored.source)


@policy.command("rollback")
@click.option("--tenant", "tenant_name", required=True, help="Tenant name.")
@click.option("--to", "to_version", type=int, default=None, help="Version (default: the previous one).")
def rollback(tenant_name: str, to_version: int | None) -> None:
    """Activate an earlier policy version."""
    settings = load_settings()

    async def go() -> int:
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            stored = await rollback_policy(session, tenant.id, actor="cli", to_version=to_version)
            return stored.version

    try:
        version = run_async(go)
    except PolicyError as exc:
        raise _policy_errors(exc) from None
    click.echo(f"policy version {version} is active for tenant {tenant_name}")


@policy.command("versions")
@click.option("--tenant", "tenant_name", required=True, help="Tenant name.")
def versions(tenant_name: str) -> None:
    """List the tenant's policy versions."""
    settings = load_settings()

    async def go() -> list[repository.StoredPolicy]:
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            return await repository.list_versions(session, tenant.id)

    for stored in run_async(go):
        flag = "*" if stored.active else " "
        click.echo(
            f"{flag} {stored.version:4d}  {stored.created_at:%Y-%m-%d %H:%M}  {stored.created_by}  "
            f"{stored.comment or ''}"
        )


set_.name = "set"
