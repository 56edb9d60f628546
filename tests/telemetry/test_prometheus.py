"""The Prometheus exposition parses with prometheus_client's parser and has the right values."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client.parser import text_string_to_metric_families

from gateway.telemetry.prometheus import label_name, metric_name
from tests.telemetry.helpers import Captured


def _families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _sample(families: dict, family: str, sample: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {sample} {labels} in {family}")


def test_names_follow_the_otel_to_prometheus_rules() -> None:
    assert metric_name("http.server.request.duration", "s") == "http_server_request_duration_seconds"
    assert metric_name("gateway.tokens", "{token}") == "gateway_tokens"
    assert metric_name("gateway.cost", "USD") == "gateway_cost_usd"
    assert label_name("gateway.tenant_id") == "gateway_tenant_id"


def test_exposition_parses_and_carries_the_recorded_values(captured: Captured) -> None:
    tel = captured.telemetry
    tel.observe_engine(lambda: {"queue_depth": 4, "kv_blocks_used": 12, "kv_blocks_total": 100})
    tel.record_completion(
        tenant_id='t"1\\x',
        variant="pro",
        mode="think-max",
        model="deepseek-v4-pro",
        status="completed",
        finish_reason="stop",
        latency_s=2.0,
        input_tokens=20,
        cache_hit_tokens=5,
        cache_miss_tokens=15,
        output_tokens=7,
        reasoning_tokens=3,
        cost_usd=Decimal("0.5"),
    )
    tel.record_rejection("rate_limit", "t2")
    tel.ttft.record(0.2, {"gen_ai.request.model": "deepseek-v4-pro"})
    text = (tel.render_prometheus() or b"").decode()
    families = _families(text)
    tenant = {"gateway_tenant_id": 't"1\\x'}
    assert _sample(families, "gateway_completions", "gateway_completions_total", **tenant) == 1
    assert _sample(families, "gateway_tokens", "gateway_tokens_total", gateway_token_class="cache_miss") == 15
    assert _sample(families, "gateway_cost_usd", "gateway_cost_usd_total", gateway_variant="pro") == 0.5
    assert (
        _sample(
            families,
            "gateway_rejections",
            "gateway_rejections_total",
            gateway_rejection_kind="rate_limit",
            gateway_tenant_id="t2",
        )
        == 1
    )
    assert _sample(families, "gateway_engine_queue_depth", "gateway_engine_queue_depth") == 4
    assert _sample(families, "gateway_engine_kv_blocks_used", "gateway_engine_kv_blocks_used") == 12
    hist = "gen_ai_server_request_duration_seconds"
    assert families[hist].type == "histogram"
    assert _sample(families, hist, hist + "_count", gateway_status="completed") == 1
    assert _sample(families, hist, hist + "_sum", gateway_status="completed") == 2.0
    assert _sample(families, hist, hist + "_bucket", le="2.5") == 1
    assert _sample(families, hist, hist + "_bucket", le="1.0") == 0
    ttft = "gen_ai_server_time_to_first_token_seconds"
    assert _sample(families, ttft, ttft + "_bucket", le="0.25") == 1
    assert "process_cpu_seconds" in families  # the process collector of the private registry


def test_counters_accumulate_between_scrapes(captured: Captured) -> None:
    tel = captured.telemetry
    for expected in (1, 2, 3):
        tel.record_rejection("budget", "t")
        families = _families((tel.render_prometheus() or b"").decode())
        assert _sample(families, "gateway_rejections", "gateway_rejections_total") == expected
