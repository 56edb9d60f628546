"""The Celery worker and beat as real processes (`celery -A gateway.worker ...`, Redis as the
broker): JSON log lines only, and a task queued inside a trace runs in that trace (its
`celery.task` span and its log lines carry the publisher's trace id). Issue 18."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from billing.jobs.celery_app import create_celery_app
from billing.jobs.tracing import inject_headers
from gateway import migrate

pytestmark = pytest.mark.slow

REDIS_DB = 14  # a database of its own: beat publishes to the default queue


def _env(tmp_path: Path, redis: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATA_DIR=str(tmp_path),
        GATEWAY_REDIS_URL=redis,
        GATEWAY_CELERY_RESULT_BACKEND=redis,
        GATEWAY_LOG_FORMAT="json",
        GATEWAY_LOG_LEVEL="info",
        GATEWAY_OTEL_EXPORTER="console",
        PYTHONUNBUFFERED="1",
    )
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    assert lines, "no log lines"
    parsed = []
    for line in lines:  # every line a JSON object: nothing else writes to stderr
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON log line in {path.name}: {line!r}") from None
    return parsed


def test_worker_runs_a_task_in_the_publishers_trace_with_json_logs(tmp_path: Path, redis_url: str) -> None:
    redis = redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    env = _env(tmp_path, redis)
    migrate.upgrade(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    queue = f"test-{uuid.uuid4().hex[:8]}"
    out, err = tmp_path / "worker.out", tmp_path / "worker.err"
    command = [sys.executable, "-m", "celery", "-A", "gateway.worker", "worker", "--pool=solo", "-Q", queue]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        worker = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, cwd=tmp_path)
    publisher = create_celery_app(
        broker_url=redis, database_url="sqlite://", redis_url=redis, result_backend=redis
    )
    tracer = TracerProvider().get_tracer("test")
    try:
        with tracer.start_as_current_span("request") as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            headers = inject_headers(trace.set_span_in_context(span))
            result = publisher.tasks["billing.hourly_rollup"].apply_async(queue=queue, headers=headers)
        assert "hours_rebuilt" in json.dumps(result.get(timeout=90))
        deadline = time.monotonic() + 10  # the span is exported when it ends, after the result
        while trace_id not in out.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        _stop(worker)
        publisher.close()
    logs = _log_lines(err)
    in_trace = [e for e in logs if e.get("trace_id") == trace_id]
    assert any("succeeded" in e["message"] for e in in_trace), logs[-5:]
    assert all(e["level"] in ("debug", "info", "warning", "error", "critical") for e in logs)
    exported = out.read_text(errors="replace")
    assert '"name": "celery.task billing.hourly_rollup"' in exported
    assert trace_id in exported


def test_beat_logs_json(tmp_path: Path, redis_url: str) -> None:
    redis = redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    env = _env(tmp_path, redis)
    err = tmp_path / "beat.err"
    command = [
        sys.executable, "-m", "celery", "-A", "gateway.worker", "beat",
        "-s", str(tmp_path / "beat-schedule"), "--max-interval", "1",
    ]  # fmt: skip
    with err.open("wb") as stderr:
        beat = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while "Sending due task" not in err.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        _stop(beat)
        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "gateway.worker", "purge", "-f", "-Q", "billing"],
            env=env,
            capture_output=True,
            timeout=60,
        )
    logs = _log_lines(err)
    assert any("Sending due task" in e["message"] for e in logs), logs[-5:]
    assert all({"ts", "level", "logger", "message"} <= set(e) for e in logs)
