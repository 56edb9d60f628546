"""A tenant's router calibration changes how its `model: auto` requests are routed, through
HTTP: fitted and rolled back (the service calls behind `gateway router fit` and `rollback`,
in this process against the server's database: each CLI process would spend seconds
importing torch), seen by the server within its cache TTL, and named in each decision's
audit record. The CLI commands themselves: tests/policy/test_router_calibration.py."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import make_engine, make_sessionmaker, transaction
from gateway.audit.log import append_events
from gateway.router_calibration import service
from policy.router import default_router
from tests.e2e.server import RunningGateway
from tests.e2e.test_policy_billing import audit_payloads

pytestmark = pytest.mark.slow

# Everything below 0.97 is Flash non-think with a cascade to Pro; a threshold of 0 never
# escalates, so each request is one short attempt unless the calibration sends it direct.
POLICY = """
router:
  tiers:
    - {below: 0.97, variant: flash, mode: non-think}
    - {variant: pro, mode: non-think}
cascade:
  enabled: true
  threshold: 0.0
  method: mean
  escalate_to: {variant: pro}
  models: [auto]
"""
PROMPT = (
    "A train leaves the station at 3 pm travelling at 60 miles per hour. A second train leaves the "
    "same station at 4 pm travelling at 80 miles per hour on the same track. At what time does the "
    "second train catch up with the first, and how far from the station are they then?"
)
T = TypeVar("T")
TTL_S = 2.0  # gateway.service.routing.Routing's default


def fit_after(server: RunningGateway, tenant_id: str, outcomes: list[tuple[float, bool]], tag: str) -> dict:
    """Cascaded requests in the tenant's audit log as the gateway records them (attempt 1 with
    the router score, the cascade plan and the measured confidence; attempt 2 if escalated),
    then a fit: the new version, activated, as `gateway router fit` prints it."""
    events = []
    for i, (score, escalated) in enumerate(outcomes):
        rid = f"chatcmpl-{tag}{i}"
        first = {
            "attempt": 1,
            "decision": {"router_score": score, "cascade": {"threshold": 0.6, "method": "mean"}},
            "escalation": {"confidence": 0.3 if escalated else 0.9, "reason": "history"},
        }
        events.append(
            {
                "kind": "request.completed",
                "actor": "key:k",
                "tenant_id": tenant_id,
                "request_id": rid,
                "payload": first,
            }
        )
        if escalated:
            events.append(
                {
                    "kind": "request.completed",
                    "actor": "key:k",
                    "tenant_id": tenant_id,
                    "request_id": rid,
                    "payload": {**first, "attempt": 2},
                }
            )

    async def write(sessions: async_sessionmaker[AsyncSession]) -> dict:
        async with transaction(sessions) as session:
            await append_events(session, events)
        async with transaction(sessions) as session:
            return (await service.fit_tenant(session, tenant_id, actor="test")).as_dict()

    return on_server_db(server, write)


def rollback(server: RunningGateway, tenant_id: str) -> int:
    async def go(sessions: async_sessionmaker[AsyncSession]) -> int:
        async with transaction(sessions) as session:
            return (await service.rollback(session, tenant_id, actor="test")).version

    return on_server_db(server, go)


def on_server_db(
    server: RunningGateway, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]
) -> T:
    async def run() -> T:
        engine = make_engine(f"sqlite+aiosqlite:///{server.data_dir / 'gateway.db'}")
        try:
            return await work(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def routed(server: RunningGateway, key: str) -> tuple[str, dict]:
    """(x-gateway-variant, the first attempt's audited decision) of one `auto` request."""
    response = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json={
            "model": "auto",
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 4,
            "temperature": 0,
        },
        headers={"authorization": f"Bearer {key}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    payloads = audit_payloads(server, response.json()["id"])
    return response.headers["x-gateway-variant"], next(p for p in payloads if p["attempt"] == 1)["decision"]


def test_fit_changes_routing_and_rollback_restores_it(
    gateway_server: RunningGateway, tmp_path: Path, unique: str
) -> None:
    server = gateway_server
    tenant = f"router-cal-{unique}"
    key = server.create_key(tenant)["key"]
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    server.cli("policy", "set", "--tenant", tenant, str(policy))
    with sqlite3.connect(server.data_dir / "gateway.db") as conn:
        (tenant_id,) = conn.execute("SELECT id FROM tenants WHERE name = ?", (tenant,)).fetchone()
    score = default_router().score(PROMPT)
    assert 0.8 < score < 0.97  # a hard prompt, still in the Flash tier

    variant, before = routed(server, key)
    assert variant == "flash" and before["cascade"] is not None and before["router_calibration"] is None
    assert before["router_score"] == pytest.approx(score)

    # v1: escalations unrelated to the score (one in five): the cascade stays.
    v1 = fit_after(server, tenant_id, [(k / 100, k % 5 == 0) for k in range(100)], "a")
    assert v1["version"] == 1 and v1["active"]
    time.sleep(TTL_S + 0.5)
    variant, flat = routed(server, key)
    assert variant == "flash" and flat["cascade"] is not None
    assert flat["router_calibration"]["version"] == 1 and not flat["router_calibration"]["direct"]

    # v2: now everything above 0.3 escalates: the hard prompt goes straight to Pro.
    # (in arrival order, not sorted by score: the fit checks itself on the newest 20%)
    later = [(k / 400, k > 120) for k in range(400)]
    random.Random(5).shuffle(later)
    v2 = fit_after(server, tenant_id, later, "b")
    assert v2["version"] == 2 and v2["document"]["direct_threshold"] < score
    time.sleep(TTL_S + 0.5)
    variant, direct = routed(server, key)
    assert variant == "pro" and direct["cascade"] is None and direct["variant"] == "pro"
    use = direct["router_calibration"]
    assert use["version"] == 2 and use["direct"] and use["escalation_probability"] > use["break_even"]
    assert any("router calibration v2" in r and "no cascade" in r for r in direct["reasons"])

    assert rollback(server, tenant_id) == 1
    time.sleep(TTL_S + 0.5)
    variant, back = routed(server, key)
    assert variant == "flash" and back["cascade"] is not None and back["router_calibration"]["version"] == 1
