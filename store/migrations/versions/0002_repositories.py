"""Repositories: a project's import status and origin, a session's branch, commits and delivery.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as table:
        table.add_column(
            sa.Column("status", sa.String(length=16), server_default="ready", nullable=False)
        )
        table.add_column(sa.Column("error", sa.Text(), nullable=True))
        table.add_column(sa.Column("import_progress", sa.String(length=255), nullable=True))
        table.add_column(sa.Column("repository", sa.JSON(), nullable=True))
        table.add_column(
            sa.Column(
                "default_branch", sa.String(length=255), server_default="main", nullable=False
            )
        )
    with op.batch_alter_table("sessions") as table:
        table.add_column(sa.Column("branch", sa.String(length=255), nullable=True))
        table.add_column(sa.Column("base_commit", sa.String(length=64), nullable=True))
        table.add_column(sa.Column("head_commit", sa.String(length=64), nullable=True))
        table.add_column(sa.Column("worktree", sa.String(length=1024), nullable=True))
        table.add_column(sa.Column("delivery", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as table:
        for column in ("delivery", "worktree", "head_commit", "base_commit", "branch"):
            table.drop_column(column)
    with op.batch_alter_table("projects") as table:
        for column in ("default_branch", "repository", "import_progress", "error", "status"):
            table.drop_column(column)
