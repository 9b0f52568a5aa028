"""Tables of the web faces (``central_sync.web``): officers' accounts and sessions, kiosk and rider tokens,
device health, pass counts. They are part of the store's schema: created and changed by the alembic chain (revision 0004), on the
store's own ``Base`` so the migration check (``tests/central/storage/test_store.py``) covers them too."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from central_sync.storage.models import Base, UtcDateTime, utcnow


class WebUser(Base):
    __tablename__ = "web_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    communities: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: all communities
    failed: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebSession(Base):
    __tablename__ = "web_sessions"
    sid_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]


class KioskToken(Base):
    __tablename__ = "web_kiosk_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RiderToken(Base):
    """The link of a reminder task (made with the occasional tier's case-study task): opens the rider's own
    page until it expires; spent when the quiz is passed (the case-study task is then done)."""

    __tablename__ = "web_rider_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(36), index=True)
    person_id: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # None: made before 0004 (no expiry)


class DeviceHealth(Base):
    __tablename__ = "web_device_health"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(16), default="unknown")  # online | offline (status topic)
    status_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    heartbeat: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PassCount(Base):
    """Riders that passed through a point's capture zone in one interval, from the edge's heartbeats (the same
    interval is sent again in later heartbeats until it leaves the edge's ring: upserted, counters only grow)."""

    __tablename__ = "web_pass_counts"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    point_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    start: Mapped[datetime] = mapped_column(primary_key=True, index=True)  # the cockpit's range
    end: Mapped[datetime]
    riders: Mapped[int] = mapped_column(Integer)
    violators: Mapped[int] = mapped_column(Integer)
    no_helmet: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PassHour(Base):
    """The pass counters summed per device, point and UTC hour (the cockpit's safe-riding query reads these: a
    week of a 50-point city is 8,400 rows, not 100,800 intervals). Kept in step with ``web_pass_counts`` by
    adding each interval's growth (revision 0005)."""

    __tablename__ = "web_pass_hours"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    point_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    last_end: Mapped[datetime]  # end of the latest interval counted in it
    riders: Mapped[int] = mapped_column(Integer)
    violators: Mapped[int] = mapped_column(Integer)
    no_helmet: Mapped[int] = mapped_column(Integer)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_rider_token(s: Session, task_id: str, person_id: str, days: int) -> str:
    """A rider link's token for ``task_id`` (in the caller's transaction: the task and its link are made
    together); only its hash is kept here."""
    token = secrets.token_urlsafe(24)
    now = utcnow()
    s.add(
        RiderToken(
            token_hash=token_hash(token),
            task_id=task_id,
            person_id=person_id,
            created_at=now,
            expires_at=now + timedelta(days=days),
        )
    )
    return token
