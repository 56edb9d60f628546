"""Tables of the compliance registry (artifacts, device pools, deployments) and of tenant
compliance profiles (versions kept, one active). Importing this module also registers the
audit checkpoint table, so that gateway/db_models.py needs one line for both."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, UTCDateTime, utcnow
from gateway.audit import checkpoint_models as _checkpoint_models  # noqa: F401

_ID = BigInteger().with_variant(Integer, "sqlite")


class RegisteredArtifact(Base):
    """A deployable artifact: model weights, a kernel stack or an engine build."""

    __tablename__ = "compliance_artifacts"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # model_weights | kernel_stack | engine_build
    version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    license: Mapped[str] = mapped_column(String(100))  # SPDX id
    license_source: Mapped[str] = mapped_column(String(100))  # "gguf:general.license" | "declared"
    patent_grant: Mapped[str] = mapped_column(String(16))  # express | none | unknown
    training_data: Mapped[str | None] = mapped_column(Text, nullable=True)  # disclosure, as published
    export_control: Mapped[str | None] = mapped_column(Text, nullable=True)  # e.g. ECCN notes
    source: Mapped[str] = mapped_column(String(500))  # URL, package or path it came from
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # e.g. GGUF general.* fields
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class DevicePool(Base):
    __tablename__ = "compliance_pools"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    device_kind: Mapped[str] = mapped_column(String(16))  # cpu | cuda | rocm | npu (gpu: legacy)
    vendor: Mapped[str] = mapped_column(String(64))  # intel, amd, nvidia, huawei, ...
    software_stack: Mapped[str] = mapped_column(String(16))  # CUDA | ROCm | CANN | CPU
    region: Mapped[str] = mapped_column(String(64), index=True)
    sovereign: Mapped[bool] = mapped_column(Boolean, default=False)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Dispatch (docs/pools.md): how requests reach the pool and which variants it serves.
    backend: Mapped[str] = mapped_column(String(16), default="embedded", server_default="embedded")
    variants: Mapped[list[str]] = mapped_column(JSON, default=list)  # [] = every variant
    models: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # variant -> upstream model name
    # The name of the environment variable holding an upstream's credential: never the secret.
    api_key_env: Mapped[str | None] = mapped_column(String(100), nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="api", server_default="api")  # api | file | seed


class PoolReplica(Base):
    """One address that serves a pool: a pool worker or an upstream engine's endpoint."""

    __tablename__ = "compliance_pool_replicas"
    __table_args__ = (UniqueConstraint("pool_id", "url", name="uq_compliance_pool_replicas_pool_url"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("compliance_pools.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    capacity: Mapped[int] = mapped_column(Integer, default=64)  # concurrent requests it takes
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Deployment(Base):
    """A served model id/variant, built from a set of artifacts, running on one pool."""

    __tablename__ = "compliance_deployments"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_id: Mapped[str] = mapped_column(String(64), index=True)  # deepseek-v4-flash, ...
    variant: Mapped[str] = mapped_column(String(16))
    pool_id: Mapped[int] = mapped_column(ForeignKey("compliance_pools.id", ondelete="RESTRICT"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeploymentArtifact(Base):
    __tablename__ = "compliance_deployment_artifacts"

    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("compliance_deployments.id", ondelete="CASCADE"), primary_key=True
    )
    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("compliance_artifacts.id", ondelete="RESTRICT"), primary_key=True
    )


class ComplianceProfileVersion(Base):
    """One immutable version of a tenant's compliance profile document."""

    __tablename__ = "compliance_profile_versions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "version", name="uq_compliance_profile_versions_tenant_version"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ActiveComplianceProfile(Base):
    __tablename__ = "compliance_profile_active"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    profile_version_id: Mapped[int] = mapped_column(
        ForeignKey("compliance_profile_versions.id", ondelete="RESTRICT")
    )
    activated_by: Mapped[str] = mapped_column(String(200))
    activated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
