"""Hosts: the machine holding a session's worktree, and which execution a codex attempt is.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as table:
        table.add_column(sa.Column("host", sa.String(length=255), nullable=True))
    with op.batch_alter_table("codex_tasks") as table:
        table.add_column(sa.Column("attempt_key", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("codex_tasks") as table:
        table.drop_column("attempt_key")
    with op.batch_alter_table("sessions") as table:
        table.drop_column("host")
