"""One API key's own limits and budget: GET/PUT /admin/keys/{key_id}/limits and
GET/PUT/DELETE /admin/keys/{key_id}/budget.

In-process, on SQLite and on PostgreSQL when GATEWAY_TEST_DATABASE_URL is set (the shared
`database_url` fixture); budget counters and rate limits in process, and in Redis when
GATEWAY_TEST_REDIS_URL is set. Their enforcement on /v1/chat/completions is tested against
a real server in tests/e2e/test_policy_billing.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from billing.db import transaction, utcnow
from gateway.auth import service as auth
from gateway.auth.models import Tenant
from tests.gateway.test_admin_budget_limits import _assert_error, _audit, _env, _usage, in_app


@pytest.fixture
async def env(tmp_path: Path, database_url: str, unique: str) -> AsyncIterator[dict]:
    async for e in _env(tmp_path, database_url, unique):
        yield e


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def counters_env(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, unique: str
) -> AsyncIterator[dict]:
    """The app with in-process counters and rate limits, and with Redis ones when configured."""
    redis_url = str(request.getfixturevalue("redis_url")) if request.param == "redis" else ""
    async for e in _env(tmp_path, database_url, unique, redis_url):
        yield e


async def _new_key(services: Any, tenant_id: str, revoked: bool = False) -> auth.IssuedKey:
    async with transaction(services.sessions) as s:
        tenant = await s.get(Tenant, tenant_id)
        assert tenant is not None
        issued = await auth.create_key(s, tenant, services.pepper)
        if revoked:
            await auth.revoke_key(s, issued.id)
    return issued


# ----- limits -----


async def test_key_limits_get_put_clear_and_audit(env: dict) -> None:
    client, admin, services = env["client"], env["admin"], env["services"]
    path = f"/admin/keys/{env['key_id']}/limits"
    start = await client.get(path, headers=admin)
    assert start.status_code == 200, start.text
    assert start.json() == {
        "key_id": env["key_id"],
        "key_prefix": env["key_prefix"],
        "tenant": env["name"],
        "tenant_id": env["tenant_id"],
        "revoked_at": None,
        "rpm": None,
        "tpm": None,
    }

    both = await client.put(path, json={"rpm": 30, "tpm": 9000}, headers=admin)
    assert both.status_code == 200, both.text
    assert (both.json()["rpm"], both.json()["tpm"]) == (30, 9000)
    assert (await client.get(path, headers=admin)).json() == both.json()
    # The key's next request is held to them; the tenant's limits are untouched.
    principal = await in_app(client, services.authenticator.authenticate, env["secret"])
    [limit] = principal.rate_limits
    assert (limit.scope, limit.scope_id, limit.requests_per_minute, limit.tokens_per_minute) == (
        "key",
        env["key_id"],
        30,
        9000,
    )
    tenant_limits = (await client.get(f"/admin/tenants/{env['name']}/limits", headers=admin)).json()
    assert (tenant_limits["rpm"], tenant_limits["tpm"]) == (None, None)

    # Left out keeps, null clears, 0 clears (as in the CLI).
    assert (await client.put(path, json={"tpm": 500}, headers=admin)).json()["rpm"] == 30
    cleared = (await client.put(path, json={"rpm": None}, headers=admin)).json()
    assert (cleared["rpm"], cleared["tpm"]) == (None, 500)
    zero = (await client.put(path, json={"tpm": 0}, headers=admin)).json()
    assert (zero["rpm"], zero["tpm"]) == (None, None)
    assert (await in_app(client, services.authenticator.authenticate, env["secret"])).rate_limits == ()

    events = await in_app(client, _audit, services, env["tenant_id"], "key.limits_set")
    key_id = env["key_id"]
    assert [(e.actor, e.payload) for e in events] == [
        (env["actor"], {"key_id": key_id, "requests_per_minute": 30, "tokens_per_minute": 9000}),
        (env["actor"], {"key_id": key_id, "requests_per_minute": 30, "tokens_per_minute": 500}),
        (env["actor"], {"key_id": key_id, "requests_per_minute": None, "tokens_per_minute": 500}),
        (env["actor"], {"key_id": key_id, "requests_per_minute": None, "tokens_per_minute": None}),
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"rpm": -1}, "rpm"),
        ({"tpm": 2.5}, "tpm"),
        ({"rpm": "10"}, "rpm"),
        ({"tpm": False}, "tpm"),
        ({"rpm": 2**31}, "rpm"),
        ({"rpm": 10, "burst": 3}, None),
        ({}, None),
        ([60], None),
    ],
)
async def test_key_limits_put_rejects_bad_input(env: dict, body: Any, param: str | None) -> None:
    client, admin, services = env["client"], env["admin"], env["services"]
    path = f"/admin/keys/{env['key_id']}/limits"
    assert (await client.put(path, json={"rpm": 60}, headers=admin)).status_code == 200
    error = _assert_error(await client.put(path, json=body, headers=admin), 400, "invalid_request_error")
    if param is not None:
        assert error["param"] == param
    assert (await client.get(path, headers=admin)).json()["rpm"] == 60
    assert len(await in_app(client, _audit, services, env["tenant_id"], "key.limits_set")) == 1


async def test_unknown_key_anonymous_and_not_json(env: dict) -> None:
    client, admin = env["client"], env["admin"]
    bodies = {"limits": {"rpm": 1}, "budget": {"limit_usd": "1"}}
    for what, body in bodies.items():
        for method in ("GET", "PUT", "DELETE") if what == "budget" else ("GET", "PUT"):
            missing = await client.request(method, f"/admin/keys/key_nope/{what}", json=body, headers=admin)
            _assert_error(missing, 404, "invalid_request_error", "not_found")
            anonymous = await client.request(method, f"/admin/keys/{env['key_id']}/{what}", json=body)
            _assert_error(anonymous, 401, "authentication_error")
            tenant_key = {"authorization": f"Bearer {env['secret']}"}
            as_tenant = await client.request(
                method, f"/admin/keys/{env['key_id']}/{what}", json=body, headers=tenant_key
            )
            _assert_error(as_tenant, 401, "authentication_error")
        not_json = await client.put(
            f"/admin/keys/{env['key_id']}/{what}",
            content=b"rpm=5",
            headers={**admin, "content-type": "application/json"},
        )
        _assert_error(not_json, 400, "invalid_request_error")


async def test_revoked_key_can_be_read_not_changed(env: dict) -> None:
    client, admin, services = env["client"], env["admin"], env["services"]
    revoked = await in_app(client, _new_key, services, env["tenant_id"], True)
    limits = await client.get(f"/admin/keys/{revoked.id}/limits", headers=admin)
    assert limits.status_code == 200 and limits.json()["revoked_at"]
    budget = await client.get(f"/admin/keys/{revoked.id}/budget", headers=admin)
    assert budget.status_code == 200 and budget.json()["budget"] is None and budget.json()["revoked_at"]
    for method, what, body in [
        ("PUT", "limits", {"rpm": 1}),
        ("PUT", "budget", {"limit_usd": "1"}),
        ("DELETE", "budget", None),
    ]:
        refused = await client.request(method, f"/admin/keys/{revoked.id}/{what}", json=body, headers=admin)
        error = _assert_error(refused, 409, "invalid_request_error", "key_revoked")
        assert "revoked" in error["message"] and revoked.id in error["message"]
    assert await in_app(client, _audit, services, env["tenant_id"], "key.limits_set") == []
    assert await in_app(client, _audit, services, env["tenant_id"], "billing.budget.set") == []


# ----- budget -----


async def test_key_budget_put_get_clear_and_audit(env: dict) -> None:
    client, admin, services = env["client"], env["admin"], env["services"]
    key_id, path = env["key_id"], f"/admin/keys/{env['key_id']}/budget"
    none = await client.get(path, headers=admin)
    assert none.status_code == 200, none.text
    body = none.json()
    assert (body["key_id"], body["key_prefix"], body["tenant"], body["tenant_id"]) == (
        key_id,
        env["key_prefix"],
        env["name"],
        env["tenant_id"],
    )
    assert body["budget"] is None and body["as_of"]

    put = await client.put(
        path,
        json={"limit_usd": "3.000000000001", "period": "day", "mode": "soft", "alert_thresholds": [90, 50]},
        headers=admin,
    )
    assert put.status_code == 200, put.text
    assert put.json() == {
        "scope": "key",
        "scope_id": key_id,
        "limit_usd": "3.000000000001",
        "period": "day",
        "mode": "soft",
        "alert_thresholds": [50, 90],
    }
    got = (await client.get(path, headers=admin)).json()["budget"]
    assert {k: got[k] for k in put.json()} == put.json()
    assert got["limit_units"] == 3_000_000_000_001 and got["current_period"] == utcnow().strftime("d%Y-%m-%d")
    assert (got["spent_units"], got["reserved_units"], got["remaining_usd"]) == (0, 0, "3.000000000001")
    # The tenant's page lists it among its key budgets; the tenant has none of its own.
    tenant_view = (await client.get(f"/admin/tenants/{env['name']}/budget", headers=admin)).json()
    assert tenant_view["budget"] is None
    assert [(b["scope_id"], b["limit_usd"]) for b in tenant_view["key_budgets"]] == [
        (key_id, "3.000000000001")
    ]

    # Defaults as for a tenant: month, hard, 50/80/100.
    again = (await client.put(path, json={"limit_usd": "7"}, headers=admin)).json()
    assert (again["period"], again["mode"], again["alert_thresholds"]) == ("month", "hard", [50, 80, 100])

    removed = await client.delete(path, headers=admin)
    assert removed.status_code == 200, removed.text
    assert removed.json() == {"key_id": key_id, "removed": True}
    assert (await client.get(path, headers=admin)).json()["budget"] is None
    assert (await client.delete(path, headers=admin)).json()["removed"] is False

    set_events = await in_app(client, _audit, services, env["tenant_id"], "billing.budget.set")
    assert [
        (e.actor, e.payload["scope"], e.payload["scope_id"], e.payload["limit_usd"]) for e in set_events
    ] == [
        (env["actor"], "key", key_id, "3.000000000001"),
        (env["actor"], "key", key_id, "7"),
    ]
    removed_events = await in_app(client, _audit, services, env["tenant_id"], "billing.budget.removed")
    assert [(e.actor, e.payload) for e in removed_events] == [
        (env["actor"], {"scope": "key", "scope_id": key_id})
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"limit_usd": "-1"}, "limit_usd"),
        ({"limit_usd": "lots"}, "limit_usd"),
        ({"limit_usd": 5}, "limit_usd"),
        ({"limit_usd": "1", "period": "week"}, "period"),
        ({"limit_usd": "1", "mode": "strict"}, "mode"),
        ({"limit_usd": "1", "alert_thresholds": [0]}, None),
        ({"limit_usd": "0.0000000000001"}, None),  # finer than the 1e-12 USD unit
        ({"limit_usd": "1", "scope": "tenant"}, None),
        ({}, None),
    ],
)
async def test_key_budget_put_rejects_bad_input(env: dict, body: Any, param: str | None) -> None:
    client, admin, services = env["client"], env["admin"], env["services"]
    path = f"/admin/keys/{env['key_id']}/budget"
    error = _assert_error(await client.put(path, json=body, headers=admin), 400, "invalid_request_error")
    if param is not None:
        assert error["param"] == param
    assert (await client.get(path, headers=admin)).json()["budget"] is None
    assert await in_app(client, _audit, services, env["tenant_id"], "billing.budget.set") == []


async def test_key_budget_shows_spent_and_reserved(counters_env: dict) -> None:
    env = counters_env
    client, admin, services = env["client"], env["admin"], env["services"]
    tenant_id, key_id, path = env["tenant_id"], env["key_id"], f"/admin/keys/{env['key_id']}/budget"
    other = await in_app(client, _new_key, services, tenant_id)
    assert (
        await client.put(path, json={"limit_usd": "2", "period": "day"}, headers=admin)
    ).status_code == 200
    # Settled spend only the ledger knows (as after a restart): 0.5 USD by this key, 9 by another.
    await in_app(client, _usage, services, tenant_id, key_id, 500_000_000_000, f"req-a-{env['name']}")
    await in_app(client, _usage, services, tenant_id, other.id, 9_000_000_000_000, f"req-b-{env['name']}")
    shown = (await client.get(path, headers=admin)).json()["budget"]
    assert (shown["spent_usd"], shown["reserved_usd"], shown["remaining_usd"]) == ("0.5", "0", "1.5")

    held = await in_app(
        client, services.metering.reserve, f"res-{env['name']}", tenant_id, key_id, 250_000_000_000, utcnow()
    )
    assert held is not None
    shown = (await client.get(path, headers=admin)).json()["budget"]
    assert (shown["spent_units"], shown["reserved_units"]) == (500_000_000_000, 250_000_000_000)
    assert shown["remaining_usd"] == "1.25"
    await in_app(client, services.metering.settle, held, 100_000_000_000)
    shown = (await client.get(path, headers=admin)).json()["budget"]
    assert (shown["spent_usd"], shown["reserved_usd"], shown["remaining_usd"]) == ("0.6", "0", "1.4")
