"""device pools for dispatch: backend, variants, upstream models and credentials by reference, replicas

Revision ID: 0008_pool_dispatch
Revises: 0007_merge_heads
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import billing.db

revision: str = "0008_pool_dispatch"
down_revision: str | Sequence[str] | None = "0007_merge_heads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("compliance_pools") as batch:
        batch.add_column(sa.Column("backend", sa.String(16), nullable=False, server_default="embedded"))
        batch.add_column(sa.Column("variants", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("models", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("api_key_env", sa.String(100), nullable=True))
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="api"))
    op.create_table(
        "compliance_pool_replicas",
        sa.Column("id", _ID, nullable=False),
        sa.Column(
            "pool_id",
            _ID,
            sa.ForeignKey(
                "compliance_pools.id",
                ondelete="CASCADE",
                name="fk_compliance_pool_replicas_pool_id_compliance_pools",
            ),
            nullable=False,
        ),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", billing.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_pool_replicas")),
        sa.UniqueConstraint("pool_id", "url", name="uq_compliance_pool_replicas_pool_url"),
    )
    op.create_index("ix_compliance_pool_replicas_pool_id", "compliance_pool_replicas", ["pool_id"])


def downgrade() -> None:
    op.drop_index("ix_compliance_pool_replicas_pool_id", table_name="compliance_pool_replicas")
    op.drop_table("compliance_pool_replicas")
    with op.batch_alter_table("compliance_pools") as batch:
        for column in ("source", "api_key_env", "models", "variants", "backend"):
            batch.drop_column(column)
