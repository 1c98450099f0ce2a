"""Stored payloads: large workflow payloads kept out of Temporal's history, and who refers to them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stored_payloads",
        sa.Column("digest", sa.String(length=64), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("touched_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "stored_payload_refs",
        sa.Column(
            "digest",
            sa.String(length=64),
            sa.ForeignKey("stored_payloads.digest", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("workflow_id", sa.String(length=1000), primary_key=True),
        sa.Column("touched_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_stored_payload_refs_workflow", "stored_payload_refs", ["workflow_id"])


def downgrade() -> None:
    op.drop_index("ix_stored_payload_refs_workflow", table_name="stored_payload_refs")
    op.drop_table("stored_payload_refs")
    op.drop_table("stored_payloads")
