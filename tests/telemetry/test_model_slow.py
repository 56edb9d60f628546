"""With the real embedded model: the whole span tree of one completion and /metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from billing.db import transaction
from gateway.app import create_app
from gateway.auth import service as auth
from gateway.settings import Settings
from tests.telemetry.helpers import Captured

pytestmark = pytest.mark.slow

# Children of the server span of one completion (docs/observability.md).
REQUEST_PATH_SPANS = {
    "gateway.auth",
    "policy.decide",
    "billing.rate_limit",
    "billing.reserve",
    "inference.generate",
    "billing.record",
    "audit.append",
    "billing.settle",
}


async def test_one_completion_yields_the_span_tree_and_metrics(
    tmp_path: Path, sqlite_url: str, captured: Captured
) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=sqlite_url, key_pepper="p", metrics="prometheus", threads=2
    )
    app = create_app(settings, telemetry=captured.telemetry)
    async with AsyncTestClient(app=app, timeout=120) as client:
        services = client.app.state.services
        async with transaction(services.sessions) as s:
            tenant = await auth.create_tenant(s, "spans")
            key = (await auth.create_key(s, tenant, services.pepper)).secret
        body = {
            "model": "deepseek-v4-flash",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 8,
            "temperature": 0,
        }
        headers = {"authorization": f"Bearer {key}"}
        r = await client.post("/v1/chat/completions", json=body, headers=headers)
        assert r.status_code == 200, r.text
        usage = r.json()["usage"]
        r = await client.post("/v1/chat/completions", json={**body, "stream": True}, headers=headers)
        assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
        metrics_text = (await client.get("/metrics")).text

    spans = captured.finished()
    servers = [s for s in spans if s.name == "POST /v1/chat/completions"]
    for server in servers:
        kids = {s.name for s in spans if s.parent and s.parent.span_id == server.context.span_id}
        assert "inference.generate" in kids and kids <= REQUEST_PATH_SPANS, kids
        if "policy.decide" in kids:  # the request path is instrumented: all of it
            assert kids >= REQUEST_PATH_SPANS - {"billing.settle"}, kids  # settle: only with a reservation
            assert server.attributes["gateway.tenant_id"] == tenant.id
            assert server.attributes["gateway.variant"] == "flash"
            assert server.attributes["gateway.cost_usd"] > 0
    generates = [s for s in captured.finished() if s.name == "inference.generate"]
    assert len(servers) == 2 and len(generates) == 2
    for server, gen in zip(servers, generates, strict=True):
        assert gen.parent is not None and gen.parent.span_id == server.context.span_id
        assert gen.context.trace_id == server.context.trace_id
        children = {
            s.name for s in captured.finished() if s.parent and s.parent.span_id == gen.context.span_id
        }
        assert children == {"inference.prefill", "inference.decode"}
        assert server.attributes["http.response.status_code"] == 200
        assert server.end_time >= gen.end_time  # the streamed body is sent inside the server span
        assert server.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
        assert server.attributes["gen_ai.usage.output_tokens"] >= 1
        assert server.attributes["gen_ai.response.finish_reasons"] in (("length",), ("stop",))
        assert server.attributes["gen_ai.response.model"] == services.artifact.name
    assert servers[0].attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]

    families = {f.name: f for f in text_string_to_metric_families(metrics_text)}
    ttft = families["gen_ai_server_time_to_first_token_seconds"]
    assert sum(s.value for s in ttft.samples if s.name.endswith("_count")) == 2
    [total_blocks] = families["gateway_engine_kv_blocks_total"].samples
    assert total_blocks.value > 0
    assert "What is the capital" not in metrics_text + captured.dump()


def test_gateway_serve_with_json_logs_and_prometheus(tmp_path: Path) -> None:
    import json

    import httpx

    from tests.e2e.server import start_gateway

    env = {"GATEWAY_METRICS": "prometheus", "GATEWAY_LOG_FORMAT": "json", "GATEWAY_THREADS": "2"}
    server = start_gateway(tmp_path, extra_env=env)
    try:
        key = server.create_key("serve-telemetry")["key"]
        r = httpx.post(
            f"{server.base_url}/v1/chat/completions",
            json={
                "model": "deepseek-v4-flash",
                "max_tokens": 4,
                "messages": [{"role": "user", "content": "Hi"}],
            },
            headers={"authorization": f"Bearer {key}"},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    finally:
        server.stop()
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {"gateway_engine_kv_blocks_total", "http_server_request_duration_seconds"} <= families
    lines = [line for line in server.log_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert records and all(r["level"] for r in records)
    [access] = [r for r in records if r["logger"] == "gateway.access" and "chat" in r["message"]]
    assert access["message"] == "POST /v1/chat/completions 200"
    assert not [r for r in records if r["logger"] == "uvicorn.access"]  # replaced by the app's line
    assert key not in server.log_text()
