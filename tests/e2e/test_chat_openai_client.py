"""The foundation's promise, through the real `openai` client against `gateway serve`."""

from __future__ import annotations

import sqlite3
import time
from decimal import Decimal

import openai
import pytest

from tests.e2e.server import RunningGateway

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def client(server: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"{server.base_url}/v1", max_retries=0, timeout=120)


def db_rows(server: RunningGateway, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(server.data_dir / "gateway.db") as conn:
        return conn.execute(sql, args).fetchall()


def wait_rows(
    server: RunningGateway, count: int, sql: str, *args: object, timeout_s: float = 30
) -> list[tuple]:
    """Usage records are written by a batching writer: poll until `count` rows are there."""
    deadline = time.monotonic() + timeout_s
    rows = db_rows(server, sql, *args)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = db_rows(server, sql, *args)
    return rows


def test_answer_stream_usage_records_and_revocation(gateway_server: RunningGateway) -> None:
    issued = gateway_server.create_key("e2e-france")
    api = client(gateway_server, issued["key"])

    answer = api.chat.completions.create(
        model="deepseek-v4-flash", messages=QUESTION, temperature=0, max_tokens=32
    )
    assert "Paris" in (answer.choices[0].message.content or "")
    assert answer.model == "deepseek-v4-flash"
    usage = answer.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    extra = usage.model_extra or {}
    assert extra["prompt_cache_hit_tokens"] + extra["prompt_cache_miss_tokens"] == usage.prompt_tokens
    # Exact cost as decimal strings, with its line items and the price version in force.
    details = extra["cost_details"]
    assert Decimal(extra["cost_usd"]) == sum(Decimal(v) for v in details.values()) > 0
    assert set(details) == {"cache_hit_usd", "cache_miss_usd", "output_usd"}
    assert extra["price_version"].startswith("v4-")

    chunks = list(
        api.chat.completions.create(
            model="deepseek-v4-pro",
            messages=QUESTION,
            temperature=0,
            max_tokens=32,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]

    rows = wait_rows(
        gateway_server,
        2,
        "SELECT u.request_id, u.model, u.status, u.prompt_tokens, u.completion_tokens, u.stream "
        "FROM usage_records u JOIN tenants t ON t.id = u.tenant_id WHERE t.name = ? ORDER BY u.id",
        "e2e-france",
    )
    assert [(r[0], r[1], r[2], r[5]) for r in rows] == [
        (answer.id, "deepseek-v4-flash", "completed", 0),
        (chunks[0].id, "deepseek-v4-pro", "completed", 1),
    ]
    assert rows[0][3] == usage.prompt_tokens and rows[0][4] == usage.completion_tokens
    # Request events go through the batched audit writer: committed a few ms after the answer.
    audited = wait_rows(gateway_server, 1, "SELECT kind FROM audit_events WHERE request_id = ?", answer.id)
    assert audited == [("request.completed",)]

    assert gateway_server.cli("key", "revoke", issued["id"]).returncode == 0
    # The server remembers a key that authenticated for GATEWAY_AUTH_CACHE_MS (1 s): a key
    # revoked by another process (this CLI) stops working within that time.
    time.sleep(1.1)
    with pytest.raises(openai.AuthenticationError):
        api.chat.completions.create(model="deepseek-v4-flash", messages=QUESTION, max_tokens=4)

    secret = issued["key"]
    for path in gateway_server.data_dir.glob("gateway.db*"):
        assert secret.encode() not in path.read_bytes()
    assert secret not in gateway_server.log_text()
    assert "capital of France" not in gateway_server.log_text()


def test_models_list_shows_artifacts(gateway_server: RunningGateway) -> None:
    api = client(gateway_server, gateway_server.create_key("e2e-models")["key"])
    models = {m.id: m for m in api.models.list().data}
    assert set(models) == {"deepseek-v4-flash", "deepseek-v4-pro"}
    artifact = (models["deepseek-v4-flash"].model_extra or {})["artifact"]
    assert artifact["license"] == "apache-2.0"
    assert len(artifact["sha256"]) == 64
    assert api.models.retrieve("deepseek-v4-pro").id == "deepseek-v4-pro"
    with pytest.raises(openai.NotFoundError):
        api.models.retrieve("gpt-4")


def test_client_disconnect_still_records_usage(gateway_server: RunningGateway) -> None:
    api = client(gateway_server, gateway_server.create_key("e2e-cancel")["key"])
    stream = api.chat.completions.create(
        model="deepseek-v4-flash",
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=400,
        stream=True,
    )
    first = next(iter(stream))
    next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 30
    rows: list[tuple] = []
    while time.monotonic() < deadline:
        rows = db_rows(
            gateway_server,
            "SELECT status, completion_tokens FROM usage_records WHERE request_id = ?",
            first.id,
        )
        if rows:
            break
        time.sleep(0.2)
    assert rows and rows[0][0] == "cancelled"
    assert rows[0][1] < 400


def test_think_max_and_non_think_report_different_measured_compute(gateway_server: RunningGateway) -> None:
    """The engine's own count of what an answer cost rides in the usage (`compute_details`),
    non-streaming and in a stream's usage chunk; the mode changes it."""
    api = client(gateway_server, gateway_server.create_key("e2e-compute")["key"])

    def compute(**kwargs: object) -> dict[str, int]:
        answer = api.chat.completions.create(
            model="deepseek-v4-flash", messages=QUESTION, temperature=0, max_tokens=24, **kwargs
        )
        assert answer.usage is not None
        details = (answer.usage.model_extra or {})["compute_details"]
        assert details["tokens_run"] > 0 and details["flops"] > 0 and details["kv_cache_bytes"] > 0
        return details

    non_think = compute(extra_body={"thinking": {"type": "disabled"}})
    think_max = compute(reasoning_effort="max", extra_body={"thinking": {"type": "enabled"}})
    assert think_max["tokens_run"] != non_think["tokens_run"]
    assert think_max["flops"] != non_think["flops"]

    chunks = list(
        api.chat.completions.create(
            model="deepseek-v4-flash",
            messages=QUESTION,
            temperature=0,
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and (usage.model_extra or {})["compute_details"]["tokens_run"] > 0


MODE_ASKS = {  # the DeepSeek fields that ask for each reasoning mode
    "non-think": {"extra_body": {"thinking": {"type": "disabled"}}},
    "think-high": {"reasoning_effort": "high", "extra_body": {"thinking": {"type": "enabled"}}},
    "think-max": {"reasoning_effort": "max", "extra_body": {"thinking": {"type": "enabled"}}},
}


def test_every_variant_and_mode_is_served_and_recorded_as_asked(gateway_server: RunningGateway) -> None:
    """The six (variant, mode) pairs through the HTTP API: the headers name what served the
    answer, its usage carries the engine's measured compute, and its usage record (with its
    exact cost) names the same variant and mode."""
    api = client(gateway_server, gateway_server.create_key("e2e-variant-mode")["key"])
    served: dict[tuple[str, str], str] = {}
    for variant in ("flash", "pro"):
        for mode, asks in MODE_ASKS.items():
            raw = api.chat.completions.with_raw_response.create(
                model=f"deepseek-v4-{variant}", messages=QUESTION, temperature=0, max_tokens=12, **asks
            )
            assert (raw.headers["x-gateway-variant"], raw.headers["x-gateway-mode"]) == (variant, mode)
            answer = raw.parse()
            assert answer.usage is not None and answer.usage.completion_tokens > 0
            details = (answer.usage.model_extra or {})["compute_details"]
            assert details["tokens_run"] > 0 and details["flops"] > 0
            if mode == "non-think":
                assert answer.usage.completion_tokens_details.reasoning_tokens == 0
            served[(variant, mode)] = answer.id
    for (variant, mode), request_id in served.items():
        (row,) = wait_rows(
            gateway_server,
            1,
            "SELECT variant, mode, status, cost_total FROM usage_records WHERE request_id = ?",
            request_id,
        )
        assert row[:3] == (variant, mode, "completed") and row[3] > 0
