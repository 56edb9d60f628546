"""Admin and usage endpoints in-process (no model): Litestar's test client on a real app."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from billing.db import make_engine, make_sessionmaker, transaction
from gateway import migrate
from gateway.app import create_app
from gateway.auth import admin as admin_keys
from gateway.auth import service as auth
from gateway.auth.keys import load_or_create_pepper
from gateway.settings import Settings
from tests.usage_rows import add_usage_row


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[dict]:
    settings = Settings(data_dir=tmp_path, load_model=False, jobs="celery")
    await asyncio.to_thread(migrate.upgrade, settings.resolved_database_url)
    pepper = load_or_create_pepper("", tmp_path)
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessionmaker(engine)
    async with transaction(sessions) as s:
        tenant = await auth.create_tenant(s, "acme")
        issued = await auth.create_key(s, tenant, pepper)
        _, admin_secret = await admin_keys.create_admin_key(s, "ops", pepper)
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield {
            "client": client,
            "sessions": sessions,
            "tenant_id": tenant.id,
            "key": issued.secret,
            "admin": {"authorization": f"Bearer {admin_secret}"},
            "tenant": {"authorization": f"Bearer {issued.secret}"},
        }
    await engine.dispose()


async def test_usage_after_rollup_for_tenant_and_admin(env) -> None:
    client, today = env["client"], dt.datetime.now(dt.UTC)
    await add_usage_row(
        env["sessions"], env["tenant_id"], when=today, cost_total=4_000_000_000, request_id="req-1"
    )
    job = await client.post("/admin/jobs/billing.hourly_rollup", headers=env["admin"])
    assert job.status_code == 200, job.text
    mine = await client.get("/v1/usage", headers=env["tenant"])
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert body["total_cost_usd"] == "0.004"
    classes = {i["token_class"]: i["tokens"] for i in body["data"][0]["line_items"]}
    assert classes == {"cache_hit": 400, "cache_miss": 600, "output": 200}
    csv = await client.get("/admin/tenants/acme/usage?format=csv", headers=env["admin"])
    assert csv.status_code == 200 and csv.text.startswith("date,variant,mode,token_class")
    assert (await client.get("/v1/usage?start=yesterday", headers=env["tenant"])).status_code == 400
    assert (await client.get("/v1/usage?format=xml", headers=env["tenant"])).status_code == 400
    # Tenant keys cannot read the admin API, admin keys cannot call the tenant API.
    assert (await client.get("/admin/tenants/acme/usage", headers=env["tenant"])).status_code == 401
    assert (await client.get("/v1/usage", headers=env["admin"])).status_code == 401


async def test_invoice_savings_and_budget(env) -> None:
    client = env["client"]
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    await add_usage_row(
        env["sessions"],
        env["tenant_id"],
        when=dt.datetime.now(dt.UTC),
        cost_total=8_000_000_000,
        request_id="req-2",
    )
    await client.post("/admin/jobs/billing.hourly_rollup", headers=env["admin"])
    invoice = (await client.get(f"/admin/tenants/acme/invoices/{month}", headers=env["admin"])).json()
    assert invoice["status"] == "draft" and invoice["subtotal_exact_usd"] == "0.008"
    assert invoice["total_usd"] == "0.01"  # rounded once, to cents
    savings = (await client.get("/admin/tenants/acme/savings", headers=env["admin"])).json()
    assert {c["comparator"] for c in savings["comparators"]} >= {"claude-opus-4.7"} or savings["comparators"]
    assert (await client.get("/admin/tenants/acme/invoices/2026-13", headers=env["admin"])).status_code == 400
    budget = await client.put(
        "/admin/tenants/acme/budget", json={"limit_usd": "25.5", "period": "day"}, headers=env["admin"]
    )
    assert budget.status_code == 200, budget.text
    assert budget.json()["limit_usd"].startswith("25.5")
    bad = await client.put("/admin/tenants/acme/budget", json={"limit_usd": "-1"}, headers=env["admin"])
    assert bad.status_code == 400
    assert (
        await client.put("/admin/tenants/nobody/budget", json={"limit_usd": "1"}, headers=env["admin"])
    ).status_code == 404


async def test_policy_admin_round_trip(env) -> None:
    client, admin = env["client"], env["admin"]
    assert (await client.get("/admin/tenants/acme/policy", headers=admin)).status_code == 404
    put = await client.put(
        "/admin/tenants/acme/policy", content=b"variants: {allowed: [flash]}\n", headers=admin
    )
    assert put.status_code == 200, put.text
    assert put.json()["version"] == 1
    bad = await client.put(
        "/admin/tenants/acme/policy", content=b"variants: {allowed: [giant]}\n", headers=admin
    )
    assert bad.status_code == 400 and "variants.allowed" in bad.json()["error"]["message"]
    await client.put("/admin/tenants/acme/policy", content=b"{}", headers=admin)
    rolled = await client.post("/admin/tenants/acme/policy/rollback", headers=admin)
    assert rolled.json()["version"] == 1
    versions = (await client.get("/admin/tenants/acme/policy/versions", headers=admin)).json()["data"]
    assert [v["version"] for v in versions] == [1, 2] and [v["active"] for v in versions] == [True, False]


async def test_prices_export_and_import(env) -> None:
    client, admin = env["client"], env["admin"]
    exported = (await client.get("/admin/prices", headers=admin)).json()
    assert len(exported["versions"]) >= 3
    again = await client.post("/admin/prices", json=exported, headers=admin)
    assert again.status_code == 200, again.text
    broken = await client.post("/admin/prices", json={"versions": [{"id": "x"}]}, headers=admin)
    assert broken.status_code == 400
    assert (await client.post("/admin/jobs/nope", headers=admin)).status_code == 404


async def test_completions_without_engine_are_503(env) -> None:
    r = await env["client"].post(
        "/v1/chat/completions",
        json={"model": "deepseek-v4-flash", "messages": [{"role": "user", "content": "hi"}]},
        headers=env["tenant"],
    )
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error"
