"""Stored tenant compliance profiles: versions are kept, one is active, every set is audited."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.log import append_event
from gateway.compliance.models import ActiveComplianceProfile, ComplianceProfileVersion
from gateway.errors import NotFoundError
from policy.compliance_rules import DEFAULT_PROFILE, ComplianceProfile, parse_text, validate
from policy.compliance_rules.profile import digest


@dataclass(frozen=True)
class StoredProfile:
    tenant_id: str
    version: int | None  # None: no profile set, the default applies
    document: dict[str, Any]
    source: str
    digest: str | None
    profile: ComplianceProfile

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "version": self.version,
            "digest": self.digest,
            "document": self.document,
        }


def _jsonable(document: dict[str, Any]) -> dict[str, Any]:
    # YAML turns 2027-12-31 into a date; the stored document keeps ISO strings.
    result: dict[str, Any] = json.loads(json.dumps(document, default=str))
    return result


async def set_profile(session: AsyncSession, tenant_id: str, source: str, *, actor: str) -> StoredProfile:
    """Validate ``source`` (YAML or JSON), store it as the next version and activate it.

    Raises ProfileValidationError (422, every bad field named) before anything is written.
    """
    document = _jsonable(parse_text(source))
    validate(document)  # raises before anything is written
    # Serialise concurrent sets of the same tenant on the tenant row (no-op update).
    await session.execute(text("UPDATE tenants SET active = active WHERE id = :t"), {"t": tenant_id})
    last = await session.scalar(
        select(func.max(ComplianceProfileVersion.version)).where(
            ComplianceProfileVersion.tenant_id == tenant_id
        )
    )
    row = ComplianceProfileVersion(
        tenant_id=tenant_id,
        version=(last or 0) + 1,
        document=document,
        source=source,
        digest=digest(document),
        created_by=actor,
    )
    session.add(row)
    await session.flush()
    await _activate(session, tenant_id, row, actor=actor)
    await append_event(
        session,
        kind="compliance.profile.set",
        actor=actor,
        tenant_id=tenant_id,
        payload={"version": row.version, "digest": row.digest, "document": document},
    )
    return _stored(row)


async def activate_version(
    session: AsyncSession, tenant_id: str, version: int, *, actor: str
) -> StoredProfile:
    """Make an older (or newer) stored version the active one again (rollback)."""
    row = await session.scalar(
        select(ComplianceProfileVersion).where(
            ComplianceProfileVersion.tenant_id == tenant_id, ComplianceProfileVersion.version == version
        )
    )
    if row is None:
        raise NotFoundError(f"compliance profile version {version} does not exist for this tenant")
    await _activate(session, tenant_id, row, actor=actor)
    await append_event(
        session,
        kind="compliance.profile.activated",
        actor=actor,
        tenant_id=tenant_id,
        payload={"version": row.version, "digest": row.digest},
    )
    return _stored(row)


async def _activate(
    session: AsyncSession, tenant_id: str, row: ComplianceProfileVersion, *, actor: str
) -> None:
    active = await session.get(ActiveComplianceProfile, tenant_id)
    if active is None:
        session.add(
            ActiveComplianceProfile(tenant_id=tenant_id, profile_version_id=row.id, activated_by=actor)
        )
    else:
        active.profile_version_id, active.activated_by = row.id, actor
    await session.flush()


def _stored(row: ComplianceProfileVersion) -> StoredProfile:
    return StoredProfile(
        row.tenant_id,
        row.version,
        row.document,
        row.source,
        row.digest,
        validate(row.document, version=str(row.version)),
    )


async def get_profile(session: AsyncSession, tenant_id: str) -> StoredProfile:
    """The tenant's active profile, or the default (no restrictions, prompt hashes kept)."""
    row = await session.scalar(
        select(ComplianceProfileVersion)
        .join(
            ActiveComplianceProfile, ActiveComplianceProfile.profile_version_id == ComplianceProfileVersion.id
        )
        .where(ActiveComplianceProfile.tenant_id == tenant_id)
    )
    if row is None:
        return StoredProfile(tenant_id, None, {}, "", None, DEFAULT_PROFILE)
    return _stored(row)


async def active_profile(session: AsyncSession, tenant_id: str) -> ComplianceProfile:
    return (await get_profile(session, tenant_id)).profile


async def list_versions(session: AsyncSession, tenant_id: str) -> list[dict[str, Any]]:
    rows = (
        await session.scalars(
            select(ComplianceProfileVersion)
            .where(ComplianceProfileVersion.tenant_id == tenant_id)
            .order_by(ComplianceProfileVersion.version)
        )
    ).all()
    return [
        {"version": r.version, "digest": r.digest, "created_by": r.created_by, "created_at": r.created_at}
        for r in rows
    ]
