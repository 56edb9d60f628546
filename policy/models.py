"""Stored policies: every version of every tenant's document, and the active pointer."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, UTCDateTime, utcnow


class PolicyVersion(Base):
    """One immutable version of a tenant's policy document (never updated or deleted)."""

    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("tenant_id", "version", name="uq_policy_versions_tenant_version"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per tenant
    document: Mapped[dict[str, Any]] = mapped_column(JSON)  # the parsed mapping
    source: Mapped[str] = mapped_column(Text)  # the text as submitted (YAML or JSON)
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical JSON
    comment: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ActivePolicy(Base):
    """Which version serves a tenant; switching it is one row update (atomic)."""

    __tablename__ = "policy_active"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_versions.id", ondelete="RESTRICT"))
    activated_by: Mapped[str] = mapped_column(String(200))
    activated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
