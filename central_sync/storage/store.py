"""The central store: SQLAlchemy 2 over SQLite (WAL, default) or PostgreSQL (by URL).

Every write that can be repeated by a redelivery is idempotent: events on ``event_id``, media on
``(event_id, name)``, feedback on ``feedback_id``, tasks on ``(tier_change_id, kind)``.
The schema is created and upgraded with alembic at start (:meth:`CentralStore.migrate`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import BindParameter, Engine, Table, bindparam, create_engine, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from anqi_contract.logs import log
from central_sync.config import CentralConfig, TierThresholds
from central_sync.storage.models import Disposition, Embedding, Event, Person, Review, utcnow
from central_sync.tiers import PersonHistory, TierAssessment, assess, window_starts

logger = logging.getLogger("anqi.central.store")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: PostgreSQL advisory lock held while the schema is migrated (one migrator at a time across processes)
MIGRATION_LOCK_KEY = 4242000


@dataclass(frozen=True)
class ViolationRecord:
    """One violation as stored: from an edge event (consumer) or an audit JSONL line (classify)."""

    event_id: str
    violation_type: str
    time: datetime
    person_id: str | None = None
    point_id: str = ""
    device_id: str = ""
    site_id: str = ""
    schema_version: int = 1
    confidence: float | None = None
    face_found: bool = False
    match_score: float | None = None
    media_expected: int = 0
    body: dict[str, Any] = field(default_factory=dict)
    #: another enrolled person scored within ``identity.review_margin`` of ``person_id``: stored with a review row
    runner_up: str | None = None
    runner_up_score: float | None = None


def _table(model: type[Any]) -> Table:
    """A mapped class's table, typed as the :class:`Table` it is (the ORM types it as any FromClause)."""
    return cast(Table, model.__table__)


class StoreError(Exception):
    """The database cannot be opened or migrated (message names the URL without its password)."""


def _safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is reported as given, minus nothing secret
        return url.split("@")[-1]


class CentralStore:
    def __init__(self, url: str = "sqlite://", echo: bool = False, sqlite_synchronous: str = "FULL"):
        if sqlite_synchronous not in ("FULL", "NORMAL"):
            raise StoreError(f"sqlite_synchronous must be FULL or NORMAL, not {sqlite_synchronous!r}")
        self.url = url
        kw: dict[str, Any] = {"echo": echo, "future": True}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kw["poolclass"] = StaticPool
        else:
            kw["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(url, **kw)
        except Exception as e:  # noqa: BLE001 - bad URL, missing driver
            raise StoreError(f"database.url {_safe_url(url)}: {e}") from None
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", lambda c, r: _sqlite_pragmas(c, r, sqlite_synchronous))
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Core statements built once (the per-event path: no ORM bookkeeping, cached compilation)
        ins = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        self._ins_person = ins(_table(Person)).on_conflict_do_nothing(index_elements=["person_id"])
        self._ins_event = (
            ins(_table(Event))
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(Event.__table__.c.event_id)
        )
        self._history = _history_statement()
        self._grouped: tuple[Any, Any, Any] | None = (
            None  # the statements of _histories_at, built on first use
        )
        self._exists = select(Event.__table__.c.event_id).where(
            Event.__table__.c.event_id == bindparam("eid")
        )
        self._exists_many = select(Event.__table__.c.event_id).where(
            Event.__table__.c.event_id.in_(bindparam("eids", expanding=True))
        )
        self._merged = select(Person.__table__.c.merged_into).where(
            Person.__table__.c.person_id == bindparam("pid")
        )
        self._merged_many = select(Person.__table__.c.person_id, Person.__table__.c.merged_into).where(
            Person.__table__.c.person_id.in_(bindparam("pids", expanding=True)),
            Person.__table__.c.merged_into.is_not(None),
        )
        self._ins_embedding = _table(Embedding).insert()

    @classmethod
    def from_config(cls, cfg: CentralConfig, migrate: bool = True) -> CentralStore:
        store = cls(
            cfg.database_url(), echo=cfg.database.echo, sqlite_synchronous=cfg.database.sqlite_synchronous
        )
        if migrate:
            store.migrate()
        return store

    def migrate(self) -> None:
        """Bring the schema to the newest alembic revision (creates it on an empty database)."""
        from alembic import command
        from alembic.config import Config

        acfg = Config()
        acfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    # several consumers starting at once: one migrates, the others wait here and then find the
                    # schema at head (the lock ends with this transaction; alembic's DDL runs inside it)
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
                acfg.attributes["connection"] = conn
                command.upgrade(acfg, "head")
        except Exception as e:  # noqa: BLE001 - unreachable server, permissions, corrupt file
            raise StoreError(f"database.url {_safe_url(self.url)}: cannot migrate the schema: {e}") from None
        log(logger, "store_ready", url=_safe_url(self.url), dialect=self.dialect)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s:
            with s.begin():
                yield s

    # ---------------------------------------------------------------- inserts
    def ensure_person(self, s: Session, person_id: str, kind: str = "listed", **fields: Any) -> None:
        s.connection().execute(
            self._ins_person,
            {
                "person_id": person_id,
                "kind": kind,
                "created_at": utcnow(),
                "tier": "none",
                "party_member": bool(fields.pop("party_member", False)),
                **fields,
            },
        )

    def add_violation(
        self, rec: ViolationRecord, s: Session | None = None, person_exists: bool = False
    ) -> bool:
        """Store one violation; ``False`` when its ``event_id`` is already stored (duplicate delivery).
        The person row is created unless the caller knows it exists (``person_exists``)."""
        if s is None:
            with self.session() as s2:
                return self.add_violation(rec, s2, person_exists)
        if rec.person_id and not person_exists:
            self.ensure_person(s, rec.person_id)
        res = s.connection().execute(self._ins_event, _event_row(rec, utcnow()))
        return res.first() is not None

    def add_violations(self, recs: Sequence[ViolationRecord]) -> int:
        """Bulk ingest in one transaction (person upserts and event inserts as one multi-row statement each);
        returns how many were new."""
        with self.session() as s:
            self.ensure_persons(s, sorted({r.person_id for r in recs if r.person_id}))
            return len(self.insert_events(s, recs))

    def ensure_persons(self, s: Session, person_ids: Sequence[str], kind: str = "listed") -> None:
        """:meth:`ensure_person` for many ids in one statement (``INSERT .. ON CONFLICT DO NOTHING``)."""
        if person_ids:
            now = utcnow()
            s.connection().execute(
                self._ins_person,
                [
                    {"person_id": p, "kind": kind, "created_at": now, "tier": "none", "party_member": False}
                    for p in person_ids
                ],
            )

    def insert_events(self, s: Session, recs: Sequence[ViolationRecord]) -> set[str]:
        """Insert the events (their person rows must exist) in one multi-row ``INSERT .. ON CONFLICT DO NOTHING
        RETURNING``; returns the ids that were new (an id already stored, or twice in ``recs``, is left out once)."""
        if not recs:
            return set()
        now = utcnow()
        res = s.connection().execute(self._ins_event, [_event_row(r, now) for r in recs])
        new = {eid for (eid,) in res}
        flagged = [r for r in recs if r.runner_up and r.person_id and r.event_id in new]
        if flagged:  # uncertain matches: stored (they count) and listed for an officer to confirm or reassign
            s.connection().execute(
                _table(Review).insert(),
                [
                    {
                        "kind": "uncertain_match",
                        "person_id": r.person_id,
                        "other_person_id": r.runner_up,
                        "event_id": r.event_id,
                        "score": r.match_score,
                        "other_score": r.runner_up_score,
                        "created_at": now,
                    }
                    for r in flagged
                ],
            )
            log(logger, "uncertain_matches", level=logging.WARNING, events=len(flagged), review=True)
        return new

    def existing_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` are stored already (one indexed look-up for a whole batch)."""
        if not event_ids:
            return set()
        with self.engine.connect() as c:
            return {eid for (eid,) in c.execute(self._exists_many, {"eids": list(event_ids)})}

    def add_disposition(
        self,
        person_id: str,
        kind: str,
        time: datetime,
        source: str = "import",
        task_id: str | None = None,
        note: str | None = None,
        s: Session | None = None,
    ) -> None:
        if s is None:
            with self.session() as s2:
                return self.add_disposition(person_id, kind, time, source, task_id, note, s2)
        self.ensure_person(s, person_id)
        s.add(
            Disposition(person_id=person_id, kind=kind, time=time, source=source, task_id=task_id, note=note)
        )
        return None

    def event_exists(self, event_id: str) -> bool:
        with self.engine.connect() as c:
            return c.execute(self._exists, {"eid": event_id}).first() is not None

    def lock_new_person_files(self, s: Session) -> None:
        """Serialise the opening of unknown-person files across consumers until ``s`` commits (PostgreSQL
        advisory transaction lock; SQLite has a single writer and needs none)."""
        if self.dialect == "postgresql":
            s.connection().execute(text("SELECT pg_advisory_xact_lock(4242001)"))

    def merged_into(self, person_id: str, s: Session) -> str | None:
        """The enrolled person an unknown file was merged into (``None`` when it was not)."""
        return s.connection().execute(self._merged, {"pid": person_id}).scalar()

    def merged_into_many(self, person_ids: Sequence[str], s: Session) -> dict[str, str]:
        """:meth:`merged_into` for many persons in one look-up: only the merged ones are in the answer."""
        if not person_ids:
            return {}
        return dict(s.connection().execute(self._merged_many, {"pids": list(person_ids)}).tuples().all())

    def add_embedding(
        self, s: Session, person_id: str, source: str, model: str, vector: bytes, event_id: str | None = None
    ) -> None:
        self.add_embeddings(s, [(person_id, source, model, vector, event_id)])

    def add_embeddings(self, s: Session, rows: Sequence[tuple[str, str, str, bytes, str | None]]) -> None:
        """Embedding rows ``(person_id, source, model, vector, event_id)`` in one statement."""
        if rows:
            now = utcnow()
            s.connection().execute(
                self._ins_embedding,
                [
                    {"person_id": p, "source": src, "model": m, "vector": v, "event_id": e, "created_at": now}
                    for p, src, m, v, e in rows
                ],
            )

    # ---------------------------------------------------------------- tiers
    def person_history(
        self, person_id: str, at: datetime, th: TierThresholds, s: Session | None = None
    ) -> PersonHistory:
        """Table 1's inputs for one person at ``at``: one statement of indexed range scans on (person_id, time)."""
        if s is None:
            with self.session() as s2:
                return self.person_history(person_id, at, th, s2)
        s7, s30, s365 = window_starts(at, th)
        row = (
            s.connection()
            .execute(
                self._history,
                {
                    "pid": person_id,
                    "at": at,
                    "s7": s7,
                    "s30": s30,
                    "s365": s365,
                    "kinds": list(th.repeat_dispositions),
                },
            )
            .one()
        )
        last_v, first_d = row[3], row[4]
        return PersonHistory(
            at=at,
            count_7d=int(row[2]),
            count_30d=int(row[1]),
            count_365d=int(row[0]),
            first_repeat_disposition=_aware(first_d),
            last_violation=_aware(last_v),
        )

    def assess_person(
        self, person_id: str, at: datetime, th: TierThresholds, s: Session | None = None
    ) -> TierAssessment:
        """The one tier evaluation used by the consumer, the daily re-evaluation and ``classify``."""
        return assess(person_id, self.person_history(person_id, at, th, s), th)

    def person_histories(
        self, items: Sequence[tuple[str, datetime]], th: TierThresholds, s: Session
    ) -> list[PersonHistory]:
        """:meth:`person_history` for many ``(person_id, at)`` in few round trips, each answer exactly
        :meth:`person_history`'s: the persons assessed at one time (the consumer's batch: all at "now") together,
        by :meth:`_histories_at`."""
        by_time: dict[datetime, list[int]] = {}
        for k, (_, at) in enumerate(items):
            by_time.setdefault(at, []).append(k)
        out: list[PersonHistory | None] = [None] * len(items)
        for at, ks in by_time.items():
            for k, h in zip(ks, self._histories_at([items[k][0] for k in ks], at, th, s), strict=True):
                out[k] = h
        return out  # type: ignore[return-value]  # every slot filled above

    #: most persons per ``IN`` list in :meth:`_histories_at`
    GROUPED_CHUNK = 500

    def _histories_at(
        self, person_ids: Sequence[str], at: datetime, th: TierThresholds, s: Session
    ) -> list[PersonHistory]:
        """:meth:`person_history` of many persons at one time ``at``: the window counts and the last violation in the
        365-day window, then the first education/fine, each one ``GROUP BY person_id`` statement over the persons'
        index ranges, the four times bound once. The last violation before the window is looked up only for persons
        with none in it."""
        if self._grouped is None:
            self._grouped = _grouped_history_statements()
        counts_stmt, last_stmt, first_stmt = self._grouped
        s7, s30, s365 = window_starts(at, th)
        kinds = list(th.repeat_dispositions)
        counts: dict[str, Any] = {}
        firsts: dict[str, Any] = {}
        c = s.connection()
        uniq = list(dict.fromkeys(person_ids))
        for i in range(0, len(uniq), self.GROUPED_CHUNK):
            pids = uniq[i : i + self.GROUPED_CHUNK]
            counts.update(
                {
                    r[0]: r
                    for r in c.execute(
                        counts_stmt, {"pids": pids, "at": at, "s7": s7, "s30": s30, "s365": s365}
                    )
                }
            )
            firsts.update(
                c.execute(first_stmt, {"pids": pids, "at": at, "s365": s365, "kinds": kinds}).tuples().all()
            )
        older = [p for p in uniq if p not in counts]
        lasts: dict[str, Any] = {}
        for i in range(0, len(older), self.GROUPED_CHUNK):
            lasts.update(
                c.execute(last_stmt, {"pids": older[i : i + self.GROUPED_CHUNK], "at": at}).tuples().all()
            )
        out = []
        for pid in person_ids:
            row = counts.get(pid)
            n365, n30, n7, last = (
                (row[1], row[2], row[3], row[4]) if row is not None else (0, 0, 0, lasts.get(pid))
            )
            out.append(
                PersonHistory(
                    at=at,
                    count_7d=int(n7),
                    count_30d=int(n30),
                    count_365d=int(n365),
                    first_repeat_disposition=_aware(firsts.get(pid)),
                    last_violation=_aware(last),
                )
            )
        return out

    def assess_persons(
        self, items: Sequence[tuple[str, datetime]], th: TierThresholds, s: Session
    ) -> list[TierAssessment]:
        """:meth:`assess_person` for many ``(person_id, at)`` (the consumer's batch), in order."""
        return [
            assess(pid, h, th) for (pid, _), h in zip(items, self.person_histories(items, th, s), strict=True)
        ]

    def persons_with_records_until(self, at: datetime) -> list[str]:
        """Persons with at least one violation or disposition at or before ``at`` (not merged away)."""
        with self.session() as s:
            ev = select(Event.person_id).where(Event.person_id.is_not(None), Event.time <= at)
            di = select(Disposition.person_id).where(Disposition.time <= at)
            ids = {r for (r,) in s.execute(ev.union(di))}
        return sorted(i for i in ids if i)

    def persons_active_since(self, since: datetime, at: datetime) -> list[str]:
        """Persons who may hold a tier other than none at ``at`` (violations in the repeat window)."""
        with self.session() as s:
            rows = s.execute(
                select(Event.person_id)
                .where(Event.person_id.is_not(None), Event.time > since, Event.time <= at)
                .distinct()
            )
            ids = {r for (r,) in rows}
            rows = s.execute(
                select(Person.person_id).where(Person.tier != "none", Person.merged_into.is_(None))
            )
            ids |= {r for (r,) in rows}
        return sorted(i for i in ids if i is not None)

    def count_events(self) -> int:
        with self.session() as s:
            return int(s.execute(select(func.count()).select_from(Event)).scalar() or 0)


def _event_row(rec: ViolationRecord, received_at: datetime) -> dict[str, Any]:
    return dict(
        event_id=rec.event_id,
        schema_version=rec.schema_version,
        device_id=rec.device_id,
        site_id=rec.site_id,
        point_id=rec.point_id,
        violation_type=rec.violation_type,
        time=rec.time,
        person_id=rec.person_id,
        match_score=rec.match_score,
        confidence=rec.confidence,
        face_found=rec.face_found,
        media_expected=rec.media_expected,
        body=rec.body,
        received_at=received_at,
    )


def _history_statement() -> Any:
    """Table 1's inputs in one round trip (built once; parameters ``pid``, ``at``, ``s7``, ``s30``, ``s365``,
    ``kinds``): the three window counts in one range scan of ix_events_person_time (aggregate FILTER,
    PostgreSQL and SQLite >= 3.30), the last violation and the first education/fine as index look-ups."""
    from sqlalchemy import bindparam

    from central_sync.storage.models import UtcDateTime

    ev, di = Event.__table__.c, Disposition.__table__.c
    pid: BindParameter[str] = bindparam("pid")
    at, s7, s30, s365 = (bindparam(n, type_=UtcDateTime()) for n in ("at", "s7", "s30", "s365"))
    counts = (
        select(
            func.count().label("n365"),
            func.count().filter(ev.time > s30).label("n30"),
            func.count().filter(ev.time > s7).label("n7"),
        )
        .where(ev.person_id == pid, ev.time > s365, ev.time <= at)
        .subquery()
    )
    return select(
        counts.c.n365,
        counts.c.n30,
        counts.c.n7,
        select(func.max(ev.time)).where(ev.person_id == pid, ev.time <= at).scalar_subquery(),
        select(func.min(di.time))
        .where(
            di.person_id == pid,
            di.kind.in_(bindparam("kinds", expanding=True)),
            di.time > s365,
            di.time <= at,
        )
        .scalar_subquery(),
    )


def _grouped_history_statements() -> tuple[Any, Any, Any]:
    """The statements of :meth:`CentralStore._histories_at` (parameters ``pids`` (expanding), ``at``, ``s7``, ``s30``,
    ``s365``, ``kinds`` (expanding)): per person the window counts and the last violation inside the 365-day window;
    the last violation at or before ``at`` (any age); the first education/fine inside the window."""
    from sqlalchemy import bindparam

    from central_sync.storage.models import UtcDateTime

    ev, di = Event.__table__.c, Disposition.__table__.c
    pids: BindParameter[list[str]] = bindparam("pids", expanding=True)
    at, s7, s30, s365 = (bindparam(n, type_=UtcDateTime()) for n in ("at", "s7", "s30", "s365"))
    counts = (
        select(
            ev.person_id,
            func.count(),
            func.count().filter(ev.time > s30),
            func.count().filter(ev.time > s7),
            func.max(ev.time),
        )
        .where(ev.person_id.in_(pids), ev.time > s365, ev.time <= at)
        .group_by(ev.person_id)
    )
    last = (
        select(ev.person_id, func.max(ev.time))
        .where(ev.person_id.in_(pids), ev.time <= at)
        .group_by(ev.person_id)
    )
    first = (
        select(di.person_id, func.min(di.time))
        .where(
            di.person_id.in_(pids),
            di.kind.in_(bindparam("kinds", expanding=True)),
            di.time > s365,
            di.time <= at,
        )
        .group_by(di.person_id)
    )
    return counts, last, first


def _aware(v: datetime | None) -> datetime | None:
    from datetime import timezone

    if v is None:
        return None
    if isinstance(v, str):  # SQLite aggregates return the stored text, not the column type
        v = datetime.fromisoformat(v)
    return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, synchronous: str = "FULL") -> None:
    """WAL, and ``synchronous=FULL`` by default: the consumer acks an event once its transaction committed, and the
    edge may then drop its copy, so a commit must survive a power cut, not only a crash of the process. ``NORMAL``
    (``database.sqlite_synchronous``) skips the WAL fsync per commit: a crash loses nothing, but the last commits
    can roll back on power loss. With the consumer's batches (one commit per batch) FULL costs little."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
