"""events: covering index for the cockpit's counts (time, type, point, device, received_at)

The cockpit counts 30 days of events by type and lists devices; with only ``ix_events_time`` each row
in the range costs a table lookup (118 ms p95 at 1,000,000 events on SQLite); this index answers them
from the index alone.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_events_cockpit",
        "events",
        ["time", "violation_type", "point_id", "device_id", "received_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_events_cockpit", table_name="events")
