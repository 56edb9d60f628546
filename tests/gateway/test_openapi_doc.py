"""The published OpenAPI 3.1 document, in-process (no model): its shape, and real response
bodies of the admin and usage API validated against it (schemathesis does the same for
every operation against a live server: tests/e2e/test_openapi_schemathesis.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from litestar.testing import AsyncTestClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from billing.db import make_engine, make_sessionmaker, transaction
from gateway import migrate
from gateway.api.openapi.operations import OPERATIONS
from gateway.app import create_app
from gateway.auth import admin as admin_keys
from gateway.auth import service as auth
from gateway.auth.keys import load_or_create_pepper
from gateway.settings import Settings

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    settings = Settings(data_dir=tmp_path, load_model=False, jobs="celery")
    await asyncio.to_thread(migrate.upgrade, settings.resolved_database_url)
    pepper = load_or_create_pepper("", tmp_path)
    engine = make_engine(settings.resolved_database_url)
    async with transaction(make_sessionmaker(engine)) as s:
        tenant = await auth.create_tenant(s, "acme")
        issued = await auth.create_key(s, tenant, pepper)
        _, admin_secret = await admin_keys.create_admin_key(s, "ops", pepper)
    async with AsyncTestClient(app=create_app(settings)) as client:
        schema = (await client.get("/schema/openapi.json")).json()
        yield {
            "client": client,
            "schema": schema,
            "key_id": issued.id,
            "admin": {"authorization": f"Bearer {admin_secret}"},
            "tenant": {"authorization": f"Bearer {issued.secret}"},
        }
    await engine.dispose()


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in schema["paths"].items() for m, op in item.items() if m in METHODS]


def _validator(schema: dict[str, Any], ref: dict[str, Any]) -> jsonschema.Draft202012Validator:
    document = Resource.from_contents(schema, default_specification=DRAFT202012)
    registry: Registry = Registry().with_resource("urn:openapi", document)
    full = {**ref, "$ref": "urn:openapi" + ref["$ref"]} if "$ref" in ref else ref
    return jsonschema.Draft202012Validator(full, registry=registry)


def _success_schema(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    responses = schema["paths"][path][method]["responses"]
    status = next(s for s in responses if s.startswith("2"))
    return dict(responses[status]["content"]["application/json"]["schema"])


async def test_document_shape(env: dict[str, Any]) -> None:
    schema = env["schema"]
    assert schema["openapi"] == "3.1.0"
    schemes = schema["components"]["securitySchemes"]
    assert schemes["tenantKey"]["scheme"] == schemes["adminKey"]["scheme"] == "bearer"
    for component in schema["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(component)
    ops = _operations(schema)
    assert len(ops) >= 34
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids))
    for method, path, op in ops:
        expected = "adminKey" if path.startswith("/admin") else "tenantKey"
        assert op["security"] == [{expected: []}], (method, path)
        for status in ("401", "default"):
            assert op["responses"][status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }
        assert any(s.startswith("2") for s in op["responses"]), (method, path)
    # Every documented operation exists (no stale entries); bodies where they are parsed.
    present = {(m.upper(), p) for m, p, _ in ops}
    assert set(OPERATIONS) <= present, set(OPERATIONS) - present
    for (method, path), doc in OPERATIONS.items():
        op = schema["paths"][path][method.lower()]
        assert ("requestBody" in op) == (doc.request is not None or doc.text_body is not None), path
    error = schema["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"message", "type", "param", "code"}


async def test_deepseek_fields_are_described(env: dict[str, Any]) -> None:
    schema = env["schema"]
    components = schema["components"]["schemas"]
    chat = schema["paths"]["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    request = components["ChatCompletionRequest"]["properties"]
    assert {"thinking", "reasoning_effort", "stream_options", "max_tokens"} <= set(request)
    assert set(components["Thinking"]["properties"]["type"]["enum"]) == {"enabled", "disabled"}
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    usage = components["CompletionUsage"]["properties"]
    assert {
        "prompt_cache_hit_tokens",
        "prompt_cache_miss_tokens",
        "completion_tokens_details",
        "cost_usd",
    } <= set(usage)
    assert "reasoning_content" in components["AssistantMessage"]["properties"]
    assert "reasoning_content" in components["ChunkDelta"]["properties"]


async def test_real_bodies_match_the_document(env: dict[str, Any]) -> None:
    client, schema, admin = env["client"], env["schema"], env["admin"]
    key_id = env["key_id"]
    calls: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("get", "/v1/models", "/v1/models", None),
        ("get", "/v1/models/{model_id}", "/v1/models/deepseek-v4-pro", None),
        ("get", "/v1/usage", "/v1/usage", None),
        ("get", "/admin/tenants", "/admin/tenants", None),
        ("post", "/admin/tenants", "/admin/tenants", {"name": "globex"}),
        ("post", "/admin/tenants/{name}/keys", "/admin/tenants/globex/keys", {"name": "ci"}),
        ("get", "/admin/tenants/{name}/keys", "/admin/tenants/acme/keys", None),
        ("put", "/admin/tenants/{name}/limits", "/admin/tenants/acme/limits", {"rpm": 100}),
        ("get", "/admin/tenants/{name}/limits", "/admin/tenants/acme/limits", None),
        ("put", "/admin/keys/{key_id}/limits", f"/admin/keys/{key_id}/limits", {"tpm": 5000}),
        ("get", "/admin/keys/{key_id}/limits", f"/admin/keys/{key_id}/limits", None),
        ("put", "/admin/tenants/{name}/budget", "/admin/tenants/acme/budget", {"limit_usd": "10"}),
        ("put", "/admin/keys/{key_id}/budget", f"/admin/keys/{key_id}/budget", {"limit_usd": "2.5"}),
        ("get", "/admin/tenants/{name}/budget", "/admin/tenants/acme/budget", None),
        ("get", "/admin/keys/{key_id}/budget", f"/admin/keys/{key_id}/budget", None),
        ("delete", "/admin/keys/{key_id}/budget", f"/admin/keys/{key_id}/budget", None),
        ("delete", "/admin/tenants/{name}/budget", "/admin/tenants/acme/budget", None),
        ("get", "/admin/tenants/{name}/usage", "/admin/tenants/acme/usage", None),
        ("get", "/admin/tenants/{name}/invoices/{month}", "/admin/tenants/acme/invoices/2026-09", None),
        ("get", "/admin/tenants/{name}/savings", "/admin/tenants/acme/savings", None),
        ("post", "/admin/jobs/{task}", "/admin/jobs/billing.hourly_rollup", None),
        ("get", "/admin/tenants/{name}/policy/versions", "/admin/tenants/acme/policy/versions", None),
        ("get", "/admin/compliance/artifacts", "/admin/compliance/artifacts", None),
        ("get", "/admin/compliance/pools", "/admin/compliance/pools", None),
        ("post", "/admin/keys/{key_id}/revoke", f"/admin/keys/{key_id}/revoke", None),
    ]
    for method, template, url, body in calls:
        headers = env["tenant"] if url.startswith("/v1") else admin
        r = await client.request(method.upper(), url, json=body, headers=headers)
        assert 200 <= r.status_code < 300, (url, r.status_code, r.text)
        _validator(schema, _success_schema(schema, method, template)).validate(r.json())
    # Errors have the documented shape too (a revoked key, an unknown tenant, a bad body).
    errors = [
        await client.get("/v1/usage", headers=env["tenant"]),
        await client.get("/admin/tenants/nobody/usage", headers=admin),
        await client.put("/admin/tenants/acme/limits", json={"rpm": -1}, headers=admin),
    ]
    for r in errors:
        assert 400 <= r.status_code < 500
        _validator(schema, {"$ref": "#/components/schemas/Error"}).validate(r.json())


async def test_405_carries_allow_and_the_page_is_served(env: dict[str, Any]) -> None:
    client = env["client"]
    r = await client.get("/v1/chat/completions")
    assert r.status_code == 405 and "POST" in r.headers["allow"]
    assert r.json()["error"]["code"] == "method_not_allowed"
    r = await client.delete("/admin/tenants", headers=env["admin"])
    assert r.status_code == 405 and {"GET", "POST"} <= {m.strip() for m in r.headers["allow"].split(",")}
    page = await client.get("/schema")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/schema/openapi.json" in page.text


async def test_switched_off(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, load_model=False, jobs="celery", openapi=False)
    await asyncio.to_thread(migrate.upgrade, settings.resolved_database_url)
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert (await client.get("/schema/openapi.json")).status_code == 404
        assert (await client.get("/schema")).status_code == 404
    assert Settings.from_env({"GATEWAY_OPENAPI": "false"}).openapi is False
    assert Settings.from_env({}).openapi is True
