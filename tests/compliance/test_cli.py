"""`gateway compliance ...` and `gateway audit ...` on a migrated SQLite file."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import sqlite3

import pytest
from click.testing import CliRunner

from billing.db import make_engine, make_sessionmaker, transaction
from gateway.audit.log import append_event
from gateway.auth.service import create_tenant
from gateway.cli.audit import audit
from gateway.cli.compliance import compliance
from gateway.compliance import registry
from tests.compliance.test_registry import MODEL


@pytest.fixture
def env(sqlite_url, tmp_path):
    return {
        "GATEWAY_DATABASE_URL": sqlite_url,
        "GATEWAY_DATA_DIR": str(tmp_path / "var"),
        "GATEWAY_AUDIT_KEY": "",
    }


def run(group, args, env, code=0):
    result = CliRunner().invoke(group, args, env=env, catch_exceptions=False)
    assert result.exit_code == code, (result.output, getattr(result, "stderr", ""))
    return result


def db_file(env) -> str:
    return env["GATEWAY_DATABASE_URL"].split("///", 1)[1]


def in_db(env, factory):
    async def go():
        engine = make_engine(env["GATEWAY_DATABASE_URL"])
        try:
            async with transaction(make_sessionmaker(engine)) as s:
                return await factory(s)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_registry_and_profile_commands_are_audited(env, tmp_path):
    in_db(env, lambda s: create_tenant(s, "clinic"))
    out = run(compliance, ["artifact", "add", "--file", str(MODEL), "--actor", "admin:alice"], env).output
    assert "SmolLM2-135M-Instruct.Q4_1" in out and "Apache-2.0" in out and "express" in out
    run(compliance, ["artifact", "add", "--example", "deepseek-v4-pro", "--sha256", "cd" * 32], env)
    arts = {a["name"]: a for a in json.loads(run(compliance, ["artifact", "list", "--json"], env).output)}
    assert arts["deepseek-v4-pro-weights"]["license"] == "MIT"
    assert arts["deepseek-v4-pro-weights"]["patent_grant"] == "none"
    assert arts["SmolLM2-135M-Instruct.Q4_1"]["license_source"] == "gguf:general.license"
    run(
        compliance,
        [
            "pool",
            "add",
            "eu-h200",
            "--device-kind",
            "gpu",
            "--vendor",
            "nvidia",
            "--stack",
            "CUDA",
            "--region",
            "eu-central",
        ],
        env,
    )
    run(
        compliance,
        [
            "pool",
            "add",
            "eu-h200",
            "--device-kind",
            "gpu",
            "--vendor",
            "nvidia",
            "--stack",
            "CUDA",
            "--region",
            "eu-central",
        ],
        env,
        code=1,
    )  # already registered
    assert "eu-h200" in run(compliance, ["pool", "list"], env).output
    run(
        compliance,
        [
            "deployment",
            "add",
            "pro-eu",
            "--model",
            "deepseek-v4-pro",
            "--variant",
            "pro",
            "--pool",
            "eu-h200",
            "--artifact",
            "deepseek-v4-pro-weights",
        ],
        env,
    )

    bad = tmp_path / "bad.yaml"
    bad.write_text("retention: {mode: full}\nallowed_regions: eu\n")
    result = run(compliance, ["profile", "set", "--tenant", "clinic", str(bad)], env, code=1)
    assert "retention.days" in result.output and "allowed_regions" in result.output
    good = tmp_path / "clinic.yaml"
    good.write_text("patent_clearance: {use_cases: [medical]}\nallowed_regions: [eu-central]\n")
    run(compliance, ["profile", "set", "--tenant", "clinic", str(good), "--actor", "admin:bob"], env)
    shown = json.loads(run(compliance, ["profile", "show", "--tenant", "clinic", "--json"], env).output)
    assert shown["version"] == 1 and shown["document"]["allowed_regions"] == ["eu-central"]

    check = json.loads(run(compliance, ["check", "--tenant", "clinic", "--use-case", "medical"], env).output)
    assert check["eligible"] == []
    assert check["excluded"][0]["breaches"][0]["rule"] == "compliance.patent_clearance"

    con = sqlite3.connect(db_file(env))
    events = con.execute("SELECT kind, actor FROM audit_events ORDER BY seq").fetchall()
    con.close()
    assert ("compliance.artifact.added", "admin:alice") in events
    assert ("compliance.pool.added", "cli") in events
    assert ("compliance.profile.set", "admin:bob") in events
    assert run(audit, ["verify"], env).output.startswith("audit log intact")


def test_report_json_and_csv(env):
    async def seed(s):
        tenant = await create_tenant(s, "bank")
        from gateway.compliance.seed import ensure_embedded_registry

        seeded = await ensure_embedded_registry(s, MODEL, "local")
        flash = next(c for c in seeded.deployments if c.variant == "flash")
        at = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "reasoning_tokens": 0}
        for _ in range(2):  # new-style events carry the deployment
            await append_event(
                s,
                kind="request.completed",
                actor="key:k",
                tenant_id=tenant.id,
                at=at,
                payload={"deployment": flash.audit_dict(), "usage": usage, "cost": {"cost_usd": "0.0000021"}},
            )
        # an older event with only the artifact: attributed through the registry
        await append_event(
            s,
            kind="request.completed",
            actor="key:k",
            tenant_id=tenant.id,
            at=at,
            payload={
                "model": "deepseek-v4-pro",
                "usage": usage,
                "artifact": {"name": seeded.artifact, "license": "apache-2.0"},
            },
        )
        await append_event(
            s,
            kind="request.completed",
            actor="key:k",
            tenant_id=tenant.id,
            at=at + dt.timedelta(days=30),
            payload={"usage": usage},
        )  # outside the period
        return seeded

    seeded = in_db(env, seed)
    args = ["report", "--tenant", "bank", "--from", "2026-11-01", "--to", "2026-11-30"]
    report = json.loads(run(compliance, args, env).output)
    assert report["requests"] == 3 and report["attributed_by_registry"] == 1 and report["unattributed"] == 0
    assert report["regions"] == {"local": 3}
    assert report["licenses"] == {"Apache-2.0": 3, "BSD-3-Clause": 3}
    weights = next(a for a in report["artifacts"] if a["kind"] == "model_weights")
    assert (weights["name"], weights["sha256"], weights["requests"]) == (seeded.artifact, seeded.sha256, 3)
    assert report["hardware"][0]["software_stack"] == "CPU" and report["hardware"][0]["requests"] == 3
    flash_rows = [
        r
        for r in report["served_by"]
        if r["model"] == "deepseek-v4-flash" and r["artifact_kind"] == "model_weights"
    ]
    assert flash_rows[0]["requests"] == 2 and flash_rows[0]["cost_usd"] == "0.0000042"

    text = run(compliance, [*args, "--format", "csv"], env).output
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(report["served_by"]) and {r["region"] for r in rows} == {"local"}
    assert sum(int(r["requests"]) for r in rows if r["artifact_kind"] == "model_weights") == 3


def test_audit_verify_checkpoint_and_purge(env):
    async def seed(s):
        old = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        for i in range(3):
            await append_event(s, kind="test.old", actor="test", payload={"i": i}, at=old)
        for i in range(3):
            await append_event(s, kind="test.new", actor="test", payload={"i": i})

    in_db(env, seed)
    ok = json.loads(run(audit, ["verify", "--json"], env).output)
    assert ok == {"ok": True, "checked": 6, "problems": [], "first_seq": 1, "last_seq": 6, "start_seq": 0}
    run(audit, ["checkpoint"], env)
    purged = json.loads(run(audit, ["purge", "--before", "2025-06-01", "--yes"], env).output)
    assert purged["purged"] == 3 and purged["through_seq"] == 3
    assert json.loads(run(audit, ["verify", "--json"], env).output)["ok"] is True

    con = sqlite3.connect(db_file(env))
    con.execute("UPDATE audit_events SET payload = '{\"i\": 7}' WHERE seq = 5")
    con.commit()
    con.close()
    bad = run(audit, ["verify", "--json"], env, code=1)
    report = json.loads(bad.output)
    assert report["ok"] is False and [(p["kind"], p["seq"]) for p in report["problems"]] == [("modified", 5)]
    text = run(audit, ["verify"], env, code=1)
    assert "modified" in text.output and "seq 5" in text.output


def test_registry_helpers_reject_bad_input(env):
    from gateway.errors import InvalidRequestError

    async def go(s):
        with pytest.raises(InvalidRequestError):
            await registry.add_pool(s, registry.PoolSpec("p", "tpu", "g", "CPU", "r"), actor="t")
        with pytest.raises(InvalidRequestError):
            await registry.add_artifact(
                s, registry.ArtifactSpec("a", "model_weights", "MIT", "x", sha256="xyz"), actor="t"
            )

    in_db(env, go)
