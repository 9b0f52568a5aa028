"""web_pass_hours: the pass counters summed per device, point and UTC hour, for the cockpit's safe-riding rate

Summing a week of 5-minute intervals (100,800 rows for 50 points) took 0.9 s p50 on SQLite at 1,000,000 events;
the hourly sums are 8,400 rows. Filled from web_pass_counts here; kept in step by the heartbeat reader.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from central_sync.storage.models import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_pass_hours",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("point_id", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("riders", sa.Integer(), nullable=False),
        sa.Column("violators", sa.Integer(), nullable=False),
        sa.Column("no_helmet", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "point_id", "hour"),
    )
    op.create_index("ix_web_pass_hours_hour", "web_pass_hours", ["hour"])
    counts = sa.table(
        "web_pass_counts",
        *(sa.column(c) for c in ("device_id", "point_id", "riders", "violators", "no_helmet")),
        sa.column("start", UtcDateTime()),
        sa.column("end", UtcDateTime()),
    )
    hours: dict[tuple[str, str, datetime], list] = {}  # type: ignore[type-arg]
    for r in op.get_bind().execute(sa.select(counts)):
        start = r.start if r.start.tzinfo else r.start.replace(tzinfo=timezone.utc)
        end = r.end if r.end.tzinfo else r.end.replace(tzinfo=timezone.utc)
        h = hours.setdefault(
            (r.device_id, r.point_id, start.replace(minute=0, second=0, microsecond=0)), [end, 0, 0, 0]
        )
        h[0] = max(h[0], end)
        h[1] += r.riders
        h[2] += r.violators
        h[3] += r.no_helmet
    if hours:
        table = sa.table(
            "web_pass_hours",
            *(sa.column(c) for c in ("device_id", "point_id", "riders", "violators", "no_helmet")),
            sa.column("hour", UtcDateTime()),
            sa.column("last_end", UtcDateTime()),
        )
        op.bulk_insert(
            table,  # type: ignore[arg-type]
            [
                {
                    "device_id": d,
                    "point_id": p,
                    "hour": hr,
                    "last_end": v[0],
                    "riders": v[1],
                    "violators": v[2],
                    "no_helmet": v[3],
                }
                for (d, p, hr), v in hours.items()
            ],  # fmt: skip
        )


def downgrade() -> None:
    op.drop_index("ix_web_pass_hours_hour", table_name="web_pass_hours")
    op.drop_table("web_pass_hours")
