"""Through the HTTP app (no model): server spans, trace propagation, /metrics, no leaks."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from billing.db import transaction
from gateway.app import create_app
from gateway.auth import service as auth
from gateway.logs import make_handler
from gateway.settings import Settings
from tests.conftest import AUDIT_KEY
from tests.telemetry.helpers import Captured

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
PROMPT = "Tell nobody: the launch code is MAGENTA-OTTER-42"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def _settings(tmp_path: Path, database_url: str, **kw: object) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        load_model=False,
        key_pepper="p",
        audit_key=AUDIT_KEY,
        **kw,
    )


@pytest.fixture
async def client(
    tmp_path: Path, sqlite_url: str, captured: Captured
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(_settings(tmp_path, sqlite_url, metrics="prometheus"), telemetry=captured.telemetry)
    async with AsyncTestClient(app=app) as c:
        yield c


async def _key(client: AsyncTestClient[Litestar], name: str) -> str:
    services = client.app.state.services
    async with transaction(services.sessions) as s:
        tenant = await auth.create_tenant(s, name)
        issued = await auth.create_key(s, tenant, services.pepper)
    return issued.secret


async def test_server_span_continues_the_callers_trace(
    client: AsyncTestClient[Litestar], captured: Captured
) -> None:
    r = await client.get("/v1/models", headers={"traceparent": TRACEPARENT, "authorization": "Bearer nope"})
    assert r.status_code == 401
    span = captured.span("GET /v1/models")
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and span.parent.is_remote
    assert span.attributes["http.route"] == "/v1/models"
    assert span.attributes["http.response.status_code"] == 401
    assert span.kind.name == "SERVER" and span.status.status_code.name == "UNSET"


async def test_probes_are_measured_not_traced(client: AsyncTestClient[Litestar], captured: Captured) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert captured.finished() == []
    assert captured.total("http.server.request.duration", **{"http.route": "/healthz"}) == 1


async def test_metrics_endpoint_parses_and_counts_requests(
    client: AsyncTestClient[Litestar], captured: Captured
) -> None:
    for _ in range(3):
        await client.get("/v1/models", headers={"authorization": "Bearer nope"})
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    samples = [
        s
        for s in families["http_server_request_duration_seconds"].samples
        if s.name.endswith("_count") and s.labels["http_route"] == "/v1/models"
    ]
    assert [(s.labels["http_response_status_code"], s.value) for s in samples] == [("401", 3.0)]
    [rejected] = families["gateway_rejections"].samples  # counted once, at the edge
    assert rejected.labels == {"gateway_rejection_kind": "auth", "gateway_tenant_id": "unknown"}
    assert rejected.value == 3


async def test_metrics_route_is_absent_by_default(tmp_path: Path, sqlite_url: str) -> None:
    async with AsyncTestClient(app=create_app(_settings(tmp_path, sqlite_url))) as c:
        assert (await c.get("/metrics")).status_code == 404
        assert c.app.state.services.telemetry.tracing is False


async def test_no_secret_or_prompt_text_in_logs_spans_or_metrics(
    client: AsyncTestClient[Litestar], captured: Captured, log_stream: io.StringIO
) -> None:
    secret = await _key(client, "leak-check")
    body = {"model": "deepseek-v4-flash", "messages": [{"role": "user", "content": f"{PROMPT} {secret}"}]}
    r = await client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"})
    assert r.status_code == 503  # no engine in this app: the request still passed auth
    forged = "sk-gw-" + "F" * 43
    r = await client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    metrics_text = (await client.get("/metrics")).text
    span = [s for s in captured.finished() if s.name == "POST /v1/chat/completions"]
    assert [s.attributes["http.response.status_code"] for s in span] == [503, 401]
    assert span[0].status.status_code.name == "ERROR"
    logs = log_stream.getvalue()
    [failed] = [json.loads(line) for line in logs.splitlines() if "request failed" in line]
    assert failed["trace_id"] == format(span[0].context.trace_id, "032x")  # the 503, in its trace
    everything = "\n".join([logs, captured.dump(), metrics_text])
    for needle in (secret, secret[6:], forged, "MAGENTA-OTTER", "launch code"):
        assert needle not in everything, needle


async def test_json_access_lines_carry_the_request_trace(
    tmp_path: Path, sqlite_url: str, log_stream: io.StringIO
) -> None:
    from tests.telemetry.helpers import capture

    own = capture(access_log=True)
    try:
        app = create_app(_settings(tmp_path, sqlite_url), telemetry=own.telemetry)
        async with AsyncTestClient(app=app) as c:
            await c.get("/v1/models", headers={"traceparent": TRACEPARENT, "authorization": "Bearer nope"})
    finally:
        own.close()
    [line] = [json.loads(x) for x in log_stream.getvalue().splitlines() if '"gateway.access"' in x]
    assert line["message"] == "GET /v1/models 401" and line["http_status"] == 401
    assert line["trace_id"] == TRACE_ID and line["span_id"] == format(
        own.span("GET /v1/models").context.span_id, "016x"
    )
    assert line["duration_ms"] >= 0


def test_access_line_moves_to_the_app_only_with_json_logs() -> None:
    from gateway.telemetry.core import structured_access_log

    assert structured_access_log(Settings(log_format="json")) is True
    assert structured_access_log(Settings(log_format="text")) is False
    assert structured_access_log(Settings(log_format="json", access_log=False)) is False
