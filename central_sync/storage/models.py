"""Tables of the central store (SQLAlchemy 2 declarative). Schema changes go through alembic
(``central_sync/migrations``); this module is the reference the migrations are checked against.

Times are stored as UTC: ``timestamp with time zone`` on PostgreSQL, ISO text in UTC on SQLite
(which compares correctly as text because every value has the same format).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given to the store: times must carry a UTC offset")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON}


class Person(Base):
    """One person, one file: an enrolled gallery person or a provisional unknown-person file."""

    __tablename__ = "persons"
    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="enrolled")  # enrolled | unknown
    name: Mapped[str | None] = mapped_column(String(128))
    id_number: Mapped[str | None] = mapped_column(String(32))
    community: Mapped[str | None] = mapped_column(String(128), index=True)
    employer: Mapped[str | None] = mapped_column(String(128))
    phone: Mapped[str | None] = mapped_column(String(32))
    party_member: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    merged_into: Mapped[str | None] = mapped_column(String(64), index=True)
    tier: Mapped[str] = mapped_column(String(16), default="none")
    tier_at: Mapped[datetime | None]


class Event(Base):
    __tablename__ = "events"
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    schema_version: Mapped[int] = mapped_column(Integer, default=1)
    device_id: Mapped[str] = mapped_column(String(64), default="")
    site_id: Mapped[str] = mapped_column(String(64), default="")
    point_id: Mapped[str] = mapped_column(String(64), default="")
    violation_type: Mapped[str] = mapped_column(String(32))
    time: Mapped[datetime]
    person_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("persons.person_id"))
    match_score: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float | None] = mapped_column(Float)
    face_found: Mapped[bool] = mapped_column(Boolean, default=False)
    media_expected: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_events_person_time", "person_id", "time"),
        Index("ix_events_time", "time"),
        Index("ix_events_point_time", "point_id", "time"),
        # the cockpit's counts by type / point / device over a time range, from the index alone
        Index("ix_events_cockpit", "time", "violation_type", "point_id", "device_id", "received_at"),
    )


class Media(Base):
    __tablename__ = "media"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), ForeignKey("events.event_id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(512))
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("event_id", "name", name="uq_media_event_name"),)


class Embedding(Base):
    __tablename__ = "embeddings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(String(64), ForeignKey("persons.person_id"), index=True)
    source: Mapped[str] = mapped_column(String(16))  # gallery | event
    event_id: Mapped[str | None] = mapped_column(String(36))
    model: Mapped[str] = mapped_column(String(32))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Disposition(Base):
    """A disposition that was carried out (education, fine, SMS reminder, ...), with its time."""

    __tablename__ = "dispositions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(String(64), ForeignKey("persons.person_id"))
    kind: Mapped[str] = mapped_column(String(32))
    time: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16), default="feedback")  # feedback | import | manual
    task_id: Mapped[str | None] = mapped_column(String(36))
    note: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (Index("ix_dispositions_person_kind_time", "person_id", "kind", "time"),)


class TierChange(Base):
    __tablename__ = "tier_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(String(64), ForeignKey("persons.person_id"), index=True)
    from_tier: Mapped[str] = mapped_column(String(16))
    to_tier: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    event_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Task(Base):
    """A disposition task for the external system that carries it out (table 2, clause 8.3)."""

    __tablename__ = "tasks"
    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tier_change_id: Mapped[int] = mapped_column(Integer, ForeignKey("tier_changes.id"))
    person_id: Mapped[str] = mapped_column(String(64), ForeignKey("persons.person_id"), index=True)
    tier: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | done | failed | cancelled
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (
        UniqueConstraint("tier_change_id", "kind", name="uq_tasks_change_kind"),
        Index("ix_tasks_status", "status"),
    )


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    feedback_id: Mapped[str] = mapped_column(String(64), unique=True)
    task_id: Mapped[str] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(16))
    time: Mapped[datetime]
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    client: Mapped[str | None] = mapped_column(String(64))
    #: the person files whose data the answer carried (ids; never names or ID numbers); ``None`` when none
    persons: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    #: HTTP status of the answer (401, 403, 413, 422, 429, 500, ...); ``None`` for entries written outside a request
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    community: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    #: refused from this time on (``token create --expires-days``); every token carries one
    expires_at: Mapped[datetime | None]


class PersonFileChange(Base):
    """A merge, unmerge or reassignment of person-file rows, with who did it, when and why, and exactly which rows
    moved (so that a merge can be undone row for row)."""

    __tablename__ = "person_file_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(16))  # merge | unmerge | reassign
    source_id: Mapped[str] = mapped_column(String(64), index=True)
    target_id: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    #: ids of the rows moved: {"events": [...], "embeddings": [...], "dispositions": [...], "tasks": [...]}
    moved: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: tiers before/after and the tasks cancelled because a tier fell with the correction
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: for a merge: the unmerge that undid it
    undone_by: Mapped[int | None] = mapped_column(Integer)


class Review(Base):
    """A face match an officer must look at: a photo enrolled although it matches another enrolled person
    (``enrol --force``), or an event face whose best gallery match is not clearly ahead of a second person."""

    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))  # enrolment_conflict | uncertain_match
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    other_person_id: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(36), index=True)
    score: Mapped[float | None] = mapped_column(Float)
    other_score: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cleared_at: Mapped[datetime | None]
    cleared_by: Mapped[str | None] = mapped_column(String(64))
    resolution: Mapped[str | None] = mapped_column(String(16))  # confirmed | reassigned | dismissed
    note: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (Index("ix_reviews_open", "cleared_at", "created_at"),)
