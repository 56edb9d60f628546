"""A tenant's router calibration: the pure fit, and versions stored from real audit events."""

from __future__ import annotations

import math
import random

import pytest

from billing.db import transaction
from gateway.audit.log import append_event
from gateway.auth.models import Tenant
from gateway.errors import InvalidRequestError, NotFoundError
from gateway.router_calibration import service
from gateway.router_calibration.tasks import refit
from policy.router.calibration import Calibration, Observation, auc, fit_calibration, fit_logistic


def _draw(n: int, intercept: float, slope: float, seed: int = 0) -> list[Observation]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = rng.random()
        out.append(Observation(s, rng.random() < 1 / (1 + math.exp(-(intercept + slope * s)))))
    return out


def test_fit_recovers_a_known_curve_and_its_break_even():
    doc = fit_calibration(_draw(4000, -4.0, 6.0))
    assert doc["slope"] == pytest.approx(6.0, abs=0.8) and doc["intercept"] == pytest.approx(-4.0, abs=0.5)
    # p = 2/3 where -4 + 6 s = ln 2, s = 0.782
    assert doc["direct_threshold"] == pytest.approx((math.log(2) + 4) / 6, abs=0.05)
    assert doc["holdout"]["n"] == 800 and doc["holdout"]["auc"] > 0.7
    assert doc["holdout"]["log_loss"] < doc["holdout"]["log_loss_constant_rate"]
    cal = Calibration.from_document(doc)
    assert cal.direct_to_escalation_model(0.95) and not cal.direct_to_escalation_model(0.5)
    assert cal.escalation_probability(0.9) > cal.escalation_probability(0.1)
    assert cal.tenant_percentile(0.5) == pytest.approx(0.5, abs=0.05)
    assert sum(d["n"] for d in doc["deciles"]) == 4000


def test_no_threshold_when_the_score_does_not_predict_escalation():
    doc = fit_calibration(_draw(1000, -1.0, -2.0))
    assert doc["slope"] < 0 and doc["direct_threshold"] is None
    with pytest.raises(ValueError, match="at least 50"):
        fit_calibration(_draw(49, 0, 1))


def test_logistic_and_auc_on_hand_cases():
    a, b = fit_logistic([0.0, 0.0, 1.0, 1.0], [False, True, True, True], ridge=0.0)
    assert 1 / (1 + math.exp(-a)) == pytest.approx(0.5, abs=1e-6)  # half of the x=0 rows escalate
    assert auc([0.1, 0.2, 0.9], [False, False, True]) == 1.0
    assert auc([0.5, 0.5], [False, True]) == 0.5
    assert auc([0.1], [True]) is None


async def _tenant(sessions, unique: str) -> str:
    tid = f"ten_cal_{unique}"
    async with transaction(sessions) as s:
        s.add(Tenant(id=tid, name=f"calibration-{unique}"))
    return tid


async def _requests(sessions, tenant_id: str, observations: list[Observation], tag: str) -> None:
    """Audit events as the gateway writes them: attempt 1, and attempt 2 when escalated."""
    async with transaction(sessions) as s:
        for i, o in enumerate(observations):
            rid = f"req_{tag}_{i}"
            decision = {"router_score": o.score, "cascade": {"threshold": 0.6, "method": "mean"}}
            conf = 0.3 if o.escalated else 0.9
            esc = {"confidence": conf, "reason": "test"}
            payload = {"attempt": 1, "decision": decision, "escalation": esc}
            await append_event(
                s,
                kind="request.completed",
                actor="key:k",
                tenant_id=tenant_id,
                request_id=rid,
                payload=payload,
            )
            if o.escalated:
                await append_event(
                    s,
                    kind="request.completed",
                    actor="key:k",
                    tenant_id=tenant_id,
                    request_id=rid,
                    payload={"attempt": 2, "decision": decision, "escalation": esc},
                )
        # not observations: no router score, no cascade, no logprobs
        await append_event(
            s,
            kind="request.completed",
            actor="key:k",
            tenant_id=tenant_id,
            request_id=f"x{tag}",
            payload={"attempt": 1, "decision": {"router_score": None, "cascade": None}},
        )
        await append_event(
            s,
            kind="request.completed",
            actor="key:k",
            tenant_id=tenant_id,
            request_id=f"y{tag}",
            payload={
                "attempt": 1,
                "decision": {"router_score": 0.5, "cascade": {}},
                "escalation": {"confidence": None, "reason": "no logprobs"},
            },
        )


async def test_fit_versions_and_rollback_from_audit_events(sessions, unique):
    tid = await _tenant(sessions, unique)
    first = _draw(120, -3.0, 6.0, seed=1)
    await _requests(sessions, tid, first, "a")
    async with sessions() as s:
        obs, start, end = await service.observations(s, tid)
    assert [o.escalated for o in obs] == [o.escalated for o in first] and start <= end
    async with transaction(sessions) as s:
        v1 = await service.fit_tenant(s, tid, actor="test")
    assert v1.version == 1 and v1.active and v1.observations == 120
    await _requests(sessions, tid, _draw(120, -1.0, 1.0, seed=2), "b")
    result = await refit(sessions, tenant_id=tid)
    assert result == {"fitted": {tid: 2}, "skipped": {}}
    async with transaction(sessions) as s:
        assert (await service.get_active(s, tid)).version == 2
        back = await service.rollback(s, tid, actor="test")
    assert back.version == 1 and back.document == v1.document
    async with sessions() as s:
        versions = await service.list_versions(s, tid)
    assert [(v.version, v.active) for v in versions] == [(1, True), (2, False)]
    async with transaction(sessions) as s:
        with pytest.raises(NotFoundError):
            await service.rollback(s, tid, actor="test")  # nothing before version 1


async def test_too_few_observations_write_nothing(sessions, unique):
    tid = await _tenant(sessions, unique)
    await _requests(sessions, tid, _draw(10, 0, 1), "c")
    async with transaction(sessions) as s:
        with pytest.raises(InvalidRequestError, match="at least 50"):
            await service.fit_tenant(s, tid, actor="test")
    assert (await refit(sessions, tenant_id=tid))["skipped"]
    async with sessions() as s:
        assert await service.list_versions(s, tid) == []


@pytest.fixture
def cli_run(tmp_path, monkeypatch):
    import os

    from click.testing import CliRunner

    from gateway.cli import cli

    for name in list(os.environ):
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


def test_cli_fit_without_outcomes_is_a_clean_error(cli_run):
    cli_run("tenant", "create", "acme")
    out = cli_run("router", "fit", "--tenant", "acme", ok=False).output
    assert "at least 50" in out and "Traceback" not in out
    assert cli_run("router", "calibrations", "--tenant", "acme").output == ""
    assert (
        "no active router calibration" in cli_run("router", "rollback", "--tenant", "acme", ok=False).output
    )
    assert "no tenant named" in cli_run("router", "fit", "--tenant", "nobody", ok=False).output


def test_cli_rollback_off(cli_run):
    cli_run("tenant", "create", "acme-off")
    out = cli_run("router", "rollback", "--tenant", "acme-off", "--off", ok=False).output
    assert "no active router calibration" in out and "Traceback" not in out
    out = cli_run("router", "rollback", "--tenant", "acme-off", "--off", "--to", "1", ok=False).output
    assert "--off and --to exclude each other" in out
