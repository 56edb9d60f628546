"""The compliance step as the request path uses it: check, decide, pick the deployment,
record it in the audit event (with retention), report it, verify the chain."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from billing.db import transaction
from gateway.audit.log import append_event
from gateway.audit.verify import verify_chain
from gateway.auth.service import create_tenant
from gateway.compliance import profiles, registry
from gateway.compliance.reports import build_report
from gateway.compliance.seed import EXAMPLES, ensure_embedded_registry
from gateway.compliance.service import ComplianceCache
from policy import DecisionRequest, decide, default_policy
from policy.compliance_rules import RULE_PATENT, RULE_REGIONS, ComplianceError
from tests.compliance.test_registry import MODEL
from tests.conftest import AUDIT_KEY


class Quote:
    def __init__(self, hit: str, miss: str, out: str) -> None:
        self.version_id, self.cache_hit, self.cache_miss, self.output = (
            "t",
            Decimal(hit),
            Decimal(miss),
            Decimal(out),
        )


PRICES = {"flash": Quote("0.0028", "0.14", "0.28"), "pro": Quote("0.0145", "1.74", "3.48")}
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


async def test_request_path(sessions, unique):
    async with transaction(sessions) as s:
        seeded = await ensure_embedded_registry(s, MODEL, "local")
        tenant = await create_tenant(s, f"hospital-{unique}")
        other = await create_tenant(s, f"eu-only-{unique}")
        await profiles.set_profile(
            s,
            tenant.id,
            "patent_clearance: {use_cases: [medical]}\nretention: {mode: full, days: 30}",
            actor="cli",
        )
        await profiles.set_profile(s, other.id, "allowed_regions: [eu-central]", actor="cli")
    cache = ComplianceCache(sessions)

    tc = await cache.get(tenant.id)
    assert tc.check("deepseek-v4-flash", "medical").eligible  # SmolLM2 is Apache-2.0: express grant
    decision = decide(
        default_policy(),
        DecisionRequest("deepseek-v4-flash", 20, use_case="medical", max_tokens=50),
        PRICES,
        compliance=tc.decision_input(),
    )
    served = tc.deployment_for(decision, "medical")
    assert served.model_id == "deepseek-v4-flash" and served.pool.region == "local"
    fields = tc.audit_fields(served, MESSAGES, "Paris.")
    assert fields["retention"]["answer_text"] == "Paris." and fields["compliance_profile_version"] == "1"
    async with transaction(sessions) as s:
        await append_event(
            s,
            kind="request.completed",
            actor="key:k",
            tenant_id=tenant.id,
            request_id=unique,
            payload={"decision": decision.audit_dict(), **fields},
        )

    with pytest.raises(ComplianceError) as err:
        (await cache.get(other.id)).check("deepseek-v4-pro", None)
    assert err.value.rule == RULE_REGIONS and err.value.http_status == 403

    # The operator adds an MIT-licensed Pro deployment; medical on it is refused by name.
    async with transaction(sessions) as s:
        spec = EXAMPLES["deepseek-v4-pro"]
        art = await registry.add_artifact(
            s, registry.ArtifactSpec(**{**spec.__dict__, "name": f"w-{unique}"}), actor="cli"
        )
        await registry.add_deployment(
            s,
            name=f"mit-pro-{unique}",
            model_id=f"mit-pro-{unique}",
            variant="pro",
            pool=seeded.pool,
            artifacts=[art.name],
            actor="cli",
        )
    cache.invalidate()
    tc = await cache.get(tenant.id)
    with pytest.raises(ComplianceError) as err:
        tc.check(f"mit-pro-{unique}", "medical")
    assert err.value.rule == RULE_PATENT and f"w-{unique}" in err.value.message

    async with sessions() as s:
        day = dt.datetime.now(dt.UTC)
        report = await build_report(s, tenant.id, day - dt.timedelta(days=1), day + dt.timedelta(days=1))
        assert report["requests"] == 1 and report["regions"] == {"local": 1}
        assert "Apache-2.0" in report["licenses"]
        # the shared PostgreSQL chain may carry anchors signed by apps other tests started
        assert (await verify_chain(s, key=AUDIT_KEY.encode())).ok
