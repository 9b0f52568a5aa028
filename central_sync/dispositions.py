"""Dispositions (table 2, clause 8.3 a–c): tasks for the external systems, and their outcomes.

* :func:`plan_tasks` (pure): which tasks a tier change calls for.

  - occasional -> SMS reminder, voice reminder, case-study link;
  - frequent -> education by employer (when the person has one) or by village/community, a
    grid-worker home visit, and a party-pioneer-index deduction when the person is a party member;
  - repeat -> public notice by employer/community and a civilisation-credit deduction.

  Tasks are made only when the tier *rises* (none -> occasional -> frequent -> repeat); a tier
  that falls as windows slide is recorded but calls for nothing. One task per person per tier
  change: the ``(tier_change_id, kind)`` pair is unique in the store, so a redelivered event or a
  second consumer cannot make a duplicate storm.
* :class:`DispositionDesk`: records tier changes and tasks, publishes them on
  ``{prefix}/central/tasks/{kind}`` (QoS 1) and optionally POSTs them to a webhook; records the
  outcomes fed back on ``{prefix}/central/feedback`` so every case closes. A task carried out as
  education (or fine) becomes a :class:`~central_sync.storage.models.Disposition` of that kind,
  which is what makes a later violation "repeat".
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select, update

from anqi_contract.logs import log
from central_sync.config import CentralConfig, read_secret
from central_sync.storage.models import Disposition, Event, Feedback, Person, Task, TierChange, utcnow
from central_sync.storage.store import CentralStore
from central_sync.storage.webtables import new_rider_token
from central_sync.tiers import OffenderTier, TierAssessment, window_starts

logger = logging.getLogger("anqi.central.dispositions")


class TaskKind(str, Enum):
    sms_reminder = "sms_reminder"
    voice_reminder = "voice_reminder"
    case_study_link = "case_study_link"
    education_by_employer = "education_by_employer"
    education_by_community = "education_by_community"
    party_index_deduction = "party_index_deduction"
    home_visit = "home_visit"
    public_notice = "public_notice"
    credit_deduction = "credit_deduction"


class DispositionKind(str, Enum):
    """What was carried out. Only ``education`` and ``fine`` count for the repeat tier."""

    sms_reminder = "sms_reminder"
    voice_reminder = "voice_reminder"
    case_study_link = "case_study_link"
    education = "education"
    fine = "fine"
    party_index_deduction = "party_index_deduction"
    home_visit = "home_visit"
    public_notice = "public_notice"
    credit_deduction = "credit_deduction"


#: the disposition a task records when it is done (feedback may say ``fine`` for an education task)
DISPOSITION_OF_TASK: dict[TaskKind, DispositionKind] = {
    TaskKind.sms_reminder: DispositionKind.sms_reminder,
    TaskKind.voice_reminder: DispositionKind.voice_reminder,
    TaskKind.case_study_link: DispositionKind.case_study_link,
    TaskKind.education_by_employer: DispositionKind.education,
    TaskKind.education_by_community: DispositionKind.education,
    TaskKind.party_index_deduction: DispositionKind.party_index_deduction,
    TaskKind.home_visit: DispositionKind.home_visit,
    TaskKind.public_notice: DispositionKind.public_notice,
    TaskKind.credit_deduction: DispositionKind.credit_deduction,
}


@dataclass(frozen=True)
class PersonFacts:
    """What task planning needs to know about the person (from the gallery, if enrolled)."""

    person_id: str
    employer: str | None = None
    community: str | None = None
    party_member: bool = False


def plan_tasks(person: PersonFacts, old: OffenderTier, new: OffenderTier) -> list[TaskKind]:
    """Tasks a change from ``old`` to ``new`` calls for (empty unless the tier rises)."""
    if new.rank <= old.rank:
        return []
    if new is OffenderTier.occasional:
        return [TaskKind.sms_reminder, TaskKind.voice_reminder, TaskKind.case_study_link]
    if new is OffenderTier.frequent:
        tasks = [TaskKind.education_by_employer if person.employer else TaskKind.education_by_community]
        if person.party_member:
            tasks.append(TaskKind.party_index_deduction)
        tasks.append(TaskKind.home_visit)
        return tasks
    if new is OffenderTier.repeat:
        return [TaskKind.public_notice, TaskKind.credit_deduction]
    return []


class TaskFeedback(BaseModel):
    """An outcome fed back by the external system on ``.../central/feedback``."""

    model_config = ConfigDict(extra="ignore")
    task_id: uuid.UUID
    status: str = Field(..., pattern=r"^(done|failed|cancelled)$")
    time: AwareDatetime
    feedback_id: str | None = Field(
        None, max_length=64, description="Idempotency key; default: digest of task, status and time."
    )
    disposition: DispositionKind | None = Field(
        None, description="What was carried out, when it differs from the task (e.g. fine)."
    )
    note: str | None = Field(None, max_length=500)


@dataclass(frozen=True)
class TaskMessage:
    topic: str
    payload: dict[str, Any]


Publish = Callable[[str, bytes], bool]

#: feedback dated later than now by more than this (clock skew of the external system) is refused
FEEDBACK_CLOCK_SKEW_S = 300.0
#: tasks that carry the rider's own link (made with the case-study task, see DispositionDesk._rider_link)
RIDER_LINK_TASKS = frozenset(
    {TaskKind.sms_reminder.value, TaskKind.voice_reminder.value, TaskKind.case_study_link.value}
)
#: task states that accept no further feedback (``failed`` may still become ``done`` or ``cancelled``)
CLOSED_TASK_STATES = frozenset({"done", "cancelled"})


class DispositionDesk:
    """Tier changes -> tasks -> MQTT (+ webhook); feedback -> closed tasks + recorded dispositions."""

    def __init__(self, cfg: CentralConfig, store: CentralStore, publish: Publish | None = None):
        self.cfg = cfg
        self.store = store
        self.publish = publish
        self.prefix = cfg.mqtt.topic_prefix.strip("/")
        self._webhook_q: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=10_000)
        self._webhook_thread: threading.Thread | None = None
        self.changes = 0

    # ------------------------------------------------------------ tier changes
    def apply_assessment(self, a: TierAssessment, event_id: str | None = None) -> list[TaskMessage]:
        """Record the person's tier; on a rise, create the tasks (once) and publish them."""
        with self.store.session() as s:
            p = s.execute(
                select(Person).where(Person.person_id == a.person_id).with_for_update()
            ).scalar_one_or_none()
            msgs = [] if p is None else self._record(s, p, a, event_id)
        self._send_all(msgs)
        return msgs

    def reassess(
        self, person_id: str, at: datetime, event_id: str | None = None
    ) -> tuple[TierAssessment | None, list[TaskMessage]]:
        """Lock the person, assess table 1 at ``at`` and record a change, in one transaction (the consumer's path:
        two consumers assessing the same person serialise on the row lock, so a change is recorded once)."""
        with self.store.session() as s:
            tier = s.execute(select(Person.tier).where(Person.person_id == person_id)).scalar_one_or_none()
            if tier is None:
                return None, []
            a = self.store.assess_person(person_id, at, self.cfg.tiers, s)
            if (
                a.tier.value == tier
            ):  # the common case: nothing to record, no row lock (no write, no WAL flush)
                return a, []
        return self._reassess_locked(person_id, at, event_id)

    def reassess_many(
        self, items: Sequence[tuple[str, datetime, str | None]]
    ) -> dict[str, TierAssessment | None]:
        """:meth:`reassess` for several persons ``(person_id, at, event_id)``: the unchanged ones (the common case)
        are assessed in one read transaction, each change is then recorded as :meth:`reassess` records it."""
        out: dict[str, TierAssessment | None] = {}
        changed = []
        with self.store.session() as s:
            tiers = dict(
                s.execute(
                    select(Person.person_id, Person.tier).where(Person.person_id.in_([i[0] for i in items]))
                ).all()
            )
            known = [(pid, at) for pid, at, _ in items if pid in tiers]
            # one round trip for all of them (not one statement per person), each answer as assess_person's
            assessed = iter(self.store.assess_persons(known, self.cfg.tiers, s))
            for pid, at, eid in items:
                if pid not in tiers:
                    out[pid] = None
                    continue
                out[pid] = a = next(assessed)
                if a.tier.value != tiers[pid]:
                    changed.append((pid, at, eid))
        for pid, at, eid in changed:
            out[pid], _ = self._reassess_locked(pid, at, eid)
        return out

    def _reassess_locked(
        self, person_id: str, at: datetime, event_id: str | None
    ) -> tuple[TierAssessment | None, list[TaskMessage]]:
        with self.store.session() as s:  # a change: lock the row and decide again under the lock
            p = s.execute(
                select(Person).where(Person.person_id == person_id).with_for_update()
            ).scalar_one_or_none()
            if p is None:
                return None, []
            a = self.store.assess_person(person_id, at, self.cfg.tiers, s)
            msgs = self._record(s, p, a, event_id)
        self._send_all(msgs)
        return a, msgs

    def record_tier(
        self, s: Any, p: Person, a: TierAssessment, event_id: str | None = None
    ) -> list[TaskMessage]:
        """Record assessment ``a`` of the person row ``p`` (locked by the caller) inside the caller's transaction
        (a correction's); the tasks it returns are sent with :meth:`send` after the commit."""
        return self._record(s, p, a, event_id)

    def send(self, msgs: list[TaskMessage]) -> None:
        """Publish what :meth:`record_tier` / :func:`cancel_tasks` returned (after their transaction committed)."""
        self._send_all(msgs)

    def _record(self, s: Any, p: Person, a: TierAssessment, event_id: str | None) -> list[TaskMessage]:
        old = OffenderTier(p.tier)
        if old is a.tier:
            return []
        change = TierChange(
            person_id=p.person_id, from_tier=old.value, to_tier=a.tier.value, at=a.at, event_id=event_id
        )
        s.add(change)
        self.changes += 1
        p.tier, p.tier_at = a.tier.value, a.at
        s.flush()
        facts = PersonFacts(p.person_id, p.employer, p.community, bool(p.party_member))
        msgs: list[TaskMessage] = []
        kinds = plan_tasks(facts, old, a.tier)
        if kinds and self._already_tasked(s, p.person_id, a):
            log(logger, "tasks_not_repeated", person=p.person_id, tier=a.tier.value, change=change.id)
            kinds = []
        types = self._violation_types(s, p.person_id, a) if kinds else {}
        tasks = [
            Task(
                task_id=str(uuid.uuid4()),
                tier_change_id=change.id,
                person_id=p.person_id,
                tier=a.tier.value,
                kind=kind.value,
                status="open",
                created_at=utcnow(),
            )
            for kind in kinds
        ]
        link = self._rider_link(s, tasks)
        for task in tasks:
            task.payload = self._payload(task, p, a, types)
            if link and task.kind in RIDER_LINK_TASKS:
                task.payload.update(link)
            s.add(task)
            msgs.append(TaskMessage(self.task_topic(task.kind), task.payload))
        log(
            logger,
            "tier_changed",
            person=p.person_id,
            old=old.value,
            new=a.tier.value,
            tasks=len(msgs),
            n7=a.count_7d,
            n30=a.count_30d,
            n365=a.count_365d,
        )
        return msgs

    def _already_tasked(self, s: Any, person_id: str, a: TierAssessment) -> bool:
        """Whether tasks for this tier were made already for the same violations: the person has tasks of tier
        ``a.tier`` and no violation in table 1's windows was received since the last of them. A tier that falls
        and rises again as windows slide (a reevaluation at another time, a merged file's own tasks moved to its
        target) is then recorded as a change but makes no second set of tasks; a new violation does."""
        last = s.scalar(
            select(func.max(Task.created_at)).where(Task.person_id == person_id, Task.tier == a.tier.value)
        )
        if last is None:
            return False
        start = window_starts(a.at, self.cfg.tiers)[2]
        newer = s.execute(
            select(Event.event_id)
            .where(
                Event.person_id == person_id,
                Event.time > start,
                Event.time <= a.at,
                Event.received_at > last,
            )
            .limit(1)
        ).first()
        return newer is None

    def task_topic(self, kind: TaskKind | str) -> str:
        return f"{self.prefix}/central/tasks/{TaskKind(kind).value}"

    @property
    def feedback_topic(self) -> str:
        return f"{self.prefix}/central/feedback"

    def _violation_types(self, s: Any, person_id: str, a: TierAssessment) -> dict[str, int]:
        """What the person committed, by violation type, in the longest window table 1 looks at
        (``(at - repeat_window_days, at]``): the task says which violations it is about."""
        start = window_starts(a.at, self.cfg.tiers)[2]
        q = (
            select(Event.violation_type, func.count())
            .where(Event.person_id == person_id, Event.time > start, Event.time <= a.at)
            .group_by(Event.violation_type)
        )
        return {str(t): int(n) for t, n in sorted(s.execute(q).all())}

    def _rider_link(self, s: Any, tasks: list[Task]) -> dict[str, str] | None:
        """The rider's own link (services page: own violations, penalty query, case study, quiz), made with the
        case-study task: passing the quiz closes that task as ``education``. The SMS and voice reminders of the
        same tier change carry the same link (the task already carries it; no SMS gateway here)."""
        case = next((t for t in tasks if t.kind == TaskKind.case_study_link.value), None)
        if case is None:
            return None
        d = self.cfg.dispositions
        token = new_rider_token(s, case.task_id, case.person_id, d.rider_link_days)
        base = d.rider_url or self.cfg.api.public_url or f"http://{self.cfg.api.host}:{self.cfg.api.port}"
        expires = utcnow() + timedelta(days=d.rider_link_days)
        return {"link": f"{base.rstrip('/')}/rider/{token}", "link_expires_at": expires.isoformat()}

    def _payload(
        self, task: Task, p: Person, a: TierAssessment, types: dict[str, int] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": 1,
            "task_id": task.task_id,
            "kind": task.kind,
            "tier": a.tier.value,
            "person_id": p.person_id,
            "name": p.name,
            "community": p.community,
            "employer": p.employer,
            "phone": p.phone,
            "counts": {"7d": a.count_7d, "30d": a.count_30d, "365d": a.count_365d},
            "violation_types": types or {},  # e.g. {"no_helmet": 3, "passenger": 1} over the 365 days
            "assessed_at": a.at.isoformat(),
            "created_at": task.created_at.isoformat(),
            "feedback_topic": self.feedback_topic,
        }
        if task.kind == TaskKind.case_study_link.value:
            body["case_study_url"] = self.cfg.dispositions.case_study_url
        return body

    def _send_all(self, msgs: list[TaskMessage]) -> None:
        """Publish (QoS 1) and mark published in one transaction; queue webhook copies."""
        if not msgs:
            return
        sent = []
        for m in msgs:
            data = json.dumps(m.payload, ensure_ascii=False).encode("utf-8")
            if self.publish is not None and self.publish(m.topic, data):
                sent.append(m.payload["task_id"])
            if self.cfg.dispositions.webhook_url:
                try:
                    self._webhook_q.put_nowait(m.payload)
                except queue.Full:
                    log(logger, "webhook_queue_full", level=logging.WARNING, task=m.payload["task_id"])
        if sent:
            with self.store.session() as s:
                s.execute(
                    update(Task)
                    .where(Task.task_id.in_(sent), Task.published_at.is_(None))
                    .values(published_at=utcnow())
                )

    def publish_pending(self, older_than_s: float = 0.0) -> int:
        """Publish tasks recorded while the broker was unreachable or by another process (``reevaluate``,
        ``enrol``): at connect and periodically. Receivers are idempotent on ``task_id``."""

        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self.store.session() as s:
            pending = list(
                s.scalars(
                    select(Task).where(
                        Task.published_at.is_(None), Task.status == "open", Task.created_at <= cutoff
                    )
                )
            )
            withdrawn = list(
                s.scalars(
                    select(Task).where(
                        Task.published_at.is_(None),
                        Task.status == "cancelled",
                        Task.outcome == CORRECTED,
                        Task.closed_at <= cutoff,
                    )
                )
            )
        self._send_all(
            [TaskMessage(self.task_topic(t.kind), t.payload) for t in pending]
            + [cancel_notice(self.prefix, t) for t in withdrawn]
        )
        return len(pending) + len(withdrawn)

    # ------------------------------------------------------------ feedback
    def record_feedback(self, payload: bytes | dict[str, Any]) -> bool:
        """Close a task from its outcome; ``False`` for a duplicate. Raises ValueError for bad input."""
        try:
            fb = (
                TaskFeedback.model_validate_json(payload)
                if isinstance(payload, bytes)
                else TaskFeedback.model_validate(payload)
            )
        except ValidationError as e:
            first = e.errors()[0]
            raise ValueError(
                f"feedback invalid at {'.'.join(map(str, first['loc'])) or '(top)'}: {first['msg']}"
            ) from None
        fid = (
            fb.feedback_id
            or hashlib.sha256(f"{fb.task_id}|{fb.status}|{fb.time.isoformat()}".encode()).hexdigest()[:64]
        )
        now = utcnow()
        if fb.time > now + timedelta(seconds=FEEDBACK_CLOCK_SKEW_S):
            raise ValueError(
                f"feedback invalid at time: {fb.time.isoformat()} is in the future (now {now.isoformat()})"
            )
        with self.store.session() as s:
            if s.execute(select(Feedback.id).where(Feedback.feedback_id == fid)).first() is not None:
                return False
            task = s.execute(
                select(Task).where(Task.task_id == str(fb.task_id)).with_for_update()
            ).scalar_one_or_none()
            if task is None:
                raise ValueError(f"feedback for unknown task_id {fb.task_id}")
            # once per state change: open -> done/failed/cancelled, failed -> done/cancelled (a retry); a task
            # that is done or cancelled is closed, and a feedback repeating the current state changes nothing
            if task.status in CLOSED_TASK_STATES or fb.status == task.status:
                raise ValueError(
                    f"feedback invalid at status: task {task.task_id} is already {task.status}"
                    f" (since {task.closed_at.isoformat() if task.closed_at else '?'}); {fb.status!r} refused"
                )
            s.add(
                Feedback(
                    feedback_id=fid,
                    task_id=str(fb.task_id),
                    status=fb.status,
                    time=fb.time,
                    body=json.loads(fb.model_dump_json()),
                )
            )
            task.status, task.closed_at = fb.status, fb.time
            task.outcome = (fb.disposition.value if fb.disposition else None) or fb.status
            if fb.status == "done":
                kind = fb.disposition or DISPOSITION_OF_TASK[TaskKind(task.kind)]
                s.add(
                    Disposition(
                        person_id=task.person_id,
                        kind=kind.value,
                        time=fb.time,
                        source="feedback",
                        task_id=task.task_id,
                        note=fb.note,
                    )
                )
            log(
                logger,
                "task_feedback",
                task=task.task_id,
                kind=task.kind,
                status=fb.status,
                person=task.person_id,
            )
        return True

    def open_tasks(self, person_id: str | None = None) -> list[Task]:
        with self.store.session() as s:
            q = select(Task).where(Task.status == "open")
            if person_id:
                q = q.where(Task.person_id == person_id)
            return list(s.scalars(q.order_by(Task.created_at)))

    # ------------------------------------------------------------ webhook
    def start(self) -> None:
        if self.cfg.dispositions.webhook_url and self._webhook_thread is None:
            self._webhook_thread = threading.Thread(
                target=self._webhook_loop, name="anqi-webhook", daemon=True
            )
            self._webhook_thread.start()

    def stop(self) -> None:
        if self._webhook_thread is not None:
            self._webhook_q.put(None)
            self._webhook_thread.join(timeout=10)
            self._webhook_thread = None

    def _webhook_loop(self) -> None:
        url = self.cfg.dispositions.webhook_url
        assert url
        headers = {"Content-Type": "application/json"}
        if self.cfg.dispositions.webhook_token_env:
            headers["Authorization"] = "Bearer " + read_secret(
                self.cfg.dispositions.webhook_token_env, "dispositions.webhook_token_env"
            )
        while (item := self._webhook_q.get()) is not None:
            req = urllib.request.Request(
                url, data=json.dumps(item, ensure_ascii=False).encode(), headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.dispositions.webhook_timeout_s) as r:  # noqa: S310  # nosec B310
                    log(logger, "webhook_posted", task=item["task_id"], status=r.status)
            except (urllib.error.URLError, OSError) as e:
                # the task stays in the store and on MQTT; the webhook is a convenience copy
                log(logger, "webhook_failed", level=logging.WARNING, task=item["task_id"], error=str(e)[:200])


#: outcome of a task withdrawn because the violations that raised its tier were not the person's (a correction)
CORRECTED = "identity_corrected"


def cancel_notice(prefix: str, t: Task) -> TaskMessage:
    """The message that withdraws a published task (``{prefix}/central/tasks/cancelled``); receivers ignore task ids
    they never saw."""
    return TaskMessage(
        f"{prefix}/central/tasks/cancelled",
        {
            "v": 1,
            "task_id": t.task_id,
            "kind": t.kind,
            "person_id": t.person_id,
            "status": "cancelled",
            "reason": t.outcome,
            "time": (t.closed_at or utcnow()).isoformat(),
        },
    )


def cancel_tasks(s: Any, prefix: str, tasks: Sequence[Task], now: datetime) -> list[TaskMessage]:
    """Withdraw ``tasks`` (open or failed) inside the caller's transaction: cancelled with outcome
    :data:`CORRECTED`; the notices are published after the commit (or by the consumer's ``publish_pending``)."""
    out = []
    for t in tasks:
        t.status, t.outcome, t.closed_at, t.published_at = "cancelled", CORRECTED, now, None
        out.append(cancel_notice(prefix, t))
        log(logger, "task_withdrawn", task=t.task_id, kind=t.kind, person=t.person_id, reason=CORRECTED)
    return out


def record_disposition(
    store: CentralStore, person_id: str, kind: DispositionKind, time: datetime, note: str | None = None
) -> str:
    """A disposition recorded by hand (e.g. a fine issued on the spot by the police), for an existing person
    only: an unknown ``person_id`` is refused (no person file is opened by a typo), and a file merged into an
    enrolled person forwards the disposition to its target (what the repeat tier looks at). Returns the person
    the disposition was recorded for. Raises :class:`ValueError` naming ``--person``."""
    with store.session() as s:
        target, seen = person_id, [person_id]
        while True:
            row = s.execute(
                select(Person.person_id, Person.merged_into).where(Person.person_id == target)
            ).first()
            if row is None:
                if target == person_id:
                    raise ValueError(
                        f"--person: no person file {person_id!r} (dispositions only for existing persons)"
                    )
                raise ValueError(f"--person: {person_id!r} is merged into {target!r}, which does not exist")
            if row.merged_into is None:
                break
            target = row.merged_into
            if target in seen:
                raise ValueError(
                    f"--person: merge chain of {person_id!r} loops ({' -> '.join([*seen, target])})"
                )
            seen.append(target)
        store.add_disposition(target, kind.value, time, source="manual", note=note, s=s)
    if target != person_id:
        log(logger, "disposition_forwarded", person=person_id, target=target, kind=kind.value)
    return target
