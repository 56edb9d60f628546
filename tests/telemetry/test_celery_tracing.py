"""Trace context crosses into Celery tasks (billing/jobs/tracing.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace

from billing.jobs.tracing import (
    attached,
    extract_context,
    inject_headers,
    install_celery_propagation,
    uninstall_celery_propagation,
)
from tests.telemetry.helpers import Captured


@pytest.fixture(autouse=True)
def _clean_signals() -> Iterator[None]:
    yield
    uninstall_celery_propagation()


def _ids() -> tuple[str, str]:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def test_headers_round_trip(captured: Captured) -> None:
    assert inject_headers() == {}  # outside a trace: nothing to send
    with captured.telemetry.span("enqueue") as span:
        headers = inject_headers()
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert headers["traceparent"].split("-")[1] == trace_id
    ctx = extract_context({**headers, "unrelated": "x"})
    assert format(trace.get_current_span(ctx).get_span_context().trace_id, "032x") == trace_id
    with attached(headers):
        assert _ids()[0] == trace_id
        with captured.telemetry.span("task work") as child:
            pass
    assert _ids()[0] == "0" * 32
    assert child.get_span_context().trace_id == span.get_span_context().trace_id
    assert extract_context(None) is not None


def test_signal_handlers_inject_attach_and_detach(captured: Captured) -> None:
    from types import SimpleNamespace

    from celery import signals

    class FakeTask:
        name = "tests.x"

        def __init__(self, traceparent: str) -> None:
            self.request = SimpleNamespace(traceparent=traceparent, headers=None)

    install_celery_propagation()
    install_celery_propagation()  # idempotent
    headers: dict[str, Any] = {"lang": "py"}
    with captured.telemetry.span("enqueue") as span:
        signals.before_task_publish.send(sender="tests.x", headers=headers, body=None)
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert headers["traceparent"].split("-")[1] == trace_id and headers["lang"] == "py"
    task = FakeTask(headers["traceparent"])
    signals.task_prerun.send(sender=task, task_id="1", task=task, args=(), kwargs={})
    try:
        assert _ids()[0] == trace_id
    finally:
        signals.task_postrun.send(
            sender=task, task_id="1", task=task, args=(), kwargs={}, retval=None, state="SUCCESS"
        )
    assert _ids()[0] == "0" * 32


@pytest.mark.slow
def test_a_celery_task_runs_in_the_publishers_trace(captured: Captured) -> None:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    app = Celery("trace-test", broker="memory://", backend="cache+memory://")
    app.conf.update(
        task_default_queue="trace-test",
        broker_connection_retry_on_startup=True,
        broker_transport_options={"polling_interval": 0.01},
    )
    seen: dict[str, Any] = {}

    @app.task(name="tests.trace_ids")
    def trace_ids() -> list[str]:
        return list(_ids())

    install_celery_propagation(tracer=captured.telemetry.tracer)
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10):
        with captured.telemetry.span("request") as span:
            result = trace_ids.delay()
        seen["ids"] = result.get(timeout=30)
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert seen["ids"][0] == trace_id
    task_span = captured.span("celery.task tests.trace_ids")
    assert format(task_span.context.trace_id, "032x") == trace_id
    assert task_span.parent is not None and task_span.parent.span_id == span.get_span_context().span_id
    assert seen["ids"][1] == format(task_span.context.span_id, "016x")
