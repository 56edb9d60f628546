"""The request path's view of a tenant's calibration (gateway/service/routing.py): read from
the database, cached per process for a few seconds, a fit or rollback seen within the TTL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from billing.db import transaction
from gateway.api.schemas import decode_chat_request
from gateway.audit.log import append_event
from gateway.audit.models import AuditEvent
from gateway.errors import NotFoundError
from gateway.router_calibration import service
from gateway.router_calibration.models import RouterCalibrationVersion
from gateway.service.routing import NOT_ROUTED, Routing
from policy.router import default_router
from policy.router.calibration import Observation
from tests.policy.test_router_calibration import _draw, _requests, _tenant


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def chat(model: str, text: str):
    body = {
        "model": model,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
    }
    return decode_chat_request(json.dumps(body).encode())


async def test_fit_and_rollback_take_effect_within_the_ttl(sessions, unique):
    tid = await _tenant(sessions, unique)
    clock = Clock()
    routing = Routing(default_router(), sessions, ttl_s=2.0, clock=clock)
    assert await routing.calibration(tid) is None  # none fitted: routed as before
    await _requests(sessions, tid, [Observation(k / 200, k > 60) for k in range(200)], "a")
    async with transaction(sessions) as s:
        await service.fit_tenant(s, tid, actor="test")
    assert await routing.calibration(tid) is None  # the cached "none" holds for the TTL
    clock.now += 2.0
    v1 = await routing.calibration(tid)
    assert v1 is not None and v1.version == 1 and v1.direct_threshold is not None

    await _requests(sessions, tid, _draw(200, -1.0, 0.0, seed=3), "b")
    async with transaction(sessions) as s:
        await service.fit_tenant(s, tid, actor="test")
    clock.now += 2.5
    v2 = await routing.calibration(tid)
    assert v2 is not None and v2.version == 2
    async with transaction(sessions) as s:
        await service.rollback(s, tid, actor="test")
    clock.now += 1.0
    assert (await routing.calibration(tid)).version == 2  # type: ignore[union-attr]
    clock.now += 1.0
    assert (await routing.calibration(tid)).version == 1  # type: ignore[union-attr]

    routed = await routing.route(tid, chat("auto", "What is the capital of France?"))
    assert routed.calibration == v1 and routed.score is not None and 0.0 <= routed.score <= 1.0
    assert routed.score == default_router().score("What is the capital of France?")  # last user message
    assert await routing.route(tid, chat("deepseek-v4-flash", "hi")) is NOT_ROUTED


async def test_an_unreadable_document_routes_as_uncalibrated(sessions, unique):
    tid = await _tenant(sessions, unique)
    await _requests(sessions, tid, [Observation(k / 100, k > 50) for k in range(100)], "c")
    async with transaction(sessions) as s:
        stored = await service.fit_tenant(s, tid, actor="test")
        row = await s.scalar(
            select(RouterCalibrationVersion).where(
                RouterCalibrationVersion.tenant_id == tid, RouterCalibrationVersion.version == stored.version
            )
        )
        assert row is not None
        row.document = {**row.document, "format": "gateway-router-calibration/99"}
    routing = Routing(default_router(), sessions)
    assert await routing.calibration(tid) is None
    routing.invalidate(tid)
    assert await Routing(None, sessions).route(tid, chat("auto", "hi")) is NOT_ROUTED


async def test_quantiles_include_requests_that_did_not_cascade(sessions, unique):
    tid = await _tenant(sessions, unique)
    await _requests(sessions, tid, [Observation(k / 125, k > 50) for k in range(100)], "d")
    async with transaction(sessions) as s:  # 100 auto requests the tiers sent to Pro: no cascade
        for i in range(100):
            await append_event(
                s,
                kind="request.completed",
                actor="key:k",
                tenant_id=tid,
                request_id=f"pro{i}",
                payload={"attempt": 1, "decision": {"router_score": 0.8 + i / 500, "cascade": None}},
            )
    async with transaction(sessions) as s:
        stored = await service.fit_tenant(s, tid, actor="test")
    assert stored.observations == 100  # the fit itself: cascaded requests only
    assert stored.document["traffic_scores"] == 201  # + the 100 above + one of _requests' extras (scored)
    assert stored.calibration().tenant_percentile(0.79) == pytest.approx(0.5, abs=0.03)


async def test_deactivate_routes_uncalibrated_and_every_switch_is_audited(sessions, unique):
    tid = await _tenant(sessions, unique)
    await _requests(sessions, tid, [Observation(k / 100, k > 50) for k in range(100)], "e")
    clock = Clock()
    routing = Routing(None, sessions, ttl_s=2.0, clock=clock)
    async with transaction(sessions) as s:
        await service.fit_tenant(s, tid, actor="test")
        await service.fit_tenant(s, tid, actor="test")
        await service.rollback(s, tid, actor="ops")
    assert (await routing.calibration(tid)).version == 1  # type: ignore[union-attr]
    async with transaction(sessions) as s:
        assert await service.deactivate(s, tid, actor="ops") == 1
    clock.now += 2.0
    assert await routing.calibration(tid) is None
    async with transaction(sessions) as s:
        with pytest.raises(NotFoundError, match="no active router calibration"):
            await service.deactivate(s, tid, actor="ops")
        assert [v.active for v in await service.list_versions(s, tid)] == [False, False]
        back = await service.activate(s, tid, 2, actor="ops")  # `rollback --to 2` works again
    assert back.version == 2
    async with sessions() as s:
        rows = (
            await s.execute(
                select(AuditEvent.kind, AuditEvent.actor, AuditEvent.payload)
                .where(AuditEvent.tenant_id == tid, AuditEvent.kind.like("router_calibration.%"))
                .order_by(AuditEvent.seq)
            )
        ).all()
    assert [(r.kind, r.actor, r.payload["version"], r.payload.get("rollback")) for r in rows] == [
        ("router_calibration.activated", "test", 1, None),
        ("router_calibration.activated", "test", 2, None),
        ("router_calibration.activated", "ops", 1, True),
        ("router_calibration.deactivated", "ops", 1, None),
        ("router_calibration.activated", "ops", 2, None),
    ]
