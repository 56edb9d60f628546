"""router calibrations: per-tenant versions fitted from cascade outcomes, and the active pointer

Revision ID: 0009_router_calibration
Revises: 0008_pool_dispatch
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import billing.db

revision: str = "0009_router_calibration"
down_revision: str | Sequence[str] | None = "0008_pool_dispatch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "router_calibrations",
        sa.Column("id", _ID, nullable=False),
        sa.Column(
            "tenant_id",
            sa.String(40),
            sa.ForeignKey("tenants.id", ondelete="CASCADE", name="fk_router_calibrations_tenant_id_tenants"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("observations", sa.Integer(), nullable=False),
        sa.Column("window_start", billing.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("window_end", billing.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", billing.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_router_calibrations")),
        sa.UniqueConstraint("tenant_id", "version", name="uq_router_calibrations_tenant_version"),
    )
    op.create_index("ix_router_calibrations_tenant_id", "router_calibrations", ["tenant_id"])
    op.create_table(
        "router_calibration_active",
        sa.Column(
            "tenant_id",
            sa.String(40),
            sa.ForeignKey(
                "tenants.id", ondelete="CASCADE", name="fk_router_calibration_active_tenant_id_tenants"
            ),
            nullable=False,
        ),
        sa.Column(
            "calibration_id",
            _ID,
            sa.ForeignKey(
                "router_calibrations.id",
                ondelete="RESTRICT",
                name="fk_router_calibration_active_calibration_id_router_calibrations",
            ),
            nullable=False,
        ),
        sa.Column("activated_by", sa.String(200), nullable=False),
        sa.Column("activated_at", billing.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_router_calibration_active")),
    )


def downgrade() -> None:
    op.drop_table("router_calibration_active")
    op.drop_index("ix_router_calibrations_tenant_id", table_name="router_calibrations")
    op.drop_table("router_calibrations")
