"""What serves completions in this process: the embedded engine (unless switched off), the
registry entries that describe it, the pools file, and the dispatcher over all pools."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import transaction
from gateway.audit.writer import AuditWriter
from gateway.compliance.models import DevicePool, PoolReplica
from gateway.compliance.seed import (
    EMBEDDED_POOL,
    SYSTEM_ACTOR,
    ensure_artifact,
    ensure_embedded_registry,
    gguf_artifact,
    support_artifacts,
)
from gateway.compliance.service import ComplianceCache
from gateway.dispatch.pools_file import load_pools_file, sync_pools_file
from gateway.dispatch.replicas import EMBEDDED_URL
from gateway.dispatch.wiring import start_dispatch
from gateway.service.completions import CompletionService
from gateway.service.metering import Metering
from gateway.service.tenant_policies import PolicyCache
from gateway.settings import Settings
from gateway.telemetry import Telemetry
from policy.router import default_router

if TYPE_CHECKING:
    from inference import EmbeddedModel
    from inference.variants import VariantEngines

log = logging.getLogger(__name__)


async def start_serving(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    policies: PolicyCache,
    compliance: ComplianceCache,
    metering: Metering,
    stack: AsyncExitStack,
    telemetry: Telemetry,
) -> CompletionService:
    from inference import EmbeddedModel
    from inference.tokenizer_model import TokenizerModel

    pools_file = load_pools_file(settings.pools_file) if settings.pools_file else []  # fail fast
    started = time.perf_counter()
    model: EmbeddedModel | TokenizerModel
    traced = None
    if settings.embedded_engine:
        model = await asyncio.to_thread(
            EmbeddedModel.load,
            settings.model_path or None,
            device=settings.device,
            dtype=settings.dtype,
            threads=settings.threads or None,
        )
        traced = await _variant_engines(settings, model, stack, telemetry)
        log.info("model %s loaded in %.1fs", model.artifact.name, time.perf_counter() - started)
    else:  # pools only: the tokenizer still counts prompt tokens for decisions and estimates
        model = await asyncio.to_thread(TokenizerModel, settings.model_path or None)
    async with transaction(sessions) as session:  # the artifact registry knows what serves
        artifacts = await _register_local(session, settings, model.artifact.path, model.artifact.sha256)
        if pools_file:
            await sync_pools_file(session, pools_file, artifacts)
    compliance.invalidate(None)
    dispatcher = await start_dispatch(settings, sessions, stack, engine=traced, encode=model.encode)
    router = await asyncio.to_thread(default_router)  # the `auto` model's difficulty scorer
    audit = AuditWriter(sessions, settings.data_dir / "spool" / "audit")
    await audit.start()
    stack.push_async_callback(audit.stop)  # before the engine and the database close
    service = CompletionService(
        audit=audit,
        model=model,
        dispatcher=dispatcher,
        sessions=sessions,
        policies=policies,
        compliance=compliance,
        metering=metering,
        telemetry=telemetry,
        router=router,
    )
    # Stops first (last pushed): requests cut off by the shutdown still record their usage and
    # audit events, and settle, before the writers flush and stop.
    stack.push_async_callback(service.drain)
    return service


async def _variant_engines(
    settings: Settings, model: EmbeddedModel, stack: AsyncExitStack, telemetry: Telemetry
) -> VariantEngines:
    """The embedded engine per variant (inference.variants): Flash and Pro are configurations
    over the one loaded model; variants with the same configuration share one engine (one KV
    cache). GATEWAY_FLASH_KV=pq gives Flash the compressed cache (its codebooks are fit on the
    first start, minutes, and then load from the data dir); GATEWAY_FLASH_EXPERTS=modes gives
    its modes their expert fractions (per-neuron routing; the weights repacked in seconds)."""
    from gateway.telemetry.engine import TracedEngine, engine_gauges
    from inference.moe import TARGET_EXPERT_FRACTIONS
    from inference.variants import EMBEDDED_VARIANTS, VariantConfig, VariantEngines

    configs = dict(EMBEDDED_VARIANTS)
    kv = None if settings.flash_kv == "dense" else "pq"
    configs["flash"] = VariantConfig("flash", kv_compression=kv)
    if settings.flash_experts == "modes":
        await asyncio.to_thread(model.enable_experts)
        configs["flash"] = replace(configs["flash"], expert_fractions=dict(TARGET_EXPERT_FRACTIONS))
    model.kv_cache_dir = settings.data_dir / "kv-codebooks"
    raw = await asyncio.to_thread(VariantEngines.build, model, None, configs, "pro")
    await raw.start()
    stack.push_async_callback(raw.stop)
    telemetry.observe_engine(lambda: engine_gauges(raw.stats()))
    name = model.artifact.name
    traced = {id(e): TracedEngine(e, telemetry, response_model=name) for e in raw.distinct()}
    return VariantEngines({v: traced[id(e)] for v, e in raw.engines.items()}, configs, "pro")


async def _register_local(
    session: AsyncSession, settings: Settings, path: object, sha256: str
) -> tuple[str, ...]:
    """The embedded model's artifacts (what worker pools run too); with the engine, also the
    embedded pool, its deployments and its one in-process replica."""
    if not settings.embedded_engine:
        weights = await ensure_artifact(session, gguf_artifact(path, sha256=sha256))  # type: ignore[arg-type]
        support = [await ensure_artifact(session, s) for s in support_artifacts()]
        return (weights.name, *(s.name for s in support))
    embedded = await ensure_embedded_registry(session, path, settings.region, sha256=sha256)  # type: ignore[arg-type]
    pool = await session.scalar(select(DevicePool).where(DevicePool.name == EMBEDDED_POOL))
    assert pool is not None
    has_replica = await session.scalar(select(PoolReplica.id).where(PoolReplica.pool_id == pool.id))
    if has_replica is None:
        try:
            async with session.begin_nested():  # another gateway replica may add it first
                session.add(
                    PoolReplica(
                        pool_id=pool.id, url=EMBEDDED_URL, capacity=64, enabled=True, created_by=SYSTEM_ACTOR
                    )
                )
        except IntegrityError:
            pass
    return tuple(a.name for a in embedded.deployments[0].artifacts) if embedded.deployments else ()
