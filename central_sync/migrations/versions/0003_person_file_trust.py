"""person-file changes (merge / unmerge / reassign with who, when, why), reviews of uncertain face matches,
the persons and HTTP status of each audited request, token expiry

Tokens that exist when this runs are given an expiry 90 days from now (every token carries one).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import op

from central_sync.storage.models import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: expiry given to the tokens that exist when the migration runs
EXISTING_TOKEN_DAYS = 90


def upgrade() -> None:
    op.create_table(
        "person_file_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("moved", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=False),
        sa.Column("undone_by", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("person_file_changes", schema=None) as b:
        b.create_index(b.f("ix_person_file_changes_time"), ["time"], unique=False)
        b.create_index(b.f("ix_person_file_changes_source_id"), ["source_id"], unique=False)
        b.create_index(b.f("ix_person_file_changes_target_id"), ["target_id"], unique=False)

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("other_person_id", sa.String(length=64), nullable=True),
        sa.Column("event_id", sa.String(length=36), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("other_score", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_by", sa.String(length=64), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reviews", schema=None) as b:
        b.create_index(b.f("ix_reviews_person_id"), ["person_id"], unique=False)
        b.create_index(b.f("ix_reviews_event_id"), ["event_id"], unique=False)
        b.create_index("ix_reviews_open", ["cleared_at", "created_at"], unique=False)

    with op.batch_alter_table("audit_log", schema=None) as b:
        b.add_column(sa.Column("persons", sa.JSON(), nullable=True))
        b.add_column(sa.Column("status", sa.Integer(), nullable=True))

    with op.batch_alter_table("api_tokens", schema=None) as b:
        b.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    tokens = sa.table("api_tokens", sa.column("expires_at", UtcDateTime()))
    op.execute(
        tokens.update()
        .where(tokens.c.expires_at.is_(None))
        .values(expires_at=datetime.now(timezone.utc) + timedelta(days=EXISTING_TOKEN_DAYS))
    )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as b:
        b.drop_column("expires_at")
    with op.batch_alter_table("audit_log", schema=None) as b:
        b.drop_column("status")
        b.drop_column("persons")
    op.drop_table("reviews")
    op.drop_table("person_file_changes")
