"""The Celery worker and beat processes: billing's jobs with the gateway's logs and telemetry.

    celery -A gateway.worker worker        # one or more
    celery -A gateway.worker beat          # exactly one per deployment

They read the same GATEWAY_* settings as `gateway serve`: logs in text or JSON with the same
redaction (GATEWAY_LOG_FORMAT, GATEWAY_LOG_LEVEL), traces to the configured exporter
(GATEWAY_OTEL_EXPORTER) with a `celery.task <name>` span per task inside the trace of whoever
queued it, the database (GATEWAY_DATABASE_URL, default the SQLite file in GATEWAY_DATA_DIR)
and Redis, the broker (GATEWAY_REDIS_URL, required). `billing.jobs.celery_app` is the same
app without the gateway's logging and telemetry (billing does not import the gateway).
Nothing happens at import time: `app` is built on first access (the celery CLI's -A).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from celery import Celery, signals
from opentelemetry.sdk.trace import SpanProcessor

from billing.jobs.celery_app import create_celery_app
from billing.jobs.tracing import install_celery_propagation
from gateway.errors import ConfigurationError
from gateway.logs import configure_logging
from gateway.router_calibration.tasks import register as register_router_calibration
from gateway.settings import Settings
from gateway.telemetry.core import Telemetry


def create_worker_app(
    settings: Settings, *, span_processors: Sequence[SpanProcessor] = ()
) -> tuple[Celery, Telemetry]:
    """The Celery app and the process's Telemetry; configures the root logger (once per
    process). `span_processors` are added to the configured exporters (tests)."""
    if not settings.redis_url:
        raise ConfigurationError("GATEWAY_REDIS_URL is required: Redis is the Celery broker")
    configure_logging(settings.log_level, settings.log_format)
    # Python warnings (Celery's SecurityWarning when run as root, say) as log records too:
    # printed raw they would be the only lines on stderr that are not JSON.
    logging.captureWarnings(True)
    # a receiver of setup_logging keeps Celery's worker and beat from replacing the root
    # logger's handlers with their own (plain text, no redaction)
    signals.setup_logging.connect(_keep_gateway_logging, weak=False)
    telemetry = Telemetry.from_settings(settings, span_processors=span_processors)
    install_celery_propagation(telemetry.tracer if telemetry.tracing else None)
    # flush batched spans when the worker stops
    signals.worker_shutdown.connect(lambda **_: telemetry.shutdown(), weak=False)
    app = create_celery_app(
        broker_url=settings.redis_url,
        database_url=settings.resolved_database_url,
        redis_url=settings.redis_url,
        result_backend=os.environ.get("GATEWAY_CELERY_RESULT_BACKEND"),
    )
    register_router_calibration(app, settings.resolved_database_url)  # daily per-tenant refit
    return app, telemetry


def _keep_gateway_logging(**_: Any) -> None:
    """Celery's logging setup hook: the root logger is already configured."""


_app: Celery | None = None


def __getattr__(name: str) -> Any:  # lazy `app` for the celery CLI (-A gateway.worker)
    global _app
    if name in ("app", "celery"):
        if _app is None:
            _app, _ = create_worker_app(Settings.from_env())
        return _app
    raise AttributeError(name)
