"""The application factory: `create_app(settings)` composes the rooms; nothing runs at import."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing.db import make_engine, make_sessionmaker
from gateway.api.admin.tenants import tenants_router
from gateway.api.chat import chat_completions
from gateway.api.errors import handle_exception
from gateway.api.health import healthz, readyz
from gateway.api.models import list_models, retrieve_model
from gateway.auth.admin import AdminAuthenticator
from gateway.auth.keys import load_or_create_pepper
from gateway.auth.service import Authenticator
from gateway.service.completions import CompletionService
from gateway.settings import Settings
from inference import Engine, ModelArtifact

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a request handler needs, built once per app in the lifespan."""

    settings: Settings
    db: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    pepper: bytes
    authenticator: Authenticator
    admin_authenticator: AdminAuthenticator
    completions: CompletionService | None
    artifact: ModelArtifact | None
    started_unix: int


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = make_engine(settings.resolved_database_url)
        sessions = make_sessionmaker(db)
        pepper = load_or_create_pepper(settings.key_pepper, settings.data_dir)
        engine: Engine | None = None
        completions: CompletionService | None = None
        artifact: ModelArtifact | None = None
        try:
            if settings.load_model:
                engine, completions, artifact = await _start_engine(settings, sessions)
            app.state.services = Services(
                settings=settings,
                db=db,
                sessions=sessions,
                pepper=pepper,
                authenticator=Authenticator(sessions, pepper),
                admin_authenticator=AdminAuthenticator(sessions, pepper),
                completions=completions,
                artifact=artifact,
                started_unix=int(time.time()),
            )
            yield
        finally:
            if engine is not None:
                await engine.stop()
            await db.dispose()

    return Litestar(
        route_handlers=[chat_completions, list_models, retrieve_model, healthz, readyz, tenants_router],
        lifespan=[lifespan],
        exception_handlers={Exception: handle_exception},
        request_max_body_size=settings.max_request_bytes,
        openapi_config=None,
        debug=False,
    )


async def _start_engine(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> tuple[Engine, CompletionService, ModelArtifact]:
    from inference import EmbeddedModel

    started = time.perf_counter()
    model = await asyncio.to_thread(
        EmbeddedModel.load,
        settings.model_path or None,
        device=settings.device,
        dtype=settings.dtype,
        threads=settings.threads or None,
    )
    engine = Engine(model)
    await engine.start()
    log.info("model %s loaded in %.1fs", model.artifact.name, time.perf_counter() - started)
    return engine, CompletionService(model=model, engine=engine, sessions=sessions), model.artifact
