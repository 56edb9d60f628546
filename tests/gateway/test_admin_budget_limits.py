"""GET /admin/tenants/{name}/budget and GET/PUT /admin/tenants/{name}/limits, in-process.

On SQLite, and on PostgreSQL when GATEWAY_TEST_DATABASE_URL is set (the shared
`database_url` fixture); the budget counters in process, and in Redis when
GATEWAY_TEST_REDIS_URL is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from billing.db import transaction, utcnow
from gateway.app import create_app
from gateway.audit.models import AuditEvent
from gateway.auth import admin as admin_keys
from gateway.auth import service as auth
from gateway.auth.models import Tenant
from gateway.settings import Settings
from tests.conftest import AUDIT_KEY
from tests.usage_rows import add_usage_row

T = TypeVar("T")


def in_app(client: AsyncTestClient, fn: Callable[..., Awaitable[T]], *args: Any) -> Awaitable[T]:
    """Run `fn(*args)` on the app's event loop (the test client serves the app from its own
    thread; the app's database and Redis connections belong to that loop)."""
    return asyncio.to_thread(client.blocking_portal.call, fn, *args)


async def _env(tmp_path: Path, database_url: str, unique: str, redis_url: str = "") -> AsyncIterator[dict]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        load_model=False,
        jobs="celery",
        key_pepper="test-pepper",
        audit_key=AUDIT_KEY,
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        services = client.app.state.services
        tenant_name = f"acme-{unique}"

        async def setup() -> tuple[Tenant, auth.IssuedKey, str, str]:
            async with transaction(services.sessions) as s:
                tenant = await auth.create_tenant(s, tenant_name)
                issued = await auth.create_key(s, tenant, services.pepper)
                row, secret = await admin_keys.create_admin_key(s, f"ops-{unique}", services.pepper)
            return tenant, issued, row.name, secret

        tenant, issued, admin_name, admin_secret = await in_app(client, setup)
        yield {
            "client": client,
            "services": services,
            "name": tenant_name,
            "tenant_id": tenant.id,
            "key_id": issued.id,
            "key_prefix": issued.display_prefix,
            "secret": issued.secret,
            "actor": f"admin:{admin_name}",
            "admin": {"authorization": f"Bearer {admin_secret}"},
        }


@pytest.fixture
async def env(tmp_path: Path, database_url: str, unique: str) -> AsyncIterator[dict]:
    async for e in _env(tmp_path, database_url, unique):
        yield e


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def counters_env(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, unique: str
) -> AsyncIterator[dict]:
    """The app with in-process budget counters, and with Redis ones when configured."""
    redis_url = str(request.getfixturevalue("redis_url")) if request.param == "redis" else ""
    async for e in _env(tmp_path, database_url, unique, redis_url):
        yield e


def _assert_error(response: Any, status: int, type_: str, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_ and error["message"]
    if code is not None:
        assert error["code"] == code
    return dict(error)


async def _audit(services: Any, tenant_id: str, kind: str) -> list[AuditEvent]:
    async with services.sessions() as s:
        rows = await s.scalars(
            select(AuditEvent)
            .where(AuditEvent.tenant_id == tenant_id, AuditEvent.kind == kind)
            .order_by(AuditEvent.seq)
        )
        return list(rows)


async def _usage(services: Any, tenant_id: str, key_id: str | None, cost_total: int, request_id: str) -> None:
    await add_usage_row(
        services.sessions,
        tenant_id,
        when=utcnow(),
        cost_total=cost_total,
        request_id=request_id,
        key_id=key_id,
    )


# ----- budget -----


async def test_budget_without_one_then_after_put(env: dict) -> None:
    client, admin, path = env["client"], env["admin"], f"/admin/tenants/{env['name']}/budget"
    none = await client.get(path, headers=admin)
    assert none.status_code == 200, none.text
    body = none.json()
    assert (body["tenant"], body["tenant_id"]) == (env["name"], env["tenant_id"])
    assert body["budget"] is None and body["key_budgets"] == []

    put = await client.put(
        path,
        json={"limit_usd": "25.50", "period": "day", "mode": "soft", "alert_thresholds": [90, 50]},
        headers=admin,
    )
    assert put.status_code == 200, put.text
    got = (await client.get(path, headers=admin)).json()["budget"]
    # The PUT's answer is a subset of what the GET shows.
    assert {k: got[k] for k in put.json()} == put.json()
    assert got["limit_usd"] == "25.5" and got["limit_units"] == 25_500_000_000_000
    assert (got["period"], got["mode"], got["alert_thresholds"]) == ("day", "soft", [50, 90])
    assert got["current_period"] == utcnow().strftime("d%Y-%m-%d")
    assert (got["spent_usd"], got["spent_units"], got["reserved_usd"], got["reserved_units"]) == (
        "0",
        0,
        "0",
        0,
    )
    assert (got["remaining_usd"], got["remaining_units"]) == ("25.5", 25_500_000_000_000)

    # A second PUT replaces it; the GET follows.
    await client.put(path, json={"limit_usd": "0.000000000001", "period": "none"}, headers=admin)
    again = (await client.get(path, headers=admin)).json()["budget"]
    assert (again["limit_usd"], again["limit_units"], again["period"], again["mode"]) == (
        "0.000000000001",
        1,
        "none",
        "hard",
    )
    assert again["current_period"] == "all"

    # DELETE removes it (audited); a second DELETE finds none.
    gone = await client.delete(path, headers=admin)
    assert gone.status_code == 200 and gone.json()["removed"] is True, gone.text
    assert (await client.get(path, headers=admin)).json()["budget"] is None
    assert (await client.delete(path, headers=admin)).json()["removed"] is False
    services = client.app.state.services
    removed = await in_app(client, _audit, services, env["tenant_id"], "billing.budget.removed")
    assert [e.actor for e in removed] == [env["actor"]]


async def test_budget_get_errors(env: dict) -> None:
    client, admin = env["client"], env["admin"]
    missing = await client.get("/admin/tenants/nobody-at-all/budget", headers=admin)
    _assert_error(missing, 404, "invalid_request_error", "not_found")
    _assert_error(await client.get(f"/admin/tenants/{env['name']}/budget"), 401, "authentication_error")
    tenant_key = {"authorization": f"Bearer {env['secret']}"}
    _assert_error(
        await client.get(f"/admin/tenants/{env['name']}/budget", headers=tenant_key),
        401,
        "authentication_error",
    )


async def test_budget_shows_spent_reserved_and_key_budgets(counters_env: dict) -> None:
    env = counters_env
    client, admin, services = env["client"], env["admin"], env["services"]
    tenant_id, key_id, path = env["tenant_id"], env["key_id"], f"/admin/tenants/{env['name']}/budget"
    assert (await client.put(path, json={"limit_usd": "10"}, headers=admin)).status_code == 200

    async def key_budget() -> None:
        await services.metering.budget_store.set_budget(
            scope="key", scope_id=key_id, tenant_id=tenant_id, limit_usd="2", period="day", actor="test"
        )
        services.metering.forget_budgets(tenant_id)

    await in_app(client, key_budget)
    # Settled spend that only the ledger knows (as after a restart): 1.25 USD by the key.
    await in_app(client, _usage, services, tenant_id, key_id, 1_250_000_000_000, f"req-{env['name']}")

    body = (await client.get(path, headers=admin)).json()
    own, [key] = body["budget"], body["key_budgets"]
    assert (own["scope"], own["scope_id"], own["period"]) == ("tenant", tenant_id, "month")
    assert (own["spent_usd"], own["spent_units"], own["reserved_units"]) == ("1.25", 1_250_000_000_000, 0)
    assert own["remaining_usd"] == "8.75"
    assert (key["scope"], key["scope_id"], key["key_prefix"]) == ("key", key_id, env["key_prefix"])
    assert (key["limit_usd"], key["period"], key["spent_usd"], key["remaining_usd"]) == (
        "2",
        "day",
        "1.25",
        "0.75",
    )

    # A request in flight holds its worst case against both budgets until it settles.
    held = await in_app(
        client, services.metering.reserve, f"res-{env['name']}", tenant_id, key_id, 500_000_000_000, utcnow()
    )
    assert held is not None
    body = (await client.get(path, headers=admin)).json()
    for shown in (body["budget"], body["key_budgets"][0]):
        assert (shown["reserved_usd"], shown["reserved_units"]) == ("0.5", 500_000_000_000)
        assert shown["spent_units"] == 1_250_000_000_000  # seeded once, not counted twice
    assert body["key_budgets"][0]["remaining_usd"] == "0.25"
    await in_app(client, services.metering.settle, held, 100_000_000_000)
    body = (await client.get(path, headers=admin)).json()
    assert (body["budget"]["spent_usd"], body["budget"]["reserved_usd"]) == ("1.35", "0")


# ----- rate limits -----


async def test_limits_get_put_clear_and_audit(env: dict) -> None:
    client, admin, services = env["client"], env["admin"], env["services"]
    path = f"/admin/tenants/{env['name']}/limits"
    start = await client.get(path, headers=admin)
    assert start.status_code == 200, start.text
    assert start.json() == {"tenant": env["name"], "tenant_id": env["tenant_id"], "rpm": None, "tpm": None}

    both = await client.put(path, json={"rpm": 120, "tpm": 50_000}, headers=admin)
    assert both.status_code == 200, both.text
    assert (both.json()["rpm"], both.json()["tpm"]) == (120, 50_000)
    assert (await client.get(path, headers=admin)).json() == both.json()
    # The next request of any of the tenant's keys is held to them.
    principal = await in_app(client, services.authenticator.authenticate, env["secret"])
    [limit] = principal.rate_limits
    assert (limit.scope, limit.scope_id, limit.requests_per_minute, limit.tokens_per_minute) == (
        "tenant",
        env["tenant_id"],
        120,
        50_000,
    )

    # A field left out keeps its value; null clears a limit; 0 clears it too (as in the CLI).
    only_tpm = (await client.put(path, json={"tpm": 1000}, headers=admin)).json()
    assert (only_tpm["rpm"], only_tpm["tpm"]) == (120, 1000)
    cleared = (await client.put(path, json={"rpm": None}, headers=admin)).json()
    assert (cleared["rpm"], cleared["tpm"]) == (None, 1000)
    zero = (await client.put(path, json={"tpm": 0}, headers=admin)).json()
    assert (zero["rpm"], zero["tpm"]) == (None, None)
    assert (await in_app(client, services.authenticator.authenticate, env["secret"])).rate_limits == ()

    events = await in_app(client, _audit, services, env["tenant_id"], "tenant.limits_set")
    assert [(e.actor, e.payload) for e in events] == [
        (env["actor"], {"requests_per_minute": 120, "tokens_per_minute": 50_000}),
        (env["actor"], {"requests_per_minute": 120, "tokens_per_minute": 1000}),
        (env["actor"], {"requests_per_minute": None, "tokens_per_minute": 1000}),
        (env["actor"], {"requests_per_minute": None, "tokens_per_minute": None}),
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"rpm": -1}, "rpm"),
        ({"tpm": -5}, "tpm"),
        ({"rpm": 1.5}, "rpm"),
        ({"rpm": "10"}, "rpm"),
        ({"tpm": True}, "tpm"),
        ({"rpm": 2**31}, "rpm"),
        ({"rpm": 10, "burst": 3}, None),
        ({}, None),
        ([60], None),
    ],
)
async def test_limits_put_rejects_bad_input(env: dict, body: Any, param: str | None) -> None:
    client, admin, services = env["client"], env["admin"], env["services"]
    path = f"/admin/tenants/{env['name']}/limits"
    assert (await client.put(path, json={"rpm": 60}, headers=admin)).status_code == 200
    error = _assert_error(await client.put(path, json=body, headers=admin), 400, "invalid_request_error")
    if param is not None:
        assert error["param"] == param
    if isinstance(body, dict) and "burst" in body:
        assert "burst" in error["message"]
    # Nothing changed, and only the valid change was audited.
    assert (await client.get(path, headers=admin)).json()["rpm"] == 60
    assert len(await in_app(client, _audit, services, env["tenant_id"], "tenant.limits_set")) == 1


async def test_limits_errors(env: dict) -> None:
    client, admin = env["client"], env["admin"]
    not_json = await client.put(
        f"/admin/tenants/{env['name']}/limits",
        content=b"rpm=5",
        headers={**admin, "content-type": "application/json"},
    )
    _assert_error(not_json, 400, "invalid_request_error")
    for method in ("GET", "PUT"):
        missing = await client.request(
            method, "/admin/tenants/nobody-at-all/limits", json={"rpm": 1}, headers=admin
        )
        _assert_error(missing, 404, "invalid_request_error", "not_found")
        anonymous = await client.request(method, f"/admin/tenants/{env['name']}/limits", json={"rpm": 1})
        _assert_error(anonymous, 401, "authentication_error")
    assert (await client.get(f"/admin/tenants/{env['name']}/limits", headers=admin)).json()["rpm"] is None
