"""The compliance admin API in-process (no model), registered on a real app."""

from __future__ import annotations

import asyncio
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
from gateway.compliance.admin_api import compliance_router
from gateway.settings import Settings


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[dict]:
    settings = Settings(data_dir=tmp_path, load_model=False, jobs="celery")
    await asyncio.to_thread(migrate.upgrade, settings.resolved_database_url)
    pepper = load_or_create_pepper("", tmp_path)
    engine = make_engine(settings.resolved_database_url)
    async with transaction(make_sessionmaker(engine)) as s:
        await auth.create_tenant(s, "acme")
        _, admin_secret = await admin_keys.create_admin_key(s, "ops", pepper)
    app = create_app(settings)
    if not any(route.path == "/admin/compliance/artifacts" for route in app.routes):  # not wired yet
        app.register(compliance_router)
    async with AsyncTestClient(app=app) as client:
        yield {"client": client, "admin": {"authorization": f"Bearer {admin_secret}"}}
    await engine.dispose()


async def test_registry_profile_report_verify(env):
    c, admin = env["client"], env["admin"]
    assert (await c.get("/admin/compliance/artifacts")).status_code == 401
    r = await c.post(
        "/admin/compliance/artifacts",
        headers=admin,
        json={"name": "deepseek-v4-pro-weights", "kind": "model_weights", "license": "MIT", "source": "hf"},
    )
    assert r.status_code == 201, r.text
    assert (r.json()["license"], r.json()["patent_grant"], r.json()["created_by"]) == (
        "MIT",
        "none",
        "admin:ops",
    )
    r = await c.post(
        "/admin/compliance/pools",
        headers=admin,
        json={
            "name": "fra",
            "device_kind": "gpu",
            "vendor": "nvidia",
            "software_stack": "CUDA",
            "region": "eu-central",
        },
    )
    assert r.status_code == 201, r.text
    r = await c.post(
        "/admin/compliance/deployments",
        headers=admin,
        json={
            "name": "pro-fra",
            "model_id": "deepseek-v4-pro",
            "variant": "pro",
            "pool": "fra",
            "artifacts": ["deepseek-v4-pro-weights"],
        },
    )
    assert r.status_code == 201, r.text
    deployments = (await c.get("/admin/compliance/deployments", headers=admin)).json()["data"]
    assert deployments[0]["pool"]["region"] == "eu-central"
    r = await c.post("/admin/compliance/pools", headers=admin, json={"name": "x", "bogus": 1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "bogus"

    bad = await c.put(
        "/admin/tenants/acme/compliance/profile", headers=admin, content=b"retention: {mode: full}"
    )
    assert bad.status_code == 400 and "retention.days" in bad.json()["error"]["message"]
    ok = await c.put(
        "/admin/tenants/acme/compliance/profile",
        headers=admin,
        content=b"patent_clearance: {use_cases: [medical]}\n",
    )
    assert ok.status_code == 200 and ok.json()["version"] == 1
    shown = (await c.get("/admin/tenants/acme/compliance/profile", headers=admin)).json()
    assert shown["document"]["patent_clearance"]["use_cases"] == ["medical"] and len(shown["versions"]) == 1

    report = await c.get("/admin/tenants/acme/compliance/report?from=2026-11-01&to=2026-11-30", headers=admin)
    assert report.status_code == 200 and report.json()["requests"] == 0
    csv_report = await c.get(
        "/admin/tenants/acme/compliance/report?from=2026-11-01&to=2026-11-30&format=csv", headers=admin
    )
    assert csv_report.headers["content-type"].startswith("text/csv")
    assert csv_report.text.startswith("tenant_id,period_start")

    verify = (await c.get("/admin/audit/verify", headers=admin)).json()
    assert verify["ok"] is True and verify["checked"] == 4  # registry (3) and profile (1) events
