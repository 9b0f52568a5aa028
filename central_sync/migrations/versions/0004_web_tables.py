"""web faces' tables: officers' accounts and sessions, kiosk and rider tokens (with expiry), device health,
riders' pass counts per point and interval (from the edge's heartbeats: the cockpit's safe-riding rate)

Before this revision the web service made its tables itself (``create_all``) at start. A database where it
did so keeps them: each table is created only when it is missing, and ``web_rider_tokens`` gains its
``created_at`` / ``expires_at`` columns (old links keep no expiry).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "web_users" not in have:
        op.create_table(
            "web_users",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("username", sa.String(length=64), nullable=False),
            sa.Column("password_hash", sa.String(length=256), nullable=False),
            sa.Column("role", sa.String(length=16), nullable=False),
            sa.Column("communities", sa.JSON(), nullable=False),
            sa.Column("failed", sa.Integer(), nullable=False),
            sa.Column("locked_until", TS, nullable=True),
            sa.Column("created_by", sa.String(length=64), nullable=True),
            sa.Column("created_at", TS, nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("username"),
        )
    if "web_sessions" not in have:
        op.create_table(
            "web_sessions",
            sa.Column("sid_hash", sa.String(length=64), nullable=False),
            sa.Column("username", sa.String(length=64), nullable=False),
            sa.Column("csrf", sa.String(length=64), nullable=False),
            sa.Column("expires_at", TS, nullable=False),
            sa.PrimaryKeyConstraint("sid_hash"),
        )
        op.create_index("ix_web_sessions_username", "web_sessions", ["username"])
    if "web_kiosk_tokens" not in have:
        op.create_table(
            "web_kiosk_tokens",
            sa.Column("token_hash", sa.String(length=64), nullable=False),
            sa.Column("name", sa.String(length=64), nullable=False),
            sa.Column("created_at", TS, nullable=False),
            sa.PrimaryKeyConstraint("token_hash"),
            sa.UniqueConstraint("name"),
        )
    if "web_rider_tokens" not in have:
        op.create_table(
            "web_rider_tokens",
            sa.Column("token_hash", sa.String(length=64), nullable=False),
            sa.Column("task_id", sa.String(length=36), nullable=False),
            sa.Column("person_id", sa.String(length=64), nullable=False),
            sa.Column("used_at", TS, nullable=True),
            sa.Column("created_at", TS, nullable=True),
            sa.Column("expires_at", TS, nullable=True),
            sa.PrimaryKeyConstraint("token_hash"),
        )
        op.create_index("ix_web_rider_tokens_task_id", "web_rider_tokens", ["task_id"])
    else:
        cols = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("web_rider_tokens")}
        with op.batch_alter_table("web_rider_tokens") as b:
            if "created_at" not in cols:
                b.add_column(sa.Column("created_at", TS, nullable=True))
            if "expires_at" not in cols:
                b.add_column(sa.Column("expires_at", TS, nullable=True))
    if "web_device_health" not in have:
        op.create_table(
            "web_device_health",
            sa.Column("device_id", sa.String(length=64), nullable=False),
            sa.Column("site_id", sa.String(length=64), nullable=False),
            sa.Column("state", sa.String(length=16), nullable=False),
            sa.Column("status_at", TS, nullable=True),
            sa.Column("heartbeat_at", TS, nullable=True),
            sa.Column("heartbeat", sa.JSON(), nullable=False),
            sa.PrimaryKeyConstraint("device_id"),
        )
    op.create_table(
        "web_pass_counts",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("point_id", sa.String(length=64), nullable=False),
        sa.Column("start", TS, nullable=False),
        sa.Column("end", TS, nullable=False),
        sa.Column("riders", sa.Integer(), nullable=False),
        sa.Column("violators", sa.Integer(), nullable=False),
        sa.Column("no_helmet", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("device_id", "point_id", "start"),
    )
    op.create_index("ix_web_pass_counts_start", "web_pass_counts", ["start"])


def downgrade() -> None:
    op.drop_index("ix_web_pass_counts_start", table_name="web_pass_counts")
    op.drop_table("web_pass_counts")
    op.drop_table("web_device_health")
    op.drop_index("ix_web_rider_tokens_task_id", table_name="web_rider_tokens")
    op.drop_table("web_rider_tokens")
    op.drop_table("web_kiosk_tokens")
    op.drop_index("ix_web_sessions_username", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("web_users")
