"""Admin API: operator keys manage tenants and keys over HTTP; tenant keys cannot."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.server import RunningGateway

pytestmark = pytest.mark.slow


def test_admin_creates_tenant_and_key_then_revokes(gateway_server: RunningGateway, unique: str) -> None:
    admin = json.loads(gateway_server.cli("admin", "key", "create", f"ops-{unique}", "--json").stdout)
    base = f"{gateway_server.base_url}/admin"
    auth = {"authorization": f"Bearer {admin['key']}"}

    created = httpx.post(f"{base}/tenants", json={"name": f"adm-{unique}"}, headers=auth, timeout=30)
    assert created.status_code == 201, created.text
    dup = httpx.post(f"{base}/tenants", json={"name": f"adm-{unique}"}, headers=auth, timeout=30)
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "conflict"
    bad = httpx.post(f"{base}/tenants", json={"nom": "x"}, headers=auth, timeout=30)
    assert bad.status_code == 400

    issued = httpx.post(
        f"{base}/tenants/adm-{unique}/keys", json={"name": "ci"}, headers=auth, timeout=30
    ).json()
    listed = httpx.get(f"{base}/tenants/adm-{unique}/keys", headers=auth, timeout=30).json()["data"]
    assert [k["id"] for k in listed] == [issued["id"]]
    assert issued["key"] not in json.dumps(listed)

    tenant_auth = {"authorization": f"Bearer {issued['key']}"}
    assert (
        httpx.get(f"{gateway_server.base_url}/v1/models", headers=tenant_auth, timeout=30).status_code == 200
    )
    # A tenant key is not an admin key.
    assert httpx.get(f"{base}/tenants", headers=tenant_auth, timeout=30).status_code == 401

    revoked = httpx.post(f"{base}/keys/{issued['id']}/revoke", headers=auth, timeout=30)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert (
        httpx.get(f"{gateway_server.base_url}/v1/models", headers=tenant_auth, timeout=30).status_code == 401
    )
    assert httpx.post(f"{base}/keys/key_nope/revoke", headers=auth, timeout=30).status_code == 404

    gateway_server.cli("admin", "key", "revoke", f"ops-{unique}")
    assert httpx.get(f"{base}/tenants", headers=auth, timeout=30).status_code == 401
