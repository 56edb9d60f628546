"""Builds the dispatcher from settings and the registry, and keeps it in step with the
registry (admin edits reach every gateway replica within `REFRESH_S`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.dispatch.replicas import pool_configs
from gateway.errors import ConfigurationError
from gateway.settings import Settings
from inference.dispatch import (
    Backend,
    Dispatcher,
    DispatchRequest,
    EmbeddedBackend,
    Placement,
    PoolConfig,
    ReplicaSpec,
    UpstreamBackend,
    WorkerBackend,
)
from inference.dispatch.embedded_backend import LocalEngine
from inference.types import Finished, TokenDelta

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


class PoolDispatch:
    """The dispatcher of this process, kept in step with the registry."""

    def __init__(
        self, dispatcher: Dispatcher, sessions: async_sessionmaker[AsyncSession], *, has_engine: bool
    ) -> None:
        self.dispatcher = dispatcher
        self._sessions = sessions
        self._has_engine = has_engine

    def generate(
        self, request: DispatchRequest, pools: Sequence[str], placement: Placement
    ) -> AsyncIterator[TokenDelta | Finished]:
        return self.dispatcher.generate(request, pools, placement)

    def snapshot(self) -> list[dict[str, Any]]:
        return self.dispatcher.snapshot()

    async def refresh(self) -> None:
        async with self._sessions() as session:
            pools = await pool_configs(session)
        await self.dispatcher.configure(servable(pools, has_engine=self._has_engine))

    async def refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await self.refresh()
            except Exception:  # the database may be briefly away: keep the last configuration
                log.warning("refreshing the pool registry failed; keeping the previous one", exc_info=True)


async def start_dispatch(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    stack: AsyncExitStack,
    *,
    engine: LocalEngine | None,
    encode: Callable[[str], list[int]],
) -> PoolDispatch:
    dispatcher = Dispatcher(
        backend_factory(settings, engine=engine, encode=encode),
        max_attempts=settings.dispatch_max_attempts,
        affinity=settings.dispatch_affinity,
        health_interval_s=float(settings.dispatch_health_interval_s),
        queue_timeout_s=float(settings.dispatch_queue_timeout_s),
    )
    runtime = PoolDispatch(dispatcher, sessions, has_engine=engine is not None)
    await runtime.refresh()
    await dispatcher.start()
    stack.push_async_callback(dispatcher.stop)
    task = asyncio.create_task(runtime.refresh_loop())
    stack.push_async_callback(_cancel, task)
    return runtime


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
