"""The pools file (GATEWAY_POOLS_FILE): device pools and upstreams as configuration.

At start-up each entry becomes (or updates) a registry pool with source "file", its replicas
and one deployment per variant it serves, so compliance placement and dispatch read the same
rows. Pools added through the admin API or the CLI are left alone; a file entry may not take
over one of them. Credentials are never in the file: `api_key_env` names the variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.log import append_event
from gateway.compliance.models import (
    Deployment,
    DeploymentArtifact,
    DevicePool,
    PoolReplica,
    RegisteredArtifact,
)
from gateway.compliance.registry import (
    DEVICE_KINDS,
    NAME_PATTERN,
    SOFTWARE_STACKS,
    PoolSpec,
    add_deployment,
    add_pool,
    check_dispatch_fields,
    get_artifact,
    pool_dict,
    set_deployment_artifacts,
)
from gateway.compliance.seed import EXAMPLES, ensure_artifact
from gateway.dispatch.replicas import check_replica
from gateway.errors import ConfigurationError, GatewayError, InvalidRequestError
from inference.dispatch.types import ReplicaSpec
from policy.types import MODEL_OF_VARIANT

ACTOR = "system:pools-file"
_POOL_KEYS = {
    "name",
    "device_kind",
    "vendor",
    "software_stack",
    "region",
    "sovereign",
    "notes",
    "backend",
    "variants",
    "models",
    "api_key_env",
    "replicas",
    "artifacts",
}
_STACK_OF_KIND = {"cpu": "CPU", "cuda": "CUDA", "gpu": "CUDA", "rocm": "ROCm", "npu": "CANN"}


@dataclass(frozen=True)
class FilePool:
    spec: PoolSpec
    replicas: tuple[ReplicaSpec, ...]
    artifacts: tuple[str, ...]  # registry names; () = the default for the backend


def load_pools_file(path: str | Path) -> list[FilePool]:
    """Parse and check the whole file; a ConfigurationError names the entry and the field."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigurationError(f"GATEWAY_POOLS_FILE {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"GATEWAY_POOLS_FILE {path} is not valid YAML: {exc}") from None
    entries = (data or {}).get("pools", []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigurationError(f"GATEWAY_POOLS_FILE {path}: expected a mapping with a `pools:` list")
    pools = [_entry(path, i, e) for i, e in enumerate(entries)]
    names = [p.spec.name for p in pools]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigurationError(f"GATEWAY_POOLS_FILE {path}: pool {dupes[0]} appears twice")
    return pools


def _entry(path: str | Path, index: int, raw: Any) -> FilePool:
    where = f"GATEWAY_POOLS_FILE {path}, pools[{index}]"
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: each pool is a mapping")
    if isinstance(raw.get("name"), str) and raw["name"]:
        where += f" ({raw['name']})"
    unknown = sorted(set(raw) - _POOL_KEYS)
    if unknown:
        raise ConfigurationError(f"{where}: unknown field {unknown[0]!r}")
    for key in ("name", "backend", "region"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigurationError(f"{where}: `{key}` is required")
    _check_types(where, raw)
    kind = str(raw.get("device_kind", "cpu"))
    spec = PoolSpec(
        name=raw["name"],
        device_kind=kind,
        vendor=str(raw.get("vendor", "unknown")),
        software_stack=str(raw.get("software_stack", _STACK_OF_KIND.get(kind, "CPU"))),
        region=raw["region"],
        sovereign=bool(raw.get("sovereign", False)),
        notes=raw.get("notes"),
        backend=raw["backend"],
        variants=tuple(raw.get("variants") or ("flash", "pro")),
        models=dict(raw.get("models") or {}),
        api_key_env=raw.get("api_key_env"),
        source="file",
    )
    replicas = []
    try:
        # What the registry checks when it adds the pool, checked here too: a pool the file
        # updates is not added again, and a bad file must fail at start-up, not at sync.
        if not NAME_PATTERN.match(spec.name):
            raise InvalidRequestError(f"invalid pool name {spec.name!r}", param="name")
        if spec.device_kind not in DEVICE_KINDS:
            raise InvalidRequestError(
                f"device_kind must be one of {', '.join(DEVICE_KINDS)}", param="device_kind"
            )
        if spec.software_stack not in SOFTWARE_STACKS:
            raise InvalidRequestError(
                f"software_stack must be one of {', '.join(SOFTWARE_STACKS)}", param="software_stack"
            )
        check_dispatch_fields(spec)
        for r in raw.get("replicas") or ():
            if not isinstance(r, dict) or not isinstance(r.get("url"), str):
                raise InvalidRequestError("each replica is a mapping with a `url`", param="url")
            replica = ReplicaSpec(r["url"].rstrip("/"), r.get("capacity", 64))
            check_replica(spec.backend, replica.url, replica.capacity)
            replicas.append(replica)
    except GatewayError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    artifacts = raw.get("artifacts") or ()
    if not isinstance(artifacts, (list, tuple)) or not all(isinstance(a, str) for a in artifacts):
        raise ConfigurationError(f"{where}: `artifacts` is a list of registered artifact names")
    return FilePool(spec, tuple(replicas), tuple(artifacts))


def _check_types(where: str, raw: dict[str, Any]) -> None:
    """YAML gives any type: refuse the wrong ones by name rather than coercing them
    (`sovereign: "no"` must not become True, `models: [flash]` must not crash)."""
    for key in ("device_kind", "vendor", "software_stack", "notes", "api_key_env"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise ConfigurationError(f"{where}: `{key}` must be a string")
    if "sovereign" in raw and not isinstance(raw["sovereign"], bool):
        raise ConfigurationError(f"{where}: `sovereign` must be true or false")
    for key, kind, what in (
        ("variants", list, "a list of variants (flash, pro)"),
        ("models", dict, "a mapping of variant to the upstream's model name"),
        ("replicas", list, "a list of replicas (`url`, `capacity`)"),
    ):
        if raw.get(key) is not None and not isinstance(raw[key], kind):
            raise ConfigurationError(f"{where}: `{key}` must be {what}")


async def sync_pools_file(
    session: AsyncSession, pools: list[FilePool], embedded_artifacts: tuple[str, ...]
) -> None:
    """Make the registry match the file (idempotent; the caller commits). `embedded_artifacts`:
    what a `worker` pool runs by default (the embedded model and its engine)."""
    for fp in pools:
        row = await session.scalar(select(DevicePool).where(DevicePool.name == fp.spec.name))
        if row is None:
            row = await add_pool(session, fp.spec, actor=ACTOR)
        elif row.source != "file":
            raise ConfigurationError(
                f"pool {fp.spec.name} was registered through the admin API or CLI; the pools file "
                "may not take it over (rename the file's entry or remove the registry's pool)"
            )
        else:
            await _update_pool(session, row, fp.spec)
        await _sync_replicas(session, row, fp.replicas)
        await _sync_deployments(session, row, fp, embedded_artifacts)


async def _update_pool(session: AsyncSession, row: DevicePool, spec: PoolSpec) -> None:
    wanted = {
        "device_kind": spec.device_kind,
        "vendor": spec.vendor.lower(),
        "software_stack": spec.software_stack,
        "region": spec.region,
        "sovereign": spec.sovereign,
        "notes": spec.notes,
        "backend": spec.backend,
        "variants": list(spec.variants),
        "models": dict(spec.models),
        "api_key_env": spec.api_key_env,
    }
    changed = {k: v for k, v in wanted.items() if getattr(row, k) != v}
    if not changed:
        return
    previous = {k: getattr(row, k) for k in changed}
    for k, v in changed.items():
        setattr(row, k, v)
    await session.flush()
    await append_event(
        session,
        kind="compliance.pool.updated",
        actor=ACTOR,
        payload={**pool_dict(row), "previous": previous},
    )


async def _sync_replicas(session: AsyncSession, row: DevicePool, wanted: tuple[ReplicaSpec, ...]) -> None:
    have = {
        r.url: r for r in (await session.scalars(select(PoolReplica).where(PoolReplica.pool_id == row.id)))
    }
    by_url = {r.url: r for r in wanted}
    for url, r in have.items():
        if url not in by_url:
            await session.delete(r)
    for url, spec in by_url.items():
        current = have.get(url)
        if current is None:
            session.add(
                PoolReplica(pool_id=row.id, url=url, capacity=spec.capacity, enabled=True, created_by=ACTOR)
            )
        elif current.capacity != spec.capacity:
            current.capacity = spec.capacity
    await session.flush()


async def _sync_deployments(
    session: AsyncSession, row: DevicePool, fp: FilePool, embedded_artifacts: tuple[str, ...]
) -> None:
    for variant in fp.spec.variants:
        model_id = MODEL_OF_VARIANT[variant]
        artifacts = list(fp.artifacts)
        if not artifacts and fp.spec.backend in ("worker", "embedded"):
            artifacts = list(embedded_artifacts)
        if not artifacts:  # an upstream serves the published DeepSeek-V4 weights (MIT)
            artifacts = [(await ensure_artifact(session, EXAMPLES[model_id])).name]
        name = f"{row.name}-{variant}"
        dep = await session.scalar(select(Deployment).where(Deployment.name == name))
        if dep is None:
            await add_deployment(
                session,
                name=name,
                model_id=model_id,
                variant=variant,
                pool=row.name,
                artifacts=artifacts,
                actor=ACTOR,
            )
            continue
        have = (
            await session.scalars(
                select(RegisteredArtifact.name)
                .join(DeploymentArtifact, DeploymentArtifact.artifact_id == RegisteredArtifact.id)
                .where(DeploymentArtifact.deployment_id == dep.id)
            )
        ).all()
        if sorted(have) != sorted(artifacts):
            rows = [await get_artifact(session, a) for a in artifacts]
            await set_deployment_artifacts(session, dep, rows, actor=ACTOR)
    # a variant the file no longer lists stops being served by this pool
    for dep in (await session.scalars(select(Deployment).where(Deployment.pool_id == row.id))).all():
        dep.active = dep.variant in fp.spec.variants
    await session.flush()
