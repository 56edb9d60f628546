"""Telemetry without HTTP: spans, request annotation, metric amounts, engine gauges."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from opentelemetry import trace

from gateway.telemetry import Telemetry
from gateway.telemetry.core import RequestScope, with_request
from tests.telemetry.helpers import Captured, capture


def test_default_telemetry_is_a_no_op() -> None:
    tel = Telemetry.disabled()
    assert not tel.tracing and tel.render_prometheus() is None
    with tel.span("work", tenant_id="t") as span:
        assert not span.is_recording()
    tel.annotate_request(model="deepseek-v4-flash")
    tel.record_completion(
        tenant_id="t",
        variant="flash",
        mode="non-think",
        model="m",
        status="completed",
        finish_reason="stop",
        latency_s=0.1,
        input_tokens=1,
        cache_hit_tokens=0,
        cache_miss_tokens=1,
        output_tokens=1,
    )
    tel.record_rejection("budget", "t")
    tel.shutdown()


def test_spans_nest_and_short_names_map_to_conventions(captured: Captured) -> None:
    tel = captured.telemetry
    with (
        tel.span("outer", tenant_id="t1", model="deepseek-v4-pro"),
        tel.span("inner", **{"gen_ai.request.top_p": 0.5}),
    ):
        pass
    outer, inner = captured.span("outer"), captured.span("inner")
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id
    assert outer.attributes["gateway.tenant_id"] == "t1"
    assert outer.attributes["gen_ai.request.model"] == "deepseek-v4-pro"
    assert inner.attributes["gen_ai.request.top_p"] == 0.5


async def test_span_works_across_awaits_and_records_scrubbed_errors(captured: Captured) -> None:
    tel = captured.telemetry
    secret = "sk-gw-" + "Q" * 43
    with pytest.raises(ValueError), tel.span("failing"):
        await asyncio.sleep(0)
        with tel.span("child"):
            await asyncio.sleep(0)
        raise ValueError(f"bad key {secret}")
    failing = captured.span("failing")
    assert captured.span("child").parent.span_id == failing.context.span_id
    assert failing.status.status_code is trace.StatusCode.ERROR
    assert secret not in captured.dump() and "sk-gw-[REDACTED]" in captured.dump()


def test_annotate_request_targets_the_request_span_from_a_child(captured: Captured) -> None:
    tel = captured.telemetry
    server = tel.tracer.start_span("POST /v1/chat/completions", kind=trace.SpanKind.SERVER)
    scope = RequestScope(server)
    from opentelemetry import context

    token = context.attach(with_request(scope, trace.set_span_in_context(server)))
    try:
        with tel.span("billing.settle"):
            tel.annotate_request(model="deepseek-v4-flash", tenant_id="t1", cost_usd=Decimal("0.0000123"))
    finally:
        context.detach(token)
        server.end()
    span = captured.span("POST /v1/chat/completions")
    assert span.attributes["gen_ai.request.model"] == "deepseek-v4-flash"
    assert span.attributes["gen_ai.operation.name"] == "chat"
    assert span.attributes["gen_ai.system"] == "deepseek"
    assert span.attributes["gateway.cost_usd"] == pytest.approx(0.0000123)
    assert "gen_ai.request.model" not in captured.span("billing.settle").attributes
    assert scope.attributes["gateway.tenant_id"] == "t1"


def test_content_attributes_are_refused(captured: Captured) -> None:
    with captured.telemetry.span("s", **{"gen_ai.prompt": "hello", "gen_ai.input.messages": "[...]"}):
        pass
    attributes = captured.span("s").attributes
    assert "gen_ai.prompt" not in attributes and "gen_ai.input.messages" not in attributes


def test_record_completion_moves_metrics_by_the_right_amounts(captured: Captured) -> None:
    tel = captured.telemetry
    common = dict(tenant_id="t1", variant="flash", mode="think-high", model="deepseek-v4-flash")
    tel.record_completion(
        **common,
        status="completed",
        finish_reason="stop",
        latency_s=1.5,
        input_tokens=100,
        cache_hit_tokens=60,
        cache_miss_tokens=40,
        output_tokens=30,
        reasoning_tokens=10,
        cost_usd=Decimal("0.00002"),
    )
    tel.record_completion(
        **common,
        status="cancelled",
        finish_reason="cancelled",
        latency_s=0.5,
        input_tokens=10,
        cache_hit_tokens=0,
        cache_miss_tokens=10,
        output_tokens=3,
        cost_usd=Decimal("0.000001"),
    )
    assert captured.total("gateway.completions", **{"gateway.tenant_id": "t1"}) == 2
    assert captured.total("gateway.completions", **{"gateway.status": "cancelled"}) == 1
    tokens = {
        cls: captured.total("gateway.tokens", **{"gateway.token.class": cls})
        for cls in ("cache_hit", "cache_miss", "output", "reasoning")
    }
    assert tokens == {"cache_hit": 60, "cache_miss": 50, "output": 33, "reasoning": 10}
    assert captured.total("gateway.cost", **{"gateway.variant": "flash"}) == pytest.approx(0.000021)
    [duration] = [
        p
        for p in captured.points("gen_ai.server.request.duration")
        if p["attributes"]["gateway.status"] == "completed"
    ]
    assert duration["count"] == 1 and duration["sum"] == pytest.approx(1.5)
    ratios = captured.points("gateway.prompt.cache_hit_ratio")
    assert sum(p["count"] for p in ratios) == 2
    assert sum(p["sum"] for p in ratios) == pytest.approx(0.6)


def test_rejections_are_counted_by_kind(captured: Captured) -> None:
    tel = captured.telemetry
    for kind in ("budget", "budget", "rate_limit", "policy", "compliance", "auth", "weird"):
        tel.record_rejection(kind, "t1")
    assert captured.total("gateway.rejections", **{"gateway.rejection.kind": "budget"}) == 2
    assert captured.total("gateway.rejections", **{"gateway.rejection.kind": "other"}) == 1
    assert captured.total("gateway.rejections") == 7


def test_engine_gauges_come_from_the_registered_callable(captured: Captured) -> None:
    stats = {"queue_depth": 3, "running": 2, "kv_blocks_used": 40, "kv_blocks_total": 2048}
    captured.telemetry.observe_engine(lambda: stats)
    captured.telemetry.observe_engine(lambda: 1 / 0)  # a broken source is skipped
    assert captured.total("gateway.engine.queue_depth") == 3
    assert captured.total("gateway.engine.kv_blocks_used") == 40
    stats["kv_blocks_used"] = 7
    assert captured.total("gateway.engine.kv_blocks_used") == 7
    assert captured.total("gateway.engine.kv_blocks_total") == 2048


def test_two_instances_do_not_share_state() -> None:
    a, b = capture(prometheus=True), capture(prometheus=True)
    try:
        a.telemetry.record_rejection("budget", "tenant-only-a")
        assert a.total("gateway.rejections") == 1 and b.total("gateway.rejections") == 0
        assert b"tenant-only-a" not in (b.telemetry.render_prometheus() or b"")
        with a.telemetry.span("only-a"):
            pass
        assert not b.finished()
        assert b"tenant-only-a" in (a.telemetry.render_prometheus() or b"")
    finally:
        a.close()
        b.close()


def test_errors_map_to_rejection_kinds() -> None:
    from billing.errors import BudgetExceededError
    from gateway.errors import AuthenticationError, InvalidRequestError, RateLimitedError
    from gateway.telemetry.rejections import rejection_kind
    from policy.errors import ComplianceViolation, PolicyForbidden

    budget = BudgetExceededError(
        scope="tenant",
        scope_id="t",
        period="day",
        limit_units=1,
        spent_units=1,
        reserved_units=0,
        requested_units=1,
    )
    assert rejection_kind(budget) == "budget"
    assert rejection_kind(AuthenticationError("no")) == "auth"
    assert rejection_kind(RateLimitedError("slow down")) == "rate_limit"
    assert rejection_kind(PolicyForbidden("no pro")) == "policy"
    assert rejection_kind(ComplianceViolation("region")) == "compliance"
    assert rejection_kind(InvalidRequestError("bad")) is None


def test_record_rejection_takes_the_tenant_from_the_request(captured: Captured) -> None:
    from opentelemetry import context

    scope = RequestScope(trace.INVALID_SPAN)
    token = context.attach(with_request(scope))
    try:
        captured.telemetry.annotate_request(tenant_id="t-annotated")
        captured.telemetry.record_rejection("budget")
    finally:
        context.detach(token)
    assert captured.total("gateway.rejections", **{"gateway.tenant_id": "t-annotated"}) == 1
