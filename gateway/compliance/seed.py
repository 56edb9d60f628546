"""Seed the registry with what the embedded mode serves, and documented example entries.

``ensure_embedded_registry`` is called at startup (idempotent, safe for replicas starting
together): it registers the GGUF model file (license read from its ``general.license``),
the engine build and the kernel stack, the embedded CPU pool in the configured region, and
one deployment per served model id (both are served by the embedded model until device
pools exist).

``EXAMPLES`` are entries operators can register for DeepSeek-V4 weights (MIT: no express
patent grant): ``gateway compliance artifact add --example deepseek-v4-flash --sha256 ...``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.log import append_event
from gateway.compliance.gguf_meta import read_metadata, sha256_file
from gateway.compliance.models import Deployment, DevicePool, RegisteredArtifact
from gateway.compliance.registry import (
    ArtifactSpec,
    PoolSpec,
    add_artifact,
    add_deployment,
    add_pool,
    candidates,
    get_artifact,
    set_deployment_artifacts,
)
from gateway.errors import ConflictError
from policy.compliance_rules import Candidate

EMBEDDED_POOL = "embedded-cpu"
SERVED_MODELS = {"deepseek-v4-flash": "flash", "deepseek-v4-pro": "pro"}
SYSTEM_ACTOR = "system:startup"

SMOLLM2_TRAINING = (
    "Published by Hugging Face: pre-trained on public web, code and math corpora (FineWeb-Edu, DCLM, "
    "The Stack and others) and instruction-tuned on public data sets; see the SmolLM2 model card."
)
DEEPSEEK_EXPORT = (
    "Not assessed by the gateway: record your export classification (open weights published on "
    "Hugging Face; check destination and end-user restrictions for your jurisdiction)."
)
DEEPSEEK_TRAINING = (
    "Not published in full; the DeepSeek-V4 technical report describes the corpus in aggregate."
)

EXAMPLES: dict[str, ArtifactSpec] = {
    "deepseek-v4-flash": ArtifactSpec(
        name="deepseek-v4-flash-weights",
        kind="model_weights",
        license="MIT",
        version="V4-Flash",
        source="https://huggingface.co/deepseek-ai (DeepSeek-V4-Flash, 284B total / 13B active)",
        training_data=DEEPSEEK_TRAINING,
        export_control=DEEPSEEK_EXPORT,
        details={"parameters_total": "284B", "parameters_active": "13B", "context": "1M"},
    ),
    "deepseek-v4-pro": ArtifactSpec(
        name="deepseek-v4-pro-weights",
        kind="model_weights",
        license="MIT",
        version="V4-Pro",
        source="https://huggingface.co/deepseek-ai (DeepSeek-V4-Pro, 1.6T total / 49B active)",
        training_data=DEEPSEEK_TRAINING,
        export_control=DEEPSEEK_EXPORT,
        details={"parameters_total": "1.6T", "parameters_active": "49B", "context": "1M"},
    ),
}


@dataclass(frozen=True)
class EmbeddedRegistry:
    artifact: str  # the registered name of the model weights
    sha256: str
    license: str
    pool: str
    region: str
    deployments: tuple[Candidate, ...]


def cpu_vendor() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for vendor_id, vendor in (("GenuineIntel", "intel"), ("AuthenticAMD", "amd")):
        if vendor_id in text:
            return vendor
    return (platform.machine() or "unknown").lower()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def gguf_artifact(path: Path, *, sha256: str | None = None, name: str | None = None) -> ArtifactSpec:
    """The registry entry for a GGUF file, from the file itself (license: general.license)."""
    meta = read_metadata(path)
    raw_license = meta.get("general.license")
    return ArtifactSpec(
        name=name or path.name.removesuffix(".gguf"),
        kind="model_weights",
        license=str(raw_license or "NOASSERTION"),
        license_source="gguf:general.license" if raw_license else "missing",
        source=str(path),
        sha256=sha256 or sha256_file(path),
        size_bytes=path.stat().st_size,
        version=meta.get("general.size_label"),
        training_data=SMOLLM2_TRAINING if "smollm2" in path.name.lower() else None,
        details={k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool, list))},
    )


def support_artifacts() -> list[ArtifactSpec]:
    """The engine build and kernel stack the embedded model runs on."""
    gw, torch = _version("deepseek-gateway"), _version("torch")
    return [
        ArtifactSpec(
            name=f"deepseek-gateway-engine-{gw}",
            kind="engine_build",
            license="Apache-2.0",
            version=gw,
            source="deepseek-gateway (inference/, embedded engine)",
        ),
        ArtifactSpec(
            name=f"pytorch-{torch}-cpu",
            kind="kernel_stack",
            license="BSD-3-Clause",
            version=torch,
            source="PyTorch (CPU build)",
        ),
    ]


async def ensure_artifact(session: AsyncSession, spec: ArtifactSpec) -> RegisteredArtifact:
    existing = await session.scalar(select(RegisteredArtifact).where(RegisteredArtifact.name == spec.name))
    if existing is not None and (spec.sha256 is None or existing.sha256 == spec.sha256):
        return existing
    if existing is not None:  # same name, different file: register this one under name@sha
        spec = replace(spec, name=f"{spec.name}@{spec.sha256[:12]}" if spec.sha256 else spec.name)
        again = await session.scalar(select(RegisteredArtifact).where(RegisteredArtifact.name == spec.name))
        if again is not None:
            return again
    try:
        return await add_artifact(session, spec, actor=SYSTEM_ACTOR)
    except ConflictError:  # another replica registered it first
        return await get_artifact(session, spec.name)


async def ensure_embedded_registry(
    session: AsyncSession, model_path: str | Path, region: str = "local", *, sha256: str | None = None
) -> EmbeddedRegistry:
    """Register the embedded model, its pool and deployments (idempotent; commit is the caller's).

    ``sha256``: pass the model's digest when the loader already computed it (saves a read).
    """
    path = Path(model_path)
    weights = await ensure_artifact(session, gguf_artifact(path, sha256=sha256))
    support = [await ensure_artifact(session, s) for s in support_artifacts()]
    wanted = [weights, *support]

    pool = await session.scalar(select(DevicePool).where(DevicePool.name == EMBEDDED_POOL))
    if pool is None:
        try:
            pool = await add_pool(
                session,
                PoolSpec(
                    name=EMBEDDED_POOL,
                    device_kind="cpu",
                    vendor=cpu_vendor(),
                    software_stack="CPU",
                    region=region,
                    notes="the embedded engine in the gateway process",
                ),
                actor=SYSTEM_ACTOR,
            )
        except ConflictError:
            pool = await session.scalar(select(DevicePool).where(DevicePool.name == EMBEDDED_POOL))
    assert pool is not None
    vendor = cpu_vendor()
    if (pool.region, pool.vendor) != (region, vendor):  # configuration or machine changed: record it
        previous = {"region": pool.region, "vendor": pool.vendor}
        pool.region, pool.vendor = region, vendor
        await session.flush()
        await append_event(
            session,
            kind="compliance.pool.updated",
            actor=SYSTEM_ACTOR,
            payload={
                "name": pool.name,
                "region": region,
                "vendor": vendor,
                "previous": previous,
                "previous_region": previous["region"],
            },
        )

    for model_id, variant in SERVED_MODELS.items():
        name = f"embedded-{model_id}"
        dep = await session.scalar(select(Deployment).where(Deployment.name == name))
        if dep is None:
            with contextlib.suppress(ConflictError):
                await add_deployment(
                    session,
                    name=name,
                    model_id=model_id,
                    variant=variant,
                    pool=pool.name,
                    artifacts=[a.name for a in wanted],
                    actor=SYSTEM_ACTOR,
                )
            continue
        current = {c.name: c for c in await candidates(session, model_id)}.get(name)
        have = sorted(a.name for a in current.artifacts) if current else []
        if have != sorted(a.name for a in wanted):
            await set_deployment_artifacts(session, dep, wanted, actor=SYSTEM_ACTOR)

    deployments = tuple(c for c in await candidates(session) if c.pool.name == EMBEDDED_POOL)
    return EmbeddedRegistry(
        artifact=weights.name,
        sha256=weights.sha256 or "",
        license=weights.license,
        pool=pool.name,
        region=region,
        deployments=deployments,
    )
