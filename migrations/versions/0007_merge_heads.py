"""merge the rooms' branches (billing, policy, compliance, admin keys and rate limits)

Revision ID: 0007_merge_heads
Revises: 0002_billing, 0003_policy, 0004_compliance, 0006_rate_limits
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0007_merge_heads"
down_revision: str | Sequence[str] | None = (
    "0002_billing",
    "0003_policy",
    "0004_compliance",
    "0006_rate_limits",
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
