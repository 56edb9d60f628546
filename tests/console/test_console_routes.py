"""The console's static files in-process: headers, content types, the off switch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from gateway import migrate
from gateway.app import create_app
from gateway.settings import Settings

SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


async def _client(tmp_path: Path, **overrides: object) -> AsyncIterator[AsyncTestClient]:
    settings = Settings(data_dir=tmp_path, load_model=False, jobs="celery").with_overrides(**overrides)
    await asyncio.to_thread(migrate.upgrade, settings.resolved_database_url)
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[AsyncTestClient]:
    async for c in _client(tmp_path):
        yield c


def _assert_secure(response) -> None:
    for name, value in SECURITY.items():
        assert response.headers[name] == value, name
    csp = [d.strip() for d in response.headers["content-security-policy"].split(";")]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert "unsafe-eval" not in response.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/console", "/console/"])
async def test_console_page_is_html_with_security_headers(client: AsyncTestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    _assert_secure(response)
    assert '<script src="/console/console-core.js" defer></script>' in response.text
    assert '<script src="/console/console.js" defer></script>' in response.text
    assert '<link rel="stylesheet" href="/console/console.css">' in response.text


@pytest.mark.parametrize(
    ("name", "media_type", "marker"),
    [
        ("console-core.js", "text/javascript", "const GatewayConsole"),
        ("console.js", "text/javascript", '"use strict"'),
        ("console.css", "text/css", ":root"),
    ],
)
async def test_assets_have_their_content_types(
    client: AsyncTestClient, name: str, media_type: str, marker: str
) -> None:
    response = await client.get(f"/console/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert marker in response.text
    _assert_secure(response)


@pytest.mark.parametrize(
    "path", ["/console/index.html", "/console/nope.js", "/console/..%2Fapp.py", "/console/routes.py"]
)
async def test_only_the_three_files_are_served(client: AsyncTestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_console_needs_no_key_but_the_admin_api_does(client: AsyncTestClient) -> None:
    assert (await client.get("/console")).status_code == 200
    refused = await client.get("/admin/tenants")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "missing_api_key"


async def test_console_off_is_404(tmp_path: Path) -> None:
    async for client in _client(tmp_path, console=False):
        for path in ("/console", "/console/", "/console/console-core.js", "/console/console.js"):
            assert (await client.get(path)).status_code == 404, path
        assert (await client.get("/healthz")).status_code == 200


def test_console_setting_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).console is True
    assert Settings.from_env({"GATEWAY_CONSOLE": "false"}).console is False
    assert Settings.from_env({"GATEWAY_CONSOLE": "true"}).console is True
