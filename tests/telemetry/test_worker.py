"""The Celery worker entry point (gateway/worker.py): the gateway's logs and traces in jobs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import signals
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from billing.jobs.tasks import TASKS
from billing.jobs.tracing import uninstall_celery_propagation
from gateway.errors import ConfigurationError
from gateway.logs import JsonFormatter
from gateway.settings import Settings
from gateway.worker import _keep_gateway_logging, create_worker_app


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    uninstall_celery_propagation()
    signals.setup_logging.disconnect(_keep_gateway_logging)


def test_the_worker_needs_redis(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="GATEWAY_REDIS_URL"):
        create_worker_app(Settings(data_dir=tmp_path))


def test_a_job_runs_with_json_logs_and_a_task_span(tmp_path: Path, redis_url: str) -> None:
    spans = InMemorySpanExporter()
    settings = Settings(data_dir=tmp_path, redis_url=redis_url, log_format="json")
    app, telemetry = create_worker_app(settings, span_processors=[SimpleSpanProcessor(spans)])
    try:
        assert set(TASKS) <= set(app.tasks)
        assert isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)
        assert signals.setup_logging.receivers  # Celery leaves the root logger alone
        result = app.tasks["billing.reap_reservations"].apply().get(timeout=30)
        assert result == {"reaped": result["reaped"]} and result["reaped"] >= 0
        names = [s.name for s in spans.get_finished_spans()]
        assert "celery.task billing.reap_reservations" in names
    finally:
        telemetry.shutdown()
