"""Through HTTP once the compliance step is wired into the app (skipped before that):
a profile's rule gives 403 naming it, a served request records its deployment and the
retained texts, the report and `audit verify` see it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import RunningGateway, start_gateway, wait_rows

# Cheap check (importing gateway.cli loads the engine's modules): are the groups registered?
WIRED = "compliance" in (Path(__file__).parents[2] / "gateway" / "cli" / "__init__.py").read_text()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not WIRED, reason="compliance CLI/request path not wired yet"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path_factory.mktemp("gw"), {"GATEWAY_REGION": "local"})
    yield running
    running.stop()


def chat(server: RunningGateway, key: str, **extra: object) -> httpx.Response:
    body = {
        "model": "deepseek-v4-flash",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 4,
        **extra,
    }
    return httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=120,
    )


def test_profile_enforced_recorded_reported(server: RunningGateway, tmp_path: Path) -> None:
    eu = server.create_key("eu-bank")
    profile = tmp_path / "eu.yaml"
    profile.write_text("allowed_regions: [eu-central]\n")
    server.cli("compliance", "profile", "set", "--tenant", "eu-bank", str(profile))
    refused = chat(server, eu["key"])
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "compliance_violation" and "compliance.allowed_regions" in error["message"]

    clinic = server.create_key("clinic")
    profile.write_text("patent_clearance: {use_cases: [medical]}\nretention: {mode: full, days: 7}\n")
    server.cli("compliance", "profile", "set", "--tenant", "clinic", str(profile))
    served = chat(server, clinic["key"], metadata={"use_case": "medical"})  # Apache-2.0: express grant
    assert served.status_code == 200, served.text
    request_id = served.json()["id"]
    payload = json.loads(
        wait_rows(
            server,
            1,
            "SELECT payload FROM audit_events WHERE request_id = ? AND kind = 'request.completed'",
            request_id,
        )[0][0]
    )
    deployment = payload["deployment"]
    assert deployment["pool"]["region"] == "local" and deployment["model_id"] == "deepseek-v4-flash"
    assert {a["license"] for a in deployment["artifacts"]} >= {"Apache-2.0"}
    assert "capital of France" in payload["retention"]["prompt_text"]
    assert payload["retention"]["answer_text"] == served.json()["choices"][0]["message"]["content"]

    today = dt.datetime.now(dt.UTC).date().isoformat()
    report = json.loads(
        server.cli("compliance", "report", "--tenant", "clinic", "--from", today, "--to", today).stdout
    )
    assert (
        report["requests"] == 1 and report["regions"] == {"local": 1} and "Apache-2.0" in report["licenses"]
    )
    verify = server.cli("audit", "verify", "--json")
    assert json.loads(verify.stdout)["ok"] is True
