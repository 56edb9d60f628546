"""The artifact registry: artifacts, device pools and deployments (repository functions).

Every change is an audit event with the actor (``compliance.artifact.added``, ...).
``candidates`` turns the active deployments into the evaluator's facts
(policy.compliance_rules.Candidate); the embedded model is seeded by ``seed.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.log import append_event
from gateway.compliance.models import Deployment, DeploymentArtifact, DevicePool, RegisteredArtifact
from gateway.errors import ConflictError, InvalidRequestError, NotFoundError
from inference.dispatch.types import BACKENDS, UPSTREAM_DIALECTS
from inference.dispatch.types import DEVICE_KINDS as DEVICE_KINDS
from policy.compliance_rules import ArtifactFacts, Candidate, PatentGrant, PoolFacts, patent_grant_of, spdx_id
from policy.compliance_rules.profile import ARTIFACT_KINDS, SOFTWARE_STACKS

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,199}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ArtifactSpec:
    name: str
    kind: str
    license: str  # SPDX id or a license string as the artifact writes it (normalised)
    source: str
    sha256: str | None = None
    patent_grant: str | None = None  # None: from the license (Apache-2.0: express, MIT: none)
    license_source: str = "declared"
    version: str | None = None
    training_data: str | None = None
    export_control: str | None = None
    size_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PoolSpec:
    name: str
    device_kind: str
    vendor: str
    software_stack: str
    region: str
    sovereign: bool = False
    notes: str | None = None
    # Dispatch (docs/pools.md): how requests reach the pool, which variants it serves, the
    # upstream's model name per variant, and the env var holding an upstream's credential.
    backend: str = "embedded"
    variants: tuple[str, ...] = ()
    models: dict[str, str] = field(default_factory=dict)
    api_key_env: str | None = None
    source: str = "api"


VARIANTS = ("flash", "pro")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,99}$")


def check_dispatch_fields(spec: PoolSpec) -> None:
    """The dispatch half of a pool: a clear 400 naming the field that is wrong."""
    if spec.backend not in BACKENDS:
        raise InvalidRequestError(f"backend must be one of {', '.join(BACKENDS)}", param="backend")
    bad = [v for v in spec.variants if v not in VARIANTS]
    if bad or not isinstance(spec.variants, (list, tuple)):
        raise InvalidRequestError(f"variants must be a list of {', '.join(VARIANTS)}", param="variants")
    if not isinstance(spec.models, dict) or not all(
        k in VARIANTS and isinstance(v, str) and v for k, v in spec.models.items()
    ):
        raise InvalidRequestError(
            "models maps a variant (flash, pro) to the upstream's model name", param="models"
        )
    if spec.api_key_env is not None and not _ENV_NAME.match(spec.api_key_env):
        raise InvalidRequestError(
            "api_key_env is the NAME of an environment variable (A-Z, 0-9, _), never the key itself",
            param="api_key_env",
        )
    if spec.api_key_env and spec.backend not in UPSTREAM_DIALECTS:
        raise InvalidRequestError(
            "api_key_env is for upstream backends (vllm, sglang, deepseek)", param="api_key_env"
        )


def _check_name(what: str, name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise InvalidRequestError(f"invalid {what} name {name!r}", param="name")


def artifact_dict(a: RegisteredArtifact) -> dict[str, Any]:
    return {
        "name": a.name,
        "kind": a.kind,
        "version": a.version,
        "license": a.license,
        "license_source": a.license_source,
        "patent_grant": a.patent_grant,
        "training_data": a.training_data,
        "export_control": a.export_control,
        "source": a.source,
        "sha256": a.sha256,
        "size_bytes": a.size_bytes,
        "details": a.details,
        "created_by": a.created_by,
        "created_at": a.created_at,
    }


def pool_dict(p: DevicePool) -> dict[str, Any]:
    return {
        "name": p.name,
        "device_kind": p.device_kind,
        "vendor": p.vendor,
        "software_stack": p.software_stack,
        "region": p.region,
        "sovereign": p.sovereign,
        "notes": p.notes,
        "backend": p.backend,
        "variants": list(p.variants or []),
        "models": dict(p.models or {}),
        "api_key_env": p.api_key_env,
        "source": p.source,
        "created_by": p.created_by,
        "created_at": p.created_at,
    }


async def add_artifact(session: AsyncSession, spec: ArtifactSpec, *, actor: str) -> RegisteredArtifact:
    _check_name("artifact", spec.name)
    if spec.kind not in ARTIFACT_KINDS:
        raise InvalidRequestError(f"artifact kind must be one of {', '.join(ARTIFACT_KINDS)}", param="kind")
    sha = spec.sha256.lower() if spec.sha256 else None
    if sha is not None and not _SHA256.match(sha):
        raise InvalidRequestError("sha256 must be 64 hex digits", param="sha256")
    license_id = spdx_id(spec.license)
    grant = spec.patent_grant or patent_grant_of(license_id).value
    if grant not in {g.value for g in PatentGrant}:
        raise InvalidRequestError("patent_grant must be express, none or unknown", param="patent_grant")
    row = RegisteredArtifact(
        name=spec.name,
        kind=spec.kind,
        version=spec.version,
        license=license_id,
        license_source=spec.license_source,
        patent_grant=grant,
        training_data=spec.training_data,
        export_control=spec.export_control,
        source=spec.source,
        sha256=sha,
        size_bytes=spec.size_bytes,
        details=dict(spec.details),
        created_by=actor,
    )
    await _insert(session, row, f"artifact {spec.name} is already registered")
    await append_event(session, kind="compliance.artifact.added", actor=actor, payload=artifact_dict(row))
    return row


async def add_pool(session: AsyncSession, spec: PoolSpec, *, actor: str) -> DevicePool:
    _check_name("pool", spec.name)
    if spec.device_kind not in DEVICE_KINDS:
        raise InvalidRequestError(
            f"device kind must be one of {', '.join(DEVICE_KINDS)}", param="device_kind"
        )
    if spec.software_stack not in SOFTWARE_STACKS:
        raise InvalidRequestError(
            f"software stack must be one of {', '.join(SOFTWARE_STACKS)}", param="software_stack"
        )
    if not spec.region or not spec.vendor:
        raise InvalidRequestError("region and vendor are required", param="region")
    check_dispatch_fields(spec)
    row = DevicePool(
        name=spec.name,
        device_kind=spec.device_kind,
        vendor=spec.vendor.lower(),
        software_stack=spec.software_stack,
        region=spec.region,
        sovereign=spec.sovereign,
        notes=spec.notes,
        backend=spec.backend,
        variants=list(spec.variants),
        models=dict(spec.models),
        api_key_env=spec.api_key_env,
        source=spec.source,
        created_by=actor,
    )
    await _insert(session, row, f"pool {spec.name} is already registered")
    await append_event(session, kind="compliance.pool.added", actor=actor, payload=pool_dict(row))
    return row


async def add_deployment(
    session: AsyncSession,
    *,
    name: str,
    model_id: str,
    variant: str,
    pool: str,
    artifacts: list[str],
    actor: str,
) -> Deployment:
    _check_name("deployment", name)
    if not artifacts:
        raise InvalidRequestError("a deployment needs at least one artifact", param="artifacts")
    pool_row = await get_pool(session, pool)
    art_rows = [await get_artifact(session, a) for a in artifacts]
    row = Deployment(name=name, model_id=model_id, variant=variant, pool_id=pool_row.id, created_by=actor)
    await _insert(session, row, f"deployment {name} is already registered")
    for a in art_rows:
        session.add(DeploymentArtifact(deployment_id=row.id, artifact_id=a.id))
    await session.flush()
    await append_event(
        session,
        kind="compliance.deployment.added",
        actor=actor,
        payload={
            "name": name,
            "model_id": model_id,
            "variant": variant,
            "pool": pool,
            "artifacts": artifacts,
        },
    )
    return row


async def set_deployment_artifacts(
    session: AsyncSession, deployment: Deployment, artifacts: list[RegisteredArtifact], *, actor: str
) -> None:
    """Replace a deployment's artifact set (for example when the model file changed)."""
    for link in (
        await session.scalars(
            select(DeploymentArtifact).where(DeploymentArtifact.deployment_id == deployment.id)
        )
    ).all():
        await session.delete(link)
    await session.flush()
    for a in artifacts:
        session.add(DeploymentArtifact(deployment_id=deployment.id, artifact_id=a.id))
    await session.flush()
    await append_event(
        session,
        kind="compliance.deployment.updated",
        actor=actor,
        payload={"name": deployment.name, "artifacts": [a.name for a in artifacts]},
    )


async def _insert(session: AsyncSession, row: Any, conflict: str) -> None:
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        raise ConflictError(conflict) from None


async def get_artifact(session: AsyncSession, name: str) -> RegisteredArtifact:
    row = await session.scalar(select(RegisteredArtifact).where(RegisteredArtifact.name == name))
    if row is None:
        raise NotFoundError(f"artifact {name!r} is not registered")
    return row


async def get_pool(session: AsyncSession, name: str) -> DevicePool:
    row = await session.scalar(select(DevicePool).where(DevicePool.name == name))
    if row is None:
        raise NotFoundError(f"pool {name!r} is not registered")
    return row


async def list_artifacts(session: AsyncSession) -> list[RegisteredArtifact]:
    return list((await session.scalars(select(RegisteredArtifact).order_by(RegisteredArtifact.name))).all())


async def list_pools(session: AsyncSession) -> list[DevicePool]:
    return list((await session.scalars(select(DevicePool).order_by(DevicePool.name))).all())


def facts_of_artifact(a: RegisteredArtifact) -> ArtifactFacts:
    return ArtifactFacts(
        name=a.name, kind=a.kind, license=a.license, patent_grant=a.patent_grant, id=a.name, sha256=a.sha256
    )


def facts_of_pool(p: DevicePool) -> PoolFacts:
    return PoolFacts(
        name=p.name,
        region=p.region,
        vendor=p.vendor,
        device_kind=p.device_kind,
        software_stack=p.software_stack,
        sovereign=p.sovereign,
    )


async def candidates(session: AsyncSession, model_id: str | None = None) -> tuple[Candidate, ...]:
    """The active deployments (optionally of one served model id) as evaluator facts."""
    query = (
        select(Deployment, DevicePool)
        .join(DevicePool, DevicePool.id == Deployment.pool_id)
        .where(Deployment.active.is_(True))
        .order_by(Deployment.name)
    )
    if model_id is not None:
        query = query.where(Deployment.model_id == model_id)
    rows = (await session.execute(query)).all()
    if not rows:
        return ()
    links = (
        await session.execute(
            select(DeploymentArtifact.deployment_id, RegisteredArtifact)
            .join(RegisteredArtifact, RegisteredArtifact.id == DeploymentArtifact.artifact_id)
            .where(DeploymentArtifact.deployment_id.in_([d.id for d, _ in rows]))
            .order_by(RegisteredArtifact.name)
        )
    ).all()
    arts: dict[int, list[ArtifactFacts]] = {}
    for dep_id, art in links:
        arts.setdefault(dep_id, []).append(facts_of_artifact(art))
    return tuple(
        Candidate(
            name=d.name,
            model_id=d.model_id,
            variant=d.variant,
            pool=facts_of_pool(p),
            artifacts=tuple(arts.get(d.id, ())),
        )
        for d, p in rows
    )


async def list_deployments(session: AsyncSession) -> list[dict[str, Any]]:
    return [c.audit_dict() for c in await candidates(session)]
