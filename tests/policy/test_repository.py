"""Stored policies: versions, atomic activation, rollback, default (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from billing.db import transaction
from gateway.auth.models import Tenant
from policy import PolicyNotFound, PolicyValidationError
from policy import repository as repo
from policy.models import PolicyVersion

V1 = "variants: {allowed: [flash]}\n"
V2 = '{"use_cases": {"faq": {"max_mode": "non-think"}}}'


async def make_tenant(sessions, unique: str) -> str:
    tenant_id = f"ten_pol_{unique}"
    async with transaction(sessions) as s:
        s.add(Tenant(id=tenant_id, name=f"policy-{unique}"))
    return tenant_id


async def test_default_policy_until_one_is_set(sessions, unique):
    tenant = await make_tenant(sessions, unique)
    async with sessions() as s:
        assert (await repo.get_active(s, tenant)).version == "default"
        assert await repo.get_active_version(s, tenant) is None
        assert await repo.list_versions(s, tenant) == []


async def test_set_activates_and_keeps_old_versions(sessions, unique):
    tenant = await make_tenant(sessions, unique)
    async with transaction(sessions) as s:
        one = await repo.set_policy(s, tenant, V1, actor="alice", comment="first")
    async with transaction(sessions) as s:
        two = await repo.set_policy(s, tenant, V2, actor="bob")
    assert (one.version, two.version) == (1, 2) and one.active and two.active
    async with sessions() as s:
        compiled = await repo.get_active(s, tenant)
        assert compiled.version == "2" and compiled.digest == two.digest
        versions = await repo.list_versions(s, tenant)
        assert [(v.version, v.active, v.created_by) for v in versions] == [
            (1, False, "alice"),
            (2, True, "bob"),
        ]
        assert versions[0].source == V1 and versions[0].comment == "first"
        assert versions[1].document == {"use_cases": {"faq": {"max_mode": "non-think"}}}


async def test_rollback_and_activate(sessions, unique):
    tenant = await make_tenant(sessions, unique)
    for source in (V1, V2, V1):
        async with transaction(sessions) as s:
            await repo.set_policy(s, tenant, source, actor="ops")
    async with transaction(sessions) as s:
        back = await repo.rollback(s, tenant, actor="ops")
    assert back.version == 2 and back.active
    async with transaction(sessions) as s:
        back = await repo.rollback(s, tenant, actor="ops")
    assert back.version == 1
    async with transaction(sessions) as s:
        with pytest.raises(PolicyNotFound):
            await repo.rollback(s, tenant, actor="ops")
    async with transaction(sessions) as s:
        assert (await repo.activate(s, tenant, 3, actor="ops")).version == 3
    async with transaction(sessions) as s:
        assert (await repo.rollback(s, tenant, actor="ops", to_version=1)).version == 1
    async with sessions() as s:
        assert (await repo.get_active(s, tenant)).version == "1"
        assert len(await repo.list_versions(s, tenant)) == 3
        with pytest.raises(PolicyNotFound):
            await repo.get_version(s, tenant, 9)


async def test_invalid_document_writes_nothing(sessions, unique):
    tenant = await make_tenant(sessions, unique)
    async with transaction(sessions) as s:
        await repo.set_policy(s, tenant, V1, actor="ops")
    with pytest.raises(PolicyValidationError) as err:
        async with transaction(sessions) as s:
            await repo.set_policy(s, tenant, "use_cases: {faq: {max_mode: turbo}}", actor="ops")
    assert err.value.errors[0].startswith("use_cases.faq.max_mode: must be one of")
    async with sessions() as s:
        assert [v.version for v in await repo.list_versions(s, tenant)] == [1]
        assert (await repo.get_active(s, tenant)).version == "1"


async def test_failed_transaction_keeps_previous_activation(sessions, unique):
    """Activation is atomic: a failure after set_policy in the same transaction undoes it."""
    tenant = await make_tenant(sessions, unique)
    async with transaction(sessions) as s:
        await repo.set_policy(s, tenant, V1, actor="ops")
    with pytest.raises(RuntimeError):
        async with transaction(sessions) as s:
            await repo.set_policy(s, tenant, V2, actor="ops")
            raise RuntimeError("audit write failed")
    async with sessions() as s:
        assert (await repo.get_active(s, tenant)).version == "1"
        rows = (await s.scalars(select(PolicyVersion).where(PolicyVersion.tenant_id == tenant))).all()
        assert len(rows) == 1


async def test_set_without_activation_and_unknown_tenant(sessions, unique):
    tenant = await make_tenant(sessions, unique)
    async with transaction(sessions) as s:
        staged = await repo.set_policy(s, tenant, {"max_mode": "think-high"}, actor="ops", activate=False)
    assert staged.version == 1 and not staged.active
    async with sessions() as s:
        assert (await repo.get_active(s, tenant)).version == "default"
    with pytest.raises(PolicyNotFound):
        async with transaction(sessions) as s:
            await repo.set_policy(s, f"ten_missing_{unique}", V1, actor="ops")


async def test_concurrent_sets_get_consecutive_versions(sessions, unique):
    import asyncio

    tenant = await make_tenant(sessions, unique)

    async def one(i: int) -> int:
        async with transaction(sessions) as s:
            return (await repo.set_policy(s, tenant, {"description": f"v{i}"}, actor=f"a{i}")).version

    versions = await asyncio.gather(*(one(i) for i in range(4)))
    assert sorted(versions) == [1, 2, 3, 4]
    async with sessions() as s:
        active = await repo.get_active_version(s, tenant)
        assert active is not None and active.version == 4
