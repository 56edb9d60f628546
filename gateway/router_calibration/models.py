"""Stored router calibrations: every version of every tenant's, and the active pointer."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

import gateway.auth.models  # noqa: F401  (registers `tenants`, which the foreign keys name)
from billing.db import Base, UTCDateTime, utcnow


class RouterCalibrationVersion(Base):
    """One immutable fitted calibration (policy.router.calibration document)."""

    __tablename__ = "router_calibrations"
    __table_args__ = (UniqueConstraint("tenant_id", "version", name="uq_router_calibrations_tenant_version"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per tenant
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    observations: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ActiveRouterCalibration(Base):
    """Which calibration version a tenant uses; switching it is one row update."""

    __tablename__ = "router_calibration_active"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    calibration_id: Mapped[int] = mapped_column(ForeignKey("router_calibrations.id", ondelete="RESTRICT"))
    activated_by: Mapped[str] = mapped_column(String(200))
    activated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
