"""Correcting person files (issue 23 point 2): undo a merge, move wrongly matched events (with their faces) to the
right person, each with an audit record of who, when and why.

* :func:`unmerge` moves back exactly the rows a merge moved (``person_file_changes.moved``; rows that have moved on
  since stay where they are and are counted as skipped) and reopens the unknown file. Enrolment does not merge that
  file into the same person again.
* :func:`reassign_events` moves events and their face embeddings from the person they were matched to onto another
  person, a new unknown file (``"new"``) or, following its merge, the file an unknown file was merged into. Open
  reviews of those events are cleared as ``reassigned``.

Both then recompute, in the same transaction as the move: the tier of every person involved (at ``now``; a rise
makes tasks once, as the consumer would), and the open or failed tasks of the person who lost rows: a task is
withdrawn (cancelled, outcome ``identity_corrected``, a notice on ``.../central/tasks/cancelled``) when the person,
assessed again at the time of the tier change that made it, no longer reaches the task's tier. Done tasks and their
dispositions stay (they happened) and are listed in the record for the officer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, update

from anqi_contract.logs import log
from central_sync.config import CentralConfig
from central_sync.dispositions import DispositionDesk, TaskMessage, cancel_tasks
from central_sync.persons import FILE_ROWS, new_unknown_id
from central_sync.storage.models import (
    AuditEntry,
    Embedding,
    Event,
    Person,
    PersonFileChange,
    Review,
    Task,
    TierChange,
)
from central_sync.storage.store import CentralStore
from central_sync.tiers import OffenderTier

logger = logging.getLogger("anqi.central.corrections")

#: most ids per ``IN`` list
CHUNK = 500


class CorrectionError(ValueError):
    """A correction that cannot be made (message names the option: --person, --event, --to, --by, --reason)."""


@dataclass
class Correction:
    change_id: int
    action: str
    source: str
    target: str
    moved: dict[str, int]
    skipped: dict[str, int] = field(default_factory=dict)
    #: person -> [tier before, tier after]
    tiers: dict[str, list[str]] = field(default_factory=dict)
    withdrawn_tasks: list[str] = field(default_factory=list)
    new_tasks: list[str] = field(default_factory=list)
    #: tasks already done with the rows that moved (their dispositions stay): for the officer to look at
    done_tasks: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "change": self.change_id,
            "action": self.action,
            "from": self.source,
            "to": self.target,
            "moved": self.moved,
            "skipped": self.skipped,
            "tiers": self.tiers,
            "withdrawn_tasks": self.withdrawn_tasks,
            "new_tasks": self.new_tasks,
            "done_tasks": self.done_tasks,
        }


def _who(actor: str, reason: str) -> tuple[str, str]:
    a, r = (actor or "").strip(), (reason or "").strip()
    if not a or len(a) > 64 or any(ord(c) < 32 for c in a):
        raise CorrectionError("--by: the officer making the correction (1-64 printable characters)")
    if len(r) < 3 or len(r) > 2000:
        raise CorrectionError("--reason: why the correction is made (3-2000 characters)")
    return a, r


def _lock_persons(s: Any, ids: list[str]) -> dict[str, Person]:
    """The person rows, locked in id order (two corrections never wait on each other crosswise)."""
    out: dict[str, Person] = {}
    for pid in sorted(set(ids)):
        p = s.execute(select(Person).where(Person.person_id == pid).with_for_update()).scalar_one_or_none()
        if p is not None:
            out[pid] = p
    return out


def _chunks(ids: list[Any]) -> list[list[Any]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


def _recompute(
    s: Any,
    store: CentralStore,
    cfg: CentralConfig,
    desk: DispositionDesk,
    persons: dict[str, Person],
    losers: dict[str, datetime],
    now: datetime,
    c: Correction,
) -> list[TaskMessage]:
    """Tiers of ``persons`` at ``now``; tasks of each loser (person -> time the wrong rows arrived) made since then
    and no longer justified: withdrawn. Inside the correction's transaction."""
    msgs: list[TaskMessage] = []
    for pid in sorted(losers):
        since = losers[pid]
        rows = s.execute(
            select(Task, TierChange.at)
            .join(TierChange, TierChange.id == Task.tier_change_id)
            .where(Task.person_id == pid, Task.created_at >= since)
            .order_by(Task.created_at)
        ).all()
        stale: list[Task] = []
        for t, at in rows:
            still = store.assess_person(pid, at, cfg.tiers, s).tier
            if still.rank >= OffenderTier(t.tier).rank:
                continue
            if t.status in ("open", "failed"):
                stale.append(t)
            elif t.status == "done":
                c.done_tasks.append(t.task_id)
        msgs += cancel_tasks(s, desk.prefix, stale, now)
        c.withdrawn_tasks += [t.task_id for t in stale]
    for pid, p in sorted(persons.items()):
        before = p.tier
        a = store.assess_person(pid, now, cfg.tiers, s)
        made = desk.record_tier(s, p, a)
        msgs += made
        c.new_tasks += [m.payload["task_id"] for m in made]
        c.tiers[pid] = [before, a.tier.value]
    return msgs


def _finish(
    s: Any, change: PersonFileChange, c: Correction, actor: str, persons: list[str], now: datetime
) -> None:
    change.outcome = {
        "tiers": c.tiers,
        "withdrawn_tasks": c.withdrawn_tasks,
        "new_tasks": c.new_tasks,
        "done_tasks": c.done_tasks,
        "skipped": c.skipped,
    }
    s.add(
        AuditEntry(
            time=now,
            actor=actor,
            role="officer",
            action=f"person_{c.action}",
            params={"change": str(c.change_id), "from": c.source, "to": c.target},
            rows=sum(c.moved.values()),
            persons=sorted(set(persons)),
        )
    )


def unmerge(
    store: CentralStore,
    cfg: CentralConfig,
    desk: DispositionDesk,
    person_id: str,
    actor: str,
    reason: str,
    now: datetime | None = None,
) -> Correction:
    """Undo the merge of the file ``person_id`` (see the module's docstring). Raises :class:`CorrectionError`."""
    actor, reason = _who(actor, reason)
    now = now or datetime.now(timezone.utc)
    with store.session() as s:
        src = s.execute(
            select(Person).where(Person.person_id == person_id).with_for_update()
        ).scalar_one_or_none()
        if src is None:
            raise CorrectionError(f"--person: no person file {person_id!r}")
        if src.merged_into is None:
            raise CorrectionError(f"--person: {person_id!r} is not merged into another file")
        target = src.merged_into
        rec = s.execute(
            select(PersonFileChange)
            .where(
                PersonFileChange.action == "merge",
                PersonFileChange.source_id == person_id,
                PersonFileChange.target_id == target,
                PersonFileChange.undone_by.is_(None),
            )
            .order_by(PersonFileChange.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if rec is None:
            raise CorrectionError(
                f"--person: no record of what the merge of {person_id!r} into {target!r} moved (merged before "
                "migration 0003); move its events one by one with 'anqi-central reassign --event ID --to new'"
            )
        persons = _lock_persons(s, [person_id, target])
        moved: dict[str, int] = {}
        skipped: dict[str, int] = {}
        back: dict[str, list[Any]] = {}
        for key, model, col in FILE_ROWS:
            ids = list(rec.moved.get(key) or [])
            done: list[Any] = []
            for part in _chunks(ids):
                res = s.execute(
                    update(model)
                    .where(col.in_(part), model.person_id == target)
                    .values(person_id=person_id)
                    .returning(col)
                )
                done += [r for (r,) in res]
            back[key] = sorted(done)
            moved[key], skipped[key] = len(done), len(ids) - len(done)
        src.merged_into = None
        change = PersonFileChange(
            time=now,
            action="unmerge",
            source_id=target,
            target_id=person_id,
            actor=actor,
            reason=reason,
            moved=back,
            outcome={},
        )
        s.add(change)
        s.flush()
        rec.undone_by = change.id
        c = Correction(int(change.id), "unmerge", target, person_id, moved, skipped)
        msgs = _recompute(s, store, cfg, desk, persons, {target: rec.time}, now, c)
        _finish(s, change, c, actor, [person_id, target], now)
    desk.send(msgs)
    log(
        logger,
        "person_unmerged",
        person=person_id,
        was_in=target,
        by=actor,
        change=c.change_id,
        events=moved.get("events", 0),
        withdrawn=len(c.withdrawn_tasks),
    )
    return c


def _follow(s: Any, pid: str) -> str:
    seen = [pid]
    while True:
        row = s.execute(select(Person.person_id, Person.merged_into).where(Person.person_id == pid)).first()
        if row is None:
            raise CorrectionError(
                f"--to: no person file {seen[0]!r}" + (f" (via {pid!r})" if len(seen) > 1 else "")
            )
        if row.merged_into is None:
            return pid
        pid = row.merged_into
        if pid in seen:
            raise CorrectionError(f"--to: merge chain of {seen[0]!r} loops ({' -> '.join([*seen, pid])})")
        seen.append(pid)


def reassign_events(
    store: CentralStore,
    cfg: CentralConfig,
    desk: DispositionDesk,
    event_ids: list[str],
    to: str,
    actor: str,
    reason: str,
    now: datetime | None = None,
) -> Correction:
    """Move events (and their face embeddings) of one person to ``to`` (a person id or ``"new"``)."""
    actor, reason = _who(actor, reason)
    now = now or datetime.now(timezone.utc)
    eids = list(dict.fromkeys(e.strip() for e in event_ids))
    if not eids:
        raise CorrectionError("--event: give at least one event id")
    with store.session() as s:
        rows = s.execute(
            select(Event.event_id, Event.person_id, Event.received_at)
            .where(Event.event_id.in_(eids))
            .with_for_update()
        ).all()
        found = {r.event_id: r for r in rows}
        missing = [e for e in eids if e not in found]
        if missing:
            raise CorrectionError(f"--event: no event {missing[0]!r}")
        owners = {r.person_id for r in rows}
        if len(owners) != 1:
            raise CorrectionError(
                "--event: the events belong to different persons ("
                + ", ".join(sorted(str(o) for o in owners))
                + "); reassign each person's events separately"
            )
        source = owners.pop()
        if to == "new":
            target = new_unknown_id()
            store.ensure_person(s, target, kind="unknown")
        else:
            target = _follow(s, to.strip())
        if target == source:
            raise CorrectionError(f"--to: the events are already in {target!r}")
        persons = _lock_persons(s, [p for p in (source, target) if p])
        s.execute(update(Event).where(Event.event_id.in_(eids)).values(person_id=target))
        embs = sorted(
            r
            for (r,) in s.execute(
                update(Embedding)
                .where(Embedding.event_id.in_(eids), Embedding.source == "event")
                .values(person_id=target)
                .returning(Embedding.id)
            )
        )
        s.execute(
            update(Review)
            .where(Review.event_id.in_(eids), Review.cleared_at.is_(None))
            .values(cleared_at=now, cleared_by=actor, resolution="reassigned", note=reason[:2000])
        )
        change = PersonFileChange(
            time=now,
            action="reassign",
            source_id=source or "-",
            target_id=target,
            actor=actor,
            reason=reason,
            moved={"events": sorted(eids), "embeddings": embs},
            outcome={},
        )
        s.add(change)
        s.flush()
        c = Correction(
            int(change.id), "reassign", source or "-", target, {"events": len(eids), "embeddings": len(embs)}
        )
        losers = {source: min(r.received_at for r in rows)} if source else {}
        msgs = _recompute(s, store, cfg, desk, persons, losers, now, c)
        _finish(s, change, c, actor, [p for p in (source, target) if p], now)
    desk.send(msgs)
    log(
        logger,
        "events_reassigned",
        source=source or "-",
        target=target,
        by=actor,
        change=c.change_id,
        events=len(eids),
        withdrawn=len(c.withdrawn_tasks),
    )
    return c


def changes(store: CentralStore, person_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The merge / unmerge / reassign records (newest first), of one person when given."""
    q = select(PersonFileChange).order_by(PersonFileChange.id.desc()).limit(limit)
    if person_id:
        q = q.where((PersonFileChange.source_id == person_id) | (PersonFileChange.target_id == person_id))
    with store.session() as s:
        return [
            {
                "change": r.id,
                "time": r.time.isoformat(),
                "action": r.action,
                "from": r.source_id,
                "to": r.target_id,
                "by": r.actor,
                "reason": r.reason,
                "moved": {k: len(v) for k, v in (r.moved or {}).items()},
                "undone_by": r.undone_by,
                **{
                    k: v
                    for k, v in (r.outcome or {}).items()
                    if k in ("tiers", "withdrawn_tasks", "new_tasks")
                },
            }
            for r in s.scalars(q)
        ]
