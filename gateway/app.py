"""The application factory: `create_app(settings)` composes the rooms; nothing runs at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing.db import make_engine, make_sessionmaker
from gateway.api.admin.billing import billing_router
from gateway.api.admin.keys import keys_router
from gateway.api.admin.limits import limits_router
from gateway.api.admin.policy import policy_router
from gateway.api.admin.tenants import tenants_router
from gateway.api.chat import chat_completions
from gateway.api.errors import handle_exception
from gateway.api.health import healthz, readyz
from gateway.api.metrics import prometheus_metrics
from gateway.api.models import list_models, retrieve_model
from gateway.api.openapi.document import openapi_config
from gateway.api.usage import tenant_usage
from gateway.audit.checkpoints import load_or_create_audit_key
from gateway.audit.retention import retention_loop
from gateway.auth.admin import AdminAuthenticator
from gateway.auth.keys import load_or_create_pepper
from gateway.auth.service import Authenticator
from gateway.compliance.admin_api import compliance_router
from gateway.compliance.service import ComplianceCache
from gateway.console import console_router
from gateway.dispatch.admin_api import dispatch_router
from gateway.service.completions import CompletionService
from gateway.service.metering import Metering
from gateway.service.serving import start_serving
from gateway.service.tenant_policies import PolicyCache
from gateway.service.wiring import start_metering
from gateway.settings import Settings
from gateway.telemetry import Telemetry, telemetry_middleware
from gateway.telemetry.rejections import count_rejection
from inference import ModelArtifact

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
    policies: PolicyCache
    compliance: ComplianceCache
    metering: Metering
    completions: CompletionService | None
    artifact: ModelArtifact | None
    started_unix: int
    telemetry: Telemetry


def create_app(settings: Settings, *, telemetry: Telemetry | None = None) -> Litestar:
    """`telemetry`: built from settings in the lifespan unless given (tests pass one with
    in-memory exporters; the caller then owns its shutdown)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        tel = telemetry if telemetry is not None else Telemetry.from_settings(settings)
        async with AsyncExitStack() as stack:
            if telemetry is None:  # the last thing to stop: flush spans and metrics
                stack.push_async_callback(asyncio.to_thread, tel.shutdown)
            db = make_engine(settings.resolved_database_url)
            stack.push_async_callback(db.dispose)
            sessions = make_sessionmaker(db)
            pepper = load_or_create_pepper(settings.key_pepper, settings.data_dir)
            policies = PolicyCache(sessions)
            compliance = ComplianceCache(sessions)
            audit_key = load_or_create_audit_key(settings.audit_key, settings.data_dir)
            retention = asyncio.create_task(
                retention_loop(sessions, audit_key, purge_after_days=settings.audit_retention_days or None)
            )
            # Awaited, not just cancelled: the database closes only after the loop stopped.
            stack.push_async_callback(_cancel_and_wait, retention)
            metering = await start_metering(settings, sessions, stack)
            completions: CompletionService | None = None
            if settings.load_model:
                completions = await start_serving(
                    settings, sessions, policies, compliance, metering, stack, tel
                )
            app.state.services = Services(
                settings=settings,
                db=db,
                sessions=sessions,
                pepper=pepper,
                authenticator=Authenticator(
                    sessions,
                    pepper,
                    cache_ttl_s=settings.auth_cache_ms / 1000,
                    stale_if_error_s=settings.stale_if_error_s,
                ),
                admin_authenticator=AdminAuthenticator(sessions, pepper),
                policies=policies,
                compliance=compliance,
                metering=metering,
                completions=completions,
                artifact=completions.artifact if completions else None,
                started_unix=int(time.time()),
                telemetry=tel,
            )
            yield

    handlers: list[Any] = [
        chat_completions,
        list_models,
        retrieve_model,
        tenant_usage,
        healthz,
        readyz,
        tenants_router,
        policy_router,
        billing_router,
        limits_router,
        keys_router,
        compliance_router,
        dispatch_router,
    ]
    if settings.metrics == "prometheus":
        handlers.append(prometheus_metrics)
    if settings.console:
        handlers.append(console_router())
    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        middleware=[telemetry_middleware],
        exception_handlers={Exception: handle_exception},
        after_exception=[count_rejection],
        request_max_body_size=settings.max_request_bytes,
        openapi_config=openapi_config(settings.openapi, _package_version()),
        # Logging is configured by the process (gateway.logs.configure_logging: text or JSON,
        # trace ids, key scrubbing); Litestar's default would replace the root handlers.
        logging_config=None,
        debug=False,
    )


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deepseek-gateway")
    except PackageNotFoundError:
        return "0+unknown"


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
