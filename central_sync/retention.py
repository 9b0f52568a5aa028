"""Retention per kind of data, and erasure of one person (PIPL: limited retention, the right to erasure).

:func:`apply_retention` (daily, with the re-evaluation, and ``anqi-central retention``) removes what is past
its time in ``retention``: evidence files (``media_days``), events with what hangs on them (``events_days``,
never shorter than the tiers' longest window), provisional unknown-person files without a violation for
``unknown_person_days``, audit entries older than ``audit_days``. Each kind removed is one log line
(``retention_removed``) and the run leaves one audit entry (counts only, no personal data).

:func:`erase_person` (``anqi-central erase --person ID --by NAME``) removes a person's file, its embeddings,
events, evidence files, tier history, tasks and dispositions (and of the files merged into it); the audit
log keeps that an erasure happened, when, by whom and how much was removed, never what.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from anqi_contract.logs import log
from central_sync.config import CentralConfig
from central_sync.storage.models import (
    AuditEntry,
    Disposition,
    Embedding,
    Event,
    Feedback,
    Media,
    Person,
    Review,
    Task,
    TierChange,
)
from central_sync.storage.store import CentralStore

logger = logging.getLogger("anqi.central.retention")

__all__ = ["RetentionReport", "apply_retention", "erase_person", "ErasureReport"]


@dataclass
class RetentionReport:
    media_files: int = 0
    media_bytes: int = 0
    events: int = 0
    unknown_persons: int = 0
    audit_entries: int = 0
    cutoffs: dict[str, str] = field(default_factory=dict)


@dataclass
class ErasureReport:
    person_ids: list[str]
    events: int = 0
    media_files: int = 0
    embeddings: int = 0
    tasks: int = 0
    dispositions: int = 0


def _remove_files(rows: list[tuple[str, str]], media_root: Path) -> tuple[int, int]:
    """Delete media files (``(event_id, path)``); folders left empty go too. Returns (files, bytes)."""
    n = size = 0
    root = media_root.resolve()
    for eid, p in rows:
        path = Path(p)
        try:
            resolved = path.resolve()
            if root not in resolved.parents:  # a path outside media.dir is never deleted
                log(logger, "retention_path_outside_media_dir", logging.ERROR, event_id=eid)
                continue
            size += resolved.stat().st_size
            resolved.unlink()
            n += 1
            for extra in resolved.parent.glob(f".{resolved.name}.*"):  # the sealed digest beside it
                extra.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        folder = root / eid
        if folder.is_dir() and not any(p for p in folder.iterdir() if not p.name.startswith(".")):
            shutil.rmtree(folder, ignore_errors=True)
    return n, size


def _drop_events(s: Session, eids: list[str], media_root: Path) -> tuple[int, int]:
    files = 0
    size = 0
    for i in range(0, len(eids), 500):
        part = eids[i : i + 500]
        rows = [
            (e, p) for e, p in s.execute(select(Media.event_id, Media.path).where(Media.event_id.in_(part)))
        ]
        f, b = _remove_files(rows, media_root)
        files, size = files + f, size + b
        s.execute(delete(Media).where(Media.event_id.in_(part)))
        s.execute(delete(Embedding).where(Embedding.event_id.in_(part), Embedding.source == "event"))
        s.execute(update(TierChange).where(TierChange.event_id.in_(part)).values(event_id=None))
        s.execute(delete(Event).where(Event.event_id.in_(part)))
    return files, size


def apply_retention(
    store: CentralStore, cfg: CentralConfig, now: datetime, dry_run: bool = False
) -> RetentionReport:
    r = cfg.retention
    media_root = cfg.resolve(cfg.media.dir)
    rep = RetentionReport()
    with store.session() as s:
        stale: list[str] = []
        if r.unknown_person_days:  # chosen first: the events step below must not change who is stale
            cut = now - timedelta(days=r.unknown_person_days)
            rep.cutoffs["unknown_persons"] = cut.isoformat()
            last = (
                select(Event.person_id, func.max(Event.time).label("last"))
                .where(Event.person_id.is_not(None))
                .group_by(Event.person_id)
                .subquery()
            )
            stale = [
                pid
                for (pid,) in s.execute(
                    select(Person.person_id)
                    .outerjoin(last, last.c.person_id == Person.person_id)
                    .where(Person.kind == "unknown")
                    .where(((last.c.last.is_(None)) & (Person.created_at < cut)) | (last.c.last < cut))
                )
            ]
            rep.unknown_persons = len(stale)
        if r.media_days:
            cut = now - timedelta(days=r.media_days)
            rep.cutoffs["media"] = cut.isoformat()
            rows = [
                (e, p)
                for e, p in s.execute(
                    select(Media.event_id, Media.path)
                    .join(Event, Event.event_id == Media.event_id)
                    .where(Event.time < cut)
                )
            ]
            if not dry_run:
                rep.media_files, rep.media_bytes = _remove_files(rows, media_root)
                ids = sorted({e for e, _ in rows})
                for i in range(0, len(ids), 500):
                    s.execute(delete(Media).where(Media.event_id.in_(ids[i : i + 500])))
            else:
                rep.media_files = len(rows)
                rep.media_bytes = sum(Path(p).stat().st_size for _, p in rows if Path(p).is_file())
        if r.events_days:
            cut = now - timedelta(days=r.events_days)
            rep.cutoffs["events"] = cut.isoformat()
            eids = [e for (e,) in s.execute(select(Event.event_id).where(Event.time < cut))]
            rep.events = len(eids)
            if eids and not dry_run:
                f, b = _drop_events(s, eids, media_root)
                rep.media_files += f
                rep.media_bytes += b
        if stale and not dry_run:
            _delete_persons(s, stale, media_root, keep_events=True)
        if r.audit_days:
            cut = now - timedelta(days=r.audit_days)
            rep.cutoffs["audit"] = cut.isoformat()
            q = select(func.count()).select_from(AuditEntry).where(AuditEntry.time < cut)
            rep.audit_entries = int(s.execute(q).scalar_one())
            if rep.audit_entries and not dry_run:
                s.execute(delete(AuditEntry).where(AuditEntry.time < cut))
        if not dry_run:
            s.add(
                AuditEntry(
                    time=now,
                    actor="retention",
                    role="system",
                    action="retention",
                    params={k: v for k, v in asdict(rep).items() if k != "cutoffs"},
                    rows=rep.media_files + rep.events + rep.unknown_persons + rep.audit_entries,
                )
            )
    for kind, n, extra in (
        ("media", rep.media_files, {"bytes": rep.media_bytes, "older_than_days": r.media_days}),
        ("events", rep.events, {"older_than_days": r.events_days}),
        ("unknown_persons", rep.unknown_persons, {"no_violation_for_days": r.unknown_person_days}),
        ("audit", rep.audit_entries, {"older_than_days": r.audit_days}),
    ):
        log(logger, "retention_removed", kind=kind, count=n, dry_run=dry_run, **extra)
    return rep


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)  # a DML statement's CursorResult


def _delete_persons(s: Session, pids: list[str], media_root: Path, keep_events: bool) -> ErasureReport:
    rep = ErasureReport(person_ids=list(pids))
    rep.embeddings = int(
        s.execute(
            select(func.count()).select_from(Embedding).where(Embedding.person_id.in_(pids))
        ).scalar_one()
    )
    eids = [e for (e,) in s.execute(select(Event.event_id).where(Event.person_id.in_(pids)))]
    if keep_events:  # retention of an unknown file: its events stay (own retention), unlinked
        s.execute(update(Event).where(Event.person_id.in_(pids)).values(person_id=None, match_score=None))
    else:
        rep.events = len(eids)
        rep.media_files, _ = _drop_events(s, eids, media_root)
    task_ids = [t for (t,) in s.execute(select(Task.task_id).where(Task.person_id.in_(pids)))]
    if task_ids:
        s.execute(delete(Feedback).where(Feedback.task_id.in_(task_ids)))
    rep.tasks = _rowcount(s.execute(delete(Task).where(Task.person_id.in_(pids))))
    s.execute(delete(TierChange).where(TierChange.person_id.in_(pids)))
    rep.dispositions = _rowcount(s.execute(delete(Disposition).where(Disposition.person_id.in_(pids))))
    s.execute(delete(Embedding).where(Embedding.person_id.in_(pids)))
    # reviews name the person (either side) and carry face scores: they go with the file
    s.execute(
        delete(Review).where(
            Review.person_id.in_(pids) | Review.other_person_id.in_(pids) | Review.event_id.in_(eids or [""])
        )
    )
    s.execute(delete(Person).where(Person.person_id.in_(pids)))
    return rep


def erase_person(
    store: CentralStore,
    cfg: CentralConfig,
    person_id: str,
    by: str,
    reason: str = "",
    now: datetime | None = None,
) -> ErasureReport | None:
    """Erase a person's file and everything about them; ``None`` when no such file exists (nothing is audited
    as erased then, but the attempt is)."""
    from central_sync.storage.models import utcnow

    now = now or utcnow()
    media_root = cfg.resolve(cfg.media.dir)
    with store.session() as s:
        if s.get(Person, person_id) is None:
            s.add(
                AuditEntry(
                    time=now,
                    actor=by,
                    role="admin",
                    action="erase_not_found",
                    params={"person_id": person_id},
                )
            )
            log(logger, "erase_not_found", person_id=person_id, by=by)
            return None
        pids = [person_id]
        todo = [person_id]
        while todo:  # files merged into it are the same person
            merged = [p for (p,) in s.execute(select(Person.person_id).where(Person.merged_into.in_(todo)))]
            merged = [p for p in merged if p not in pids]
            pids += merged
            todo = merged
        rep = _delete_persons(s, pids, media_root, keep_events=False)
        s.add(
            AuditEntry(
                time=now,
                actor=by,
                role="admin",
                action="erase_person",
                params={
                    "person_id": person_id,
                    "merged_files": len(pids) - 1,
                    "events": rep.events,
                    "media_files": rep.media_files,
                    "embeddings": rep.embeddings,
                    "tasks": rep.tasks,
                    "dispositions": rep.dispositions,
                    "reason": reason[:200],
                },
                rows=rep.events,
            )
        )
    log(
        logger,
        "person_erased",
        person_id=person_id,
        by=by,
        merged_files=len(pids) - 1,
        events=rep.events,
        media_files=rep.media_files,
        embeddings=rep.embeddings,
    )
    return rep
