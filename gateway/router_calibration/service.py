"""Fitting, storing, activating and rolling back tenants' router calibrations.

Observations come from the audit log, where every attempt of a request is one event
(``request.completed``/``failed``/``cancelled``, see gateway/service/recording.py): the
first attempt's payload holds ``decision.router_score``, ``decision.cascade`` (the plan,
present when the cascade ran) and ``escalation.confidence``; an escalated request has a
second attempt event with the same request id. A request counts as one observation when
its first attempt had a router score, a cascade and a measured confidence (without
log-probabilities the escalation says nothing about the prompt). Functions work inside
the caller's transaction and only flush, as policy.repository does. Every change of the
active version is an audit event in the same transaction (``router_calibration.activated``
with the version, or ``router_calibration.deactivated``), as policy activations are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import column, func, select, table, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.log import append_event
from gateway.audit.models import AuditEvent
from gateway.errors import InvalidRequestError, NotFoundError
from gateway.router_calibration.models import ActiveRouterCalibration, RouterCalibrationVersion
from policy.router.calibration import MIN_OBSERVATIONS, Calibration, Observation, fit_calibration

REQUEST_KINDS = ("request.completed", "request.failed", "request.cancelled")
DEFAULT_LIMIT = 50_000  # newest first-attempt events read per fit
_tenants = table("tenants", column("id"))


@dataclass(frozen=True, slots=True)
class StoredCalibration:
    tenant_id: str
    version: int
    document: dict[str, Any]
    observations: int
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    created_by: str
    created_at: dt.datetime
    active: bool

    def calibration(self) -> Calibration:
        return Calibration.from_document(self.document, self.version)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "version": self.version,
            "active": self.active,
            "observations": self.observations,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "document": self.document,
        }


def _stored(row: RouterCalibrationVersion, active_id: int | None) -> StoredCalibration:
    return StoredCalibration(
        row.tenant_id,
        row.version,
        row.document,
        row.observations,
        row.window_start,
        row.window_end,
        row.created_by,
        row.created_at,
        row.id == active_id,
    )


async def observations(
    session: AsyncSession, tenant_id: str, *, since: dt.datetime | None = None, limit: int = DEFAULT_LIMIT
) -> tuple[list[Observation], dt.datetime | None, dt.datetime | None]:
    """(observations oldest first, first and last event time) from the tenant's audit events."""
    obs, start, end, _ = await _outcomes(session, tenant_id, since=since, limit=limit)
    return obs, start, end


async def _outcomes(
    session: AsyncSession, tenant_id: str, *, since: dt.datetime | None, limit: int
) -> tuple[list[Observation], dt.datetime | None, dt.datetime | None, list[float]]:
    """As observations(), plus the router score of every first attempt that had one (the
    tenant's whole scored traffic, cascaded or not: what its percentiles are taken from)."""
    query = select(AuditEvent.request_id, AuditEvent.at, AuditEvent.payload).where(
        AuditEvent.tenant_id == tenant_id, AuditEvent.kind.in_(REQUEST_KINDS)
    )
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    rows = (await session.execute(query.order_by(AuditEvent.seq.desc()).limit(limit * 2))).all()
    escalated = {r.request_id for r in rows if (r.payload or {}).get("attempt", 1) >= 2}
    found: list[tuple[dt.datetime, Observation]] = []
    traffic: list[float] = []
    for r in rows:
        p = r.payload or {}
        decision = p.get("decision") or {}
        score, esc = decision.get("router_score"), p.get("escalation") or {}
        if p.get("attempt", 1) == 1 and score is not None:
            traffic.append(float(score))
        if p.get("attempt", 1) != 1 or decision.get("cascade") is None or score is None:
            continue
        if esc.get("confidence") is None:
            continue
        found.append((r.at, Observation(float(score), r.request_id in escalated)))
        if len(found) >= limit:
            break
    found.sort(key=lambda x: x[0])
    if not found:
        return [], None, None, traffic
    return [o for _, o in found], found[0][0], found[-1][0], traffic


async def _lock_tenant(session: AsyncSession, tenant_id: str) -> None:
    """Serialise calibration writes per tenant (a row lock; SQLite: its write lock)."""
    if (await session.connection()).dialect.name == "sqlite":
        result = await session.execute(
            update(_tenants).where(_tenants.c.id == tenant_id).values(id=_tenants.c.id)
        )
        found = cast(CursorResult[Any], result).rowcount
    else:
        query = select(_tenants.c.id).where(_tenants.c.id == tenant_id).with_for_update()
        found = len((await session.execute(query)).all())
    if not found:
        raise NotFoundError(f"tenant {tenant_id!r} does not exist", param="tenant")


async def _point(
    session: AsyncSession, tenant_id: str, row: RouterCalibrationVersion, actor: str, **extra: object
) -> None:
    active = await session.get(ActiveRouterCalibration, tenant_id)
    if active is None:
        session.add(ActiveRouterCalibration(tenant_id=tenant_id, calibration_id=row.id, activated_by=actor))
    else:
        active.calibration_id = row.id
        active.activated_by = actor
        active.activated_at = dt.datetime.now(dt.UTC)
    await session.flush()
    await append_event(
        session,
        kind="router_calibration.activated",
        actor=actor,
        tenant_id=tenant_id,
        payload={"version": row.version, "observations": row.observations, **extra},
    )


async def fit_tenant(
    session: AsyncSession,
    tenant_id: str,
    *,
    actor: str,
    since: dt.datetime | None = None,
    min_observations: int = MIN_OBSERVATIONS,
    activate: bool = True,
) -> StoredCalibration:
    """Fit a calibration from the tenant's outcomes and store it as a new (active) version.

    Raises InvalidRequestError (nothing written) when there are too few observations.
    """
    await _lock_tenant(session, tenant_id)
    obs, start, end, traffic = await _outcomes(session, tenant_id, since=since, limit=DEFAULT_LIMIT)
    try:
        document = fit_calibration(obs, min_observations=min_observations, traffic_scores=traffic)
    except ValueError as exc:
        raise InvalidRequestError(f"tenant {tenant_id}: {exc}", param="tenant") from None
    last = await session.scalar(
        select(func.max(RouterCalibrationVersion.version)).where(
            RouterCalibrationVersion.tenant_id == tenant_id
        )
    )
    row = RouterCalibrationVersion(
        tenant_id=tenant_id,
        version=(last or 0) + 1,
        document=document,
        observations=len(obs),
        window_start=start,
        window_end=end,
        created_by=actor,
    )
    session.add(row)
    await session.flush()
    if activate:
        await _point(session, tenant_id, row, actor)
    active = await session.get(ActiveRouterCalibration, tenant_id)
    return _stored(row, active.calibration_id if active else None)


async def _version_row(session: AsyncSession, tenant_id: str, version: int) -> RouterCalibrationVersion:
    row = await session.scalar(
        select(RouterCalibrationVersion).where(
            RouterCalibrationVersion.tenant_id == tenant_id, RouterCalibrationVersion.version == version
        )
    )
    if row is None:
        raise NotFoundError(
            f"tenant {tenant_id!r} has no router calibration version {version}", param="version"
        )
    return row


async def get_active(session: AsyncSession, tenant_id: str) -> StoredCalibration | None:
    row = await session.scalar(
        select(RouterCalibrationVersion)
        .join(ActiveRouterCalibration, ActiveRouterCalibration.calibration_id == RouterCalibrationVersion.id)
        .where(ActiveRouterCalibration.tenant_id == tenant_id)
    )
    return None if row is None else _stored(row, row.id)


async def activate(
    session: AsyncSession, tenant_id: str, version: int, *, actor: str, rollback: bool = False
) -> StoredCalibration:
    await _lock_tenant(session, tenant_id)
    row = await _version_row(session, tenant_id, version)
    try:
        Calibration.from_document(row.document)  # still readable by this code
    except ValueError as exc:
        raise InvalidRequestError(f"router calibration version {version}: {exc}", param="version") from None
    await _point(session, tenant_id, row, actor, **({"rollback": True} if rollback else {}))
    return _stored(row, row.id)


async def deactivate(session: AsyncSession, tenant_id: str, *, actor: str) -> int:
    """Route the tenant uncalibrated again (the versions stay); returns the version that was active."""
    await _lock_tenant(session, tenant_id)
    current = await get_active(session, tenant_id)
    if current is None:
        raise NotFoundError(f"tenant {tenant_id!r} has no active router calibration", param="tenant")
    active = await session.get(ActiveRouterCalibration, tenant_id)
    await session.delete(active)
    await session.flush()
    await append_event(
        session,
        kind="router_calibration.deactivated",
        actor=actor,
        tenant_id=tenant_id,
        payload={"version": current.version},
    )
    return current.version


async def rollback(
    session: AsyncSession, tenant_id: str, *, actor: str, to_version: int | None = None
) -> StoredCalibration:
    """Activate ``to_version``, or else the highest version below the active one."""
    if to_version is None:
        current = await get_active(session, tenant_id)
        if current is None:
            raise NotFoundError(f"tenant {tenant_id!r} has no active router calibration", param="tenant")
        to_version = await session.scalar(
            select(func.max(RouterCalibrationVersion.version)).where(
                RouterCalibrationVersion.tenant_id == tenant_id,
                RouterCalibrationVersion.version < current.version,
            )
        )
        if to_version is None:
            raise NotFoundError(
                f"tenant {tenant_id!r} has no router calibration before version {current.version}",
                param="version",
            )
    return await activate(session, tenant_id, to_version, actor=actor, rollback=True)


async def list_versions(session: AsyncSession, tenant_id: str) -> list[StoredCalibration]:
    active = await session.get(ActiveRouterCalibration, tenant_id)
    rows = await session.scalars(
        select(RouterCalibrationVersion)
        .where(RouterCalibrationVersion.tenant_id == tenant_id)
        .order_by(RouterCalibrationVersion.version)
    )
    return [_stored(r, active.calibration_id if active else None) for r in rows]


async def tenants_with_cascades(session: AsyncSession, *, since: dt.datetime | None = None) -> list[str]:
    """Ids of the tenants that have request events (the periodic job tries each)."""
    query = select(AuditEvent.tenant_id).where(
        AuditEvent.kind.in_(REQUEST_KINDS), AuditEvent.tenant_id.is_not(None)
    )
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    return sorted({t for t in (await session.scalars(query.distinct())) if t})
