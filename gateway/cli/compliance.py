"""`gateway compliance ...`: the artifact registry, device pools, deployments, tenant
compliance profiles and reports. Every change is an audit event with the actor."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from gateway.auth import service as auth
from gateway.cli.common import db_transaction, emit_json, load_settings, run_async
from gateway.compliance import profiles, registry
from gateway.compliance.gguf_meta import sha256_file
from gateway.compliance.reports import build_report, parse_period, report_csv
from gateway.compliance.seed import EXAMPLES, gguf_artifact
from inference.dispatch.types import BACKENDS
from policy.compliance_rules import evaluate
from policy.errors import PolicyError

_actor = click.option("--actor", default="cli", show_default=True, help="Who makes the change (audited).")


def _run(factory: Any) -> Any:
    try:
        return run_async(factory)
    except PolicyError as exc:  # profile validation: every bad field on its own line
        for line in getattr(exc, "errors", None) or [exc.message]:
            click.echo(f"error: {line}", err=True)
        sys.exit(1)


@click.group()
def compliance() -> None:
    """Artifact registry, device pools, tenant compliance profiles and reports."""


# --- artifacts ---------------------------------------------------------------------------


@compliance.group()
def artifact() -> None:
    """Deployable artifacts: model weights, kernel stacks, engine builds."""


@artifact.command("add")
@click.argument("name", required=False)
@click.option("--example", type=click.Choice(sorted(EXAMPLES)), help="Start from a documented example entry.")
@click.option(
    "--file",
    "file_",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The artifact's file: sha256 and size; a GGUF also gives its license (general.license).",
)
@click.option("--kind", type=click.Choice(["model_weights", "kernel_stack", "engine_build"]))
@click.option("--license", "license_", help="SPDX id (or the artifact's own license string).")
@click.option(
    "--patent-grant", type=click.Choice(["express", "none", "unknown"]), help="Default: from the license."
)
@click.option("--sha256")
@click.option("--source", help="Where it comes from (URL, package, path).")
@click.option("--version")
@click.option("--training-data", help="Training-data disclosure, as published.")
@click.option("--export-control", help="Export-control notes (classification, restrictions).")
@_actor
def artifact_add(
    name: str | None,
    example: str | None,
    file_: Path | None,
    kind: str | None,
    license_: str | None,
    patent_grant: str | None,
    sha256: str | None,
    source: str | None,
    version: str | None,
    training_data: str | None,
    export_control: str | None,
    actor: str,
) -> None:
    """Register an artifact (NAME defaults to the example's or the file's name)."""
    if example:
        spec = EXAMPLES[example]
    elif file_ is not None and file_.suffix == ".gguf":
        spec = gguf_artifact(file_)
    else:
        spec = registry.ArtifactSpec(
            name="",
            kind=kind or "model_weights",
            license=license_ or "NOASSERTION",
            source=source or (str(file_) if file_ else ""),
        )
    if file_ is not None and spec.sha256 is None:
        spec = replace(spec, sha256=sha256_file(file_), size_bytes=file_.stat().st_size)
    overrides: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "license": license_,
        "patent_grant": patent_grant,
        "sha256": sha256,
        "source": source,
        "version": version,
        "training_data": training_data,
        "export_control": export_control,
    }
    spec = replace(spec, **{k: v for k, v in overrides.items() if v is not None})
    if not spec.name or not spec.source:
        raise click.UsageError("NAME and --source are required (or --example / --file)")
    settings = load_settings()

    async def go() -> dict[str, Any]:
        async with db_transaction(settings) as session:
            return registry.artifact_dict(await registry.add_artifact(session, spec, actor=actor))

    row = _run(go)
    click.echo(
        f"registered {row['name']}: {row['kind']}, {row['license']} (patent grant: {row['patent_grant']})"
    )


@artifact.command("list")
@click.option("--json", "as_json", is_flag=True)
def artifact_list(as_json: bool) -> None:
    """List registered artifacts."""
    settings = load_settings()

    async def go() -> list[dict[str, Any]]:
        async with db_transaction(settings) as session:
            return [registry.artifact_dict(a) for a in await registry.list_artifacts(session)]

    rows = _run(go)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        sha = (r["sha256"] or "-")[:12]
        click.echo(f"{r['name']}  {r['kind']}  {r['license']}  patent:{r['patent_grant']}  sha256:{sha}")


# --- pools and deployments ----------------------------------------------------------------


@compliance.group()
def pool() -> None:
    """Device pools: device kind, vendor, software stack, region, sovereign flag."""


@pool.command("add")
@click.argument("name")
@click.option("--device-kind", type=click.Choice(list(registry.DEVICE_KINDS)), required=True)
@click.option("--vendor", required=True, help="intel, amd, nvidia, huawei, ...")
@click.option("--stack", "software_stack", type=click.Choice(["CUDA", "ROCm", "CANN", "CPU"]), required=True)
@click.option("--region", required=True)
@click.option("--sovereign", is_flag=True, help="The pool counts as sovereign hardware.")
@click.option("--notes")
@click.option(
    "--backend",
    type=click.Choice(list(BACKENDS)),
    default="worker",
    show_default=True,
    help="How requests reach it.",
)
@click.option(
    "--variant", "variants", multiple=True, type=click.Choice(["flash", "pro"]), help="Repeat; default all."
)
@click.option("--model", "models", multiple=True, help="VARIANT=NAME: the upstream's model name (repeat).")
@click.option("--api-key-env", help="Upstreams: the NAME of the environment variable holding the credential.")
@_actor
def pool_add(
    name: str,
    device_kind: str,
    vendor: str,
    software_stack: str,
    region: str,
    sovereign: bool,
    notes: str | None,
    backend: str,
    variants: tuple[str, ...],
    models: tuple[str, ...],
    api_key_env: str | None,
    actor: str,
) -> None:
    """Register a device pool (then add replicas: `gateway pools replica add`)."""
    settings = load_settings()
    model_map = dict(m.split("=", 1) for m in models if "=" in m)
    if len(model_map) != len(models):
        raise click.BadParameter("use VARIANT=NAME", param_hint="--model")
    spec = registry.PoolSpec(
        name,
        device_kind,
        vendor,
        software_stack,
        region,
        sovereign,
        notes,
        backend=backend,
        variants=variants,
        models=model_map,
        api_key_env=api_key_env,
    )

    async def go() -> dict[str, Any]:
        async with db_transaction(settings) as session:
            return registry.pool_dict(await registry.add_pool(session, spec, actor=actor))

    row = _run(go)
    click.echo(
        f"registered pool {row['name']}: {row['vendor']} {row['device_kind']} ({row['software_stack']}) "
        f"in {row['region']}{', sovereign' if row['sovereign'] else ''}"
    )


@pool.command("list")
@click.option("--json", "as_json", is_flag=True)
def pool_list(as_json: bool) -> None:
    """List device pools."""
    settings = load_settings()

    async def go() -> list[dict[str, Any]]:
        async with db_transaction(settings) as session:
            return [registry.pool_dict(p) for p in await registry.list_pools(session)]

    rows = _run(go)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        flag = "  sovereign" if r["sovereign"] else ""
        click.echo(
            f"{r['name']}  {r['region']}  {r['vendor']} {r['device_kind']} {r['software_stack']}{flag}"
        )


@compliance.group()
def deployment() -> None:
    """Deployments: a served model id/variant built from artifacts on one pool."""


@deployment.command("add")
@click.argument("name")
@click.option("--model", "model_id", required=True, help="Served model id, e.g. deepseek-v4-pro.")
@click.option("--variant", type=click.Choice(["flash", "pro"]), required=True)
@click.option("--pool", "pool_name", required=True)
@click.option("--artifact", "artifacts", multiple=True, required=True, help="Artifact name (repeat).")
@_actor
def deployment_add(
    name: str, model_id: str, variant: str, pool_name: str, artifacts: tuple[str, ...], actor: str
) -> None:
    """Register a deployment."""
    settings = load_settings()

    async def go() -> None:
        async with db_transaction(settings) as session:
            await registry.add_deployment(
                session,
                name=name,
                model_id=model_id,
                variant=variant,
                pool=pool_name,
                artifacts=list(artifacts),
                actor=actor,
            )

    _run(go)
    click.echo(f"registered deployment {name}: {model_id} on {pool_name}")


@deployment.command("list")
@click.option("--json", "as_json", is_flag=True)
def deployment_list(as_json: bool) -> None:
    """List active deployments with their artifacts and pool."""
    settings = load_settings()

    async def go() -> list[dict[str, Any]]:
        async with db_transaction(settings) as session:
            return await registry.list_deployments(session)

    rows = _run(go)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        arts = ", ".join(f"{a['name']} ({a['license']})" for a in r["artifacts"])
        click.echo(f"{r['name']}  {r['model_id']}  pool {r['pool']['name']} ({r['pool']['region']})  {arts}")


# --- profiles -----------------------------------------------------------------------------


@compliance.group()
def profile() -> None:
    """Tenant compliance profiles (versioned; the latest set is active)."""


@profile.command("set")
@click.option("--tenant", "tenant_name", required=True)
@click.argument("file", type=click.File("r"))
@_actor
def profile_set(tenant_name: str, file: Any, actor: str) -> None:
    """Validate FILE (YAML or JSON; - for stdin) and activate it as the tenant's profile."""
    source = file.read()
    settings = load_settings()

    async def go() -> profiles.StoredProfile:
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            return await profiles.set_profile(session, tenant.id, source, actor=actor)

    stored = _run(go)
    click.echo(f"compliance profile version {stored.version} active for tenant {tenant_name}")


@profile.command("show")
@click.option("--tenant", "tenant_name", required=True)
@click.option("--json", "as_json", is_flag=True)
def profile_show(tenant_name: str, as_json: bool) -> None:
    """Print the tenant's active profile."""
    settings = load_settings()

    async def go() -> profiles.StoredProfile:
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            return await profiles.get_profile(session, tenant.id)

    stored = _run(go)
    if as_json:
        emit_json(stored.as_dict())
    elif stored.version is None:
        click.echo(f"# tenant {tenant_name} has no compliance profile: no restrictions, prompt hashes kept")
    else:
        click.echo(f"# tenant {tenant_name}, compliance profile version {stored.version}")
        click.echo(stored.source.rstrip("\n"))


@profile.command("activate")
@click.option("--tenant", "tenant_name", required=True)
@click.option("--version", type=int, required=True)
@_actor
def profile_activate(tenant_name: str, version: int, actor: str) -> None:
    """Make a stored version active again (rollback)."""
    settings = load_settings()

    async def go() -> None:
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            await profiles.activate_version(session, tenant.id, version, actor=actor)

    _run(go)
    click.echo(f"compliance profile version {version} active for tenant {tenant_name}")


@compliance.command("check")
@click.option("--tenant", "tenant_name", required=True)
@click.option("--use-case", default=None)
@click.option("--model", "model_id", default=None, help="Only deployments of this served model id.")
def check(tenant_name: str, use_case: str | None, model_id: str | None) -> None:
    """Which deployments the tenant's profile allows, and the rule that excludes each other one."""
    settings = load_settings()

    async def go() -> dict[str, Any]:
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            prof = await profiles.active_profile(session, tenant.id)
            return evaluate(prof, await registry.candidates(session, model_id), use_case).as_dict()

    emit_json(_run(go))


@compliance.command("report")
@click.option("--tenant", "tenant_name", required=True)
@click.option("--from", "start", required=True, help="First day (YYYY-MM-DD) or ISO datetime.")
@click.option(
    "--to", "end", required=True, help="Last day, included (YYYY-MM-DD), or ISO datetime (excluded)."
)
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
def report(tenant_name: str, start: str, end: str, fmt: str, output: Path | None) -> None:
    """What served the tenant's traffic: artifacts, licenses, regions, hardware."""
    settings = load_settings()

    async def go() -> dict[str, Any]:
        lo, hi = parse_period(start, end)
        async with db_transaction(settings) as session:
            tenant = await auth.get_tenant_by_name(session, tenant_name)
            result = await build_report(session, tenant.id, lo, hi)
            result["tenant"] = tenant_name
            return result

    result = _run(go)
    if fmt == "csv":
        text = report_csv(result)
    else:
        import json

        text = json.dumps(result, sort_keys=True, indent=2, default=str) + "\n"
    if output is not None:
        output.write_text(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)
