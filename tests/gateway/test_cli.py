"""The CLI in-process (click's runner) against a temporary SQLite data directory."""

from __future__ import annotations

import json
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


def test_tenant_key_lifecycle(run) -> None:
    run("tenant", "create", "acme")
    assert "already exists" in run("tenant", "create", "acme", ok=False).output
    issued = json.loads(run("key", "create", "--tenant", "acme", "--json").output)
    assert issued["key"].startswith("sk-gw-") and issued["tenant"] == "acme"
    listed = json.loads(run("key", "list", "--tenant", "acme", "--json").output)
    assert [k["id"] for k in listed] == [issued["id"]]
    assert issued["key"] not in json.dumps(listed)
    run("key", "revoke", issued["id"])
    assert json.loads(run("key", "list", "--tenant", "acme", "--json").output)[0]["revoked_at"]
    assert "no tenant named" in run("key", "create", "--tenant", "nobody", ok=False).output
    assert "no API key" in run("key", "revoke", "key_nope", ok=False).output


def test_demo_is_idempotent(run) -> None:
    first = run("demo").output
    assert "sk-gw-" in first
    second = run("demo").output
    assert "exists" in second and "sk-gw-" not in second


def test_policy_set_show_rollback(run, tmp_path: Path) -> None:
    run("tenant", "create", "acme")
    assert "default policy applies" in run("policy", "show", "--tenant", "acme").output
    v1 = tmp_path / "v1.yaml"
    v1.write_text("variants: {allowed: [flash], default: flash}\n")
    v2 = tmp_path / "v2.yaml"
    v2.write_text("variants: {allowed: [flash, pro], default: pro}\n")
    assert "version 1 is active" in run("policy", "set", "--tenant", "acme", str(v1)).output
    assert "version 2 is active" in run("policy", "set", "--tenant", "acme", str(v2)).output
    shown = json.loads(run("policy", "show", "--tenant", "acme", "--json").output)
    assert shown["version"] == 2 and shown["document"]["variants"]["default"] == "pro"
    assert "version 1 is active" in run("policy", "rollback", "--tenant", "acme").output
    assert json.loads(run("policy", "show", "--tenant", "acme", "--json").output)["version"] == 1

    bad = tmp_path / "bad.yaml"
    bad.write_text("variants: {allowed: [huge]}\nbogus: 1\n")
    out = run("policy", "set", "--tenant", "acme", str(bad), ok=False).output
    assert "variants.allowed" in out and "bogus" in out
    assert json.loads(run("policy", "show", "--tenant", "acme", "--json").output)["version"] == 1


def test_admin_key_create_and_revoke(run) -> None:
    created = json.loads(run("admin", "key", "create", "ops", "--json").output)
    assert created["key"].startswith("sk-gwa-")
    assert "already exists" in run("admin", "key", "create", "ops", ok=False).output
    run("admin", "key", "revoke", "ops")


def test_tenant_budget_and_limits(run) -> None:
    created = json.loads(
        run(
            "tenant",
            "create",
            "payg",
            "--budget-usd",
            "12.50",
            "--budget-period",
            "day",
            "--rpm",
            "60",
            "--json",
        ).output
    )
    assert created["budget"]["limit_usd"].startswith("12.5")
    assert created["budget"]["period"] == "day" and created["budget"]["mode"] == "hard"
    out = run("tenant", "budget", "payg", "--budget-usd", "100", "--budget-mode", "soft").output
    assert "soft budget 100" in out and "month" in out
    assert "not a decimal" in run("tenant", "budget", "payg", "--budget-usd", "lots", ok=False).output
    assert "budget removed" in run("tenant", "budget", "payg", "--clear").output
    assert "had no budget" in run("tenant", "budget", "payg", "--clear").output
    assert "either --budget-usd or --clear" in run("tenant", "budget", "payg", ok=False).output
    run("tenant", "limits", "payg", "--tpm", "1000")
    assert "no tenant named" in run("tenant", "limits", "nobody", "--rpm", "1", ok=False).output


def test_prices_export_import_round_trip(run, tmp_path: Path) -> None:
    exported = json.loads(run("prices", "export").output)
    ids = [v["id"] for v in exported["versions"]]
    assert len(ids) >= 3
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(exported))
    assert f"{len(ids)} price versions" in run("prices", "import", str(path)).output
    path.write_text('{"versions": [{"id": "broken"}]}')
    run("prices", "import", str(path), ok=False)


def test_router_eval_prints_the_metrics(run, tmp_path: Path) -> None:
    data = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "routing" / "gsm8k.csv"
    if not data.exists():
        pytest.skip("routing data not present")
    metrics = json.loads(run("router", "eval", "--data", str(data)).output)
    assert {"apgr", "cpt50", "cpt80", "strong_share_at_95", "cost_saving_at_95"} <= set(metrics)
    assert metrics["apgr"] >= 0.58
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nx,y\n")
    run("router", "eval", "--data", str(bad), ok=False)
