"""`gateway key limits` and `gateway key budget` in-process (click's runner), on SQLite."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import cli


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in list(__import__("os").environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "var"))
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output
        return result

    invoke("db", "upgrade")
    return invoke


def _query(tmp_path: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(tmp_path / "var" / "gateway.db") as conn:
        return conn.execute(sql, args).fetchall()


def _audit(tmp_path: Path, kind: str) -> list[tuple[str, dict]]:
    rows = _query(tmp_path, "SELECT actor, payload FROM audit_events WHERE kind = ? ORDER BY seq", kind)
    return [(actor, json.loads(payload)) for actor, payload in rows]


def _key(run) -> str:
    run("tenant", "create", "acme", "--rpm", "600")
    return str(json.loads(run("key", "create", "--tenant", "acme", "--json").output)["id"])


def test_key_limits_set_keep_clear_and_audit(run, tmp_path: Path) -> None:
    key_id = _key(run)
    out = run("key", "limits", key_id, "--rpm", "5", "--tpm", "1000").output
    assert out.strip() == f"key {key_id}: 5 requests and 1000 tokens per minute"
    assert "1000 tokens" in run("key", "limits", key_id, "--rpm", "7").output  # --tpm left out: kept
    assert "7 requests and no limit tokens" in run("key", "limits", key_id, "--tpm", "0").output
    stored = _query(
        tmp_path, "SELECT requests_per_minute, tokens_per_minute FROM api_keys WHERE id = ?", key_id
    )
    assert stored == [(7, None)]
    listed = json.loads(run("key", "list", "--tenant", "acme", "--json").output)
    assert [(k["rpm"], k["tpm"]) for k in listed] == [(7, None)]
    assert run("key", "list", "--tenant", "acme").output.rstrip().endswith("rpm 7")
    # The tenant's own limits are not touched.
    assert _query(tmp_path, "SELECT requests_per_minute FROM tenants WHERE name = 'acme'") == [(600,)]
    assert _audit(tmp_path, "key.limits_set") == [
        ("cli", {"key_id": key_id, "requests_per_minute": 5, "tokens_per_minute": 1000}),
        ("cli", {"key_id": key_id, "requests_per_minute": 7, "tokens_per_minute": 1000}),
        ("cli", {"key_id": key_id, "requests_per_minute": 7, "tokens_per_minute": None}),
    ]


def test_key_limits_errors(run, tmp_path: Path) -> None:
    key_id = _key(run)
    assert "--rpm and/or --tpm" in run("key", "limits", key_id, ok=False).output
    assert "no API key" in run("key", "limits", "key_nope", "--rpm", "1", ok=False).output
    run("key", "limits", key_id, "--rpm", "-1", ok=False)
    run("key", "revoke", key_id)
    refused = run("key", "limits", key_id, "--rpm", "1", ok=False).output
    assert "revoked" in refused and key_id in refused
    assert _audit(tmp_path, "key.limits_set") == []


def test_key_budget_set_replace_clear_and_audit(run, tmp_path: Path) -> None:
    key_id = _key(run)
    out = run("key", "budget", key_id, "--budget-usd", "12.50", "--budget-period", "day").output
    assert out.strip() == f"key {key_id}: hard budget 12.5 USD per day"
    out = run("key", "budget", key_id, "--budget-usd", "0.000000000001", "--budget-mode", "soft").output
    assert "soft budget 0.000000000001 USD per month" in out
    rows = _query(
        tmp_path, "SELECT scope, tenant_id, limit_units, period, mode FROM budgets WHERE scope_id = ?", key_id
    )
    tenant_id = _query(tmp_path, "SELECT id FROM tenants WHERE name = 'acme'")[0][0]
    assert rows == [("key", tenant_id, 1, "month", "soft")]
    assert "budget removed" in run("key", "budget", key_id, "--clear").output
    assert "had no budget" in run("key", "budget", key_id, "--clear").output
    assert _query(tmp_path, "SELECT count(*) FROM budgets") == [(0,)]
    assert [
        (a, p["scope"], p["scope_id"], p["limit_usd"]) for a, p in _audit(tmp_path, "billing.budget.set")
    ] == [
        ("cli", "key", key_id, "12.5"),
        ("cli", "key", key_id, "0.000000000001"),
    ]
    assert _audit(tmp_path, "billing.budget.removed") == [("cli", {"scope": "key", "scope_id": key_id})]


def test_key_budget_errors(run, tmp_path: Path) -> None:
    key_id = _key(run)
    assert "not a decimal" in run("key", "budget", key_id, "--budget-usd", "lots", ok=False).output
    assert "non-negative" in run("key", "budget", key_id, "--budget-usd", "-1", ok=False).output
    assert "1e-12" in run("key", "budget", key_id, "--budget-usd", "0.0000000000001", ok=False).output
    run("key", "budget", key_id, "--budget-usd", "1", "--budget-period", "week", ok=False)
    assert "either --budget-usd or --clear" in run("key", "budget", key_id, ok=False).output
    both = run("key", "budget", key_id, "--budget-usd", "1", "--clear", ok=False).output
    assert "either --budget-usd or --clear" in both
    assert "no API key" in run("key", "budget", "key_nope", "--budget-usd", "1", ok=False).output
    run("key", "revoke", key_id)
    assert "revoked" in run("key", "budget", key_id, "--budget-usd", "1", ok=False).output
    assert "revoked" in run("key", "budget", key_id, "--clear", ok=False).output
    assert _query(tmp_path, "SELECT count(*) FROM budgets") == [(0,)]
    assert _audit(tmp_path, "billing.budget.set") == []
