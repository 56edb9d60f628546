"""Builds the dispatcher from settings and the registry, and keeps it in step with the
registry (admin edits reach every gateway replica within `REFRESH_S`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.dispatch.replicas import pool_configs
from gateway.errors import ConfigurationError
from gateway.settings import Settings
from inference.dispatch import (
    Backend,
    Dispatcher,
    EmbeddedBackend,
    PoolConfig,
    ReplicaSpec,
    UpstreamBackend,
    WorkerBackend,
)
from inference.dispatch.embedded_backend import LocalEngine

log = logging.getLogger(__name__)
REFRESH_S = 10.0


def backend_factory(
    settings: Settings,
    *,
    engine: LocalEngine | None,
    encode: Callable[[str], list[int]],
    env: Mapping[str, str] = os.environ,
) -> Callable[[PoolConfig, ReplicaSpec], Backend]:
    timeout = float(settings.dispatch_first_token_timeout_s)

    def make(pool: PoolConfig, spec: ReplicaSpec) -> Backend:
        if pool.backend == "embedded":
            if engine is None:
                raise ConfigurationError(f"pool {pool.name} is embedded but this process runs no engine")
            return EmbeddedBackend(engine)
        if pool.backend == "worker":
            return WorkerBackend(
                spec.url,
                token=settings.worker_token or None,
                capacity=spec.capacity,
                first_token_timeout_s=timeout,
            )
        api_key = env.get(pool.api_key_env) if pool.api_key_env else None
        if pool.api_key_env and not api_key:
            log.warning("pool %s: the environment variable %s is not set", pool.name, pool.api_key_env)
        return UpstreamBackend(
            pool.backend,
            spec.url,
            encode=encode,
            models=pool.models,
            api_key=api_key,
            capacity=spec.capacity,
            first_token_timeout_s=timeout,
        )

    return make


def servable(pools: list[PoolConfig], *, has_engine: bool) -> list[PoolConfig]:
    """An embedded pool is served only by processes that run the engine."""
    return [p for p in pools if p.backend != "embedded" or has_engine]


async def start_dispatch(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    stack: AsyncExitStack,
    *,
    engine: LocalEngine | None,
    encode: Callable[[str], list[int]],
) -> Dispatcher:
    dispatcher = Dispatcher(
        backend_factory(settings, engine=engine, encode=encode),
        max_attempts=settings.dispatch_max_attempts,
        affinity=settings.dispatch_affinity,
        health_interval_s=float(settings.dispatch_health_interval_s),
    )
    await refresh(dispatcher, sessions, has_engine=engine is not None)
    await dispatcher.start()
    stack.push_async_callback(dispatcher.stop)
    task = asyncio.create_task(_refresh_loop(dispatcher, sessions, has_engine=engine is not None))
    stack.push_async_callback(_cancel, task)
    return dispatcher


async def refresh(
    dispatcher: Dispatcher, sessions: async_sessionmaker[AsyncSession], *, has_engine: bool
) -> None:
    async with sessions() as session:
        pools = await pool_configs(session)
    await dispatcher.configure(servable(pools, has_engine=has_engine))


async def _refresh_loop(
    dispatcher: Dispatcher, sessions: async_sessionmaker[AsyncSession], *, has_engine: bool
) -> None:
    while True:
        await asyncio.sleep(REFRESH_S)
        try:
            await refresh(dispatcher, sessions, has_engine=has_engine)
        except Exception:  # the database may be briefly away: keep the last configuration
            log.warning("refreshing the pool registry failed; keeping the previous one", exc_info=True)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
