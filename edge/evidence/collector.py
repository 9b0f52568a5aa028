"""Evidence collection: a violation's way from the rule's decision to the outbox, one object with its own
state (:class:`EvidenceCollector`). Thread-free: the daemon's pipeline thread calls it.

decide() -> the clip is triggered, the decision made durable (decision.json + violation.jpg), the event kept
pending; finalize_ready() -> once the face window is over (or the track closed) and the clip is closed, the
event is assembled (face, context, other occupants, clip) and committed to the outbox, retried with backoff
when that fails (disk full); recover() -> at start, what a previous run left in the work folder (an event
the outbox refused, or only a decision record after a kill -9 / power cut) is sent with what it has.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from anqi_contract.event import MediaRef, ViolationEvent
from anqi_contract.fsutil import write_atomic
from anqi_contract.logs import log
from edge.config.rules import RulesConfig
from edge.evidence.assemble import EventAssembler
from edge.evidence.face import FaceCapture
from edge.evidence.snapshot import ViolationFrame
from edge.health import Health
from edge.rules import Violation
from edge.track import Track
from edge.zone import fit_motion

logger = logging.getLogger("edge.daemon")

EVENT_FILE = "event.json"  #: written into an event's work folder just before it goes to the outbox
#: written into an event's work folder the moment the rule decides (with violation.jpg): a daemon killed
#: or a power cut before the evidence is complete still leaves a record that the restart sends
DECISION_FILE = "decision.json"


class ClipTrigger(Protocol):
    """What the collector needs of ``edge.buffer.ClipRecorder``."""

    def trigger(
        self,
        key: str,
        at_pts_s: float | None = None,
        *,
        at_mono: float | None = None,
        path: Path | None = None,
    ) -> Future[Any]: ...

    def flush(self) -> None: ...


class EventStore(Protocol):
    """What the collector needs of ``edge.relay.Outbox``."""

    media_dir: Path

    def add(self, event: ViolationEvent, media: dict[str, Path], move: bool = False) -> Any: ...


@dataclass
class ViolationRecord:
    """Timings of one violation, for the performance benchmark and the run summary."""

    key: str
    type: str
    track_id: int
    decided_t_s: float  #: source time of the deciding frame
    captured_mono: float  #: when the deciding frame was captured
    decided_mono: float  #: when the rule decided (after detection and tracking)
    outbox_mono: float | None = None  #: when the event was committed to the outbox
    event_id: str | None = None
    face_found: bool | None = None
    clip: str | None = None
    media: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def decide_latency_s(self) -> float:
        return self.decided_mono - self.captured_mono

    @property
    def outbox_latency_s(self) -> float | None:
        return None if self.outbox_mono is None else self.outbox_mono - self.decided_mono


@dataclass
class PendingEvent:
    record: ViolationRecord
    violation: Violation
    first_seen: datetime | None
    clip: Future[Any] | None
    deadline_t_s: float
    created_mono: float
    track_open: bool = True
    track: Track | None = None  #: kept to measure speed over the whole track when the event is built
    frame: ViolationFrame | None = (
        None  #: the deciding frame, drawn into violation.jpg when the event is built
    )
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    attempts: int = 0
    retry_mono: float = 0.0
    #: violation.jpg as written at decision time (path, ref), reused by the event
    decided_media: list[tuple[Path, MediaRef]] = field(default_factory=list)


class EvidenceCollector:
    """Owns pending events: decision -> pending -> commit with retries, and recovery at start."""

    def __init__(
        self,
        *,
        rules: RulesConfig,
        post_s: float,
        work_dir: Path,
        clip_dir: Path,
        recorder: ClipTrigger,
        assembler: EventAssembler,
        outbox: EventStore,
        health: Health,
        faces: FaceCapture | None,
        face_error: str | None,
        records: list[ViolationRecord],
        on_stored: Callable[[ViolationEvent, list[Path]], None],
        on_track_done: Callable[[int], None],
        on_recovered: Callable[[ViolationEvent], None] = lambda ev: None,
    ):
        self.rules = rules
        self.post_s = post_s
        self.work_dir = work_dir
        self.clip_dir = clip_dir
        self.recorder = recorder
        self.assembler = assembler
        self.outbox = outbox
        self.health = health
        self.faces = faces
        self.face_error = face_error
        self.records = records  #: every decision of the run (the daemon's stats)
        self.on_stored = on_stored  #: an event and its media paths, once in the outbox
        self.on_track_done = on_track_done  #: a closed track whose last event is stored
        self.on_recovered = on_recovered  #: an event a previous run left, now in the outbox
        self.pending: list[PendingEvent] = []
        self.pending_tracks: set[int] = set()
        self.closed_tracks: set[int] = set()

    def decide(
        self,
        v: Violation,
        image: np.ndarray,
        track: Track | None,
        first_seen: datetime | None,
        band_edges: tuple[np.ndarray, ...],
        decided_mono: float,
    ) -> ViolationRecord:
        """A rule decided: start the clip, record the decision durably, and keep the event pending until its
        face window and clip are done. Never blocks on the clip."""
        event_id = uuid.uuid4()
        key = f"{v.type.value}-t{v.track_id}-{event_id.hex[:8]}"
        folder = self.work_dir / str(
            event_id
        )  # everything of this event gathers here until the outbox takes it
        clip: Future[Any] | None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            clip_path = (
                folder / "clip.mp4" if self.clip_dir == self.work_dir else self.clip_dir / f"{event_id}.mp4"
            )
            clip = self.recorder.trigger(key, at_pts_s=v.t_s, path=clip_path)
        except Exception as e:
            clip = None
            log(logger, "clip_trigger_failed", logging.ERROR, key=key, error=str(e)[:300])
        rec = ViolationRecord(key, v.type.value, v.track_id, v.t_s, v.mono, decided_mono)
        self.records.append(rec)
        vframe = None
        if self.rules.violation_frame:
            vframe = ViolationFrame.of(
                image,
                track,
                v.t_s,
                v.type.value,
                v.track_id,
                v.confidence,
                v.zone_distance_m,
                v.utc,
                band_edges,
                detail=v.detail,
            )
        decided_media = self._record_decision(v, event_id, vframe, first_seen)
        self.pending.append(
            PendingEvent(
                rec,
                v,
                first_seen,
                clip,
                v.t_s + self.rules.evidence_wait_s,
                decided_mono,
                event_id=event_id,
                track=track,
                frame=None if decided_media else vframe,
                decided_media=decided_media,
            )
        )
        self.pending_tracks.add(v.track_id)
        return rec

    def track_closed(self, track_id: int) -> bool:
        """A track ended. True when it still has events pending (its state is forgotten after they are
        stored, through ``on_track_done``); False when the caller may forget it now."""
        for p in self.pending:
            if p.violation.track_id == track_id:
                p.track_open = False
        if track_id in self.pending_tracks:
            self.closed_tracks.add(track_id)
            return True
        return False

    def log_leftovers(self) -> None:
        """At shutdown: events still not stored (disk full, outbox broken) stay on disk; say where."""
        for p in self.pending:
            log(
                logger,
                "event_left_unstored",
                logging.ERROR,
                key=p.record.key,
                error=p.record.error or "evidence incomplete",
                kept_in=str(self.work_dir / str(p.event_id)),
            )

    def _record_decision(
        self, v: Violation, event_id: uuid.UUID, vframe: ViolationFrame | None, first_seen: datetime | None
    ) -> list[tuple[Path, MediaRef]]:
        """Make the decision durable at once: violation.jpg (blurred and sealed as configured) and
        ``decision.json`` (the event as known now: no face yet, clip pending) into the event's work folder,
        fsync'd. A daemon killed before the evidence is complete leaves this record; the next start sends it
        with the files it has and says which are missing and why (:meth:`recover`). A failure here
        (disk full) is logged and the event goes on the normal way, from memory."""
        try:
            ev = self.assembler.assemble(
                v,
                first_seen,
                None,
                "the daemon stopped before a face of this rider was chosen",
                None,
                "the daemon stopped before the clip's post-roll was written",
                extra={"t_s": round(v.t_s, 3)},
                event_id=event_id,
                violation_frame=vframe,
            )
            write_atomic(self.work_dir / str(event_id) / DECISION_FILE, ev.event.to_json(), sync_dir=True)
        except Exception as e:
            log(logger, "decision_not_recorded", logging.ERROR, event_id=str(event_id), error=str(e)[:300])
            return []
        refs = {r.name: r for r in ev.event.media}
        return [(path, refs[name]) for name, path in ev.media.items() if name in refs]

    def finalize_ready(self, last_t_s: float, force: bool = False, force_wall: bool = False) -> None:
        """Commit every pending event whose evidence is complete (face window over or track closed, clip
        closed); ``force`` at the end of a run, ``force_wall`` when no frames come (camera down)."""
        now = time.monotonic()
        still: list[PendingEvent] = []
        for p in self.pending:
            face_done = force or not p.track_open or last_t_s >= p.deadline_t_s
            if force_wall and now - p.created_mono > self.rules.evidence_wait_s + self.post_s + 10.0:
                face_done = True  # no frames are coming (camera down): do not hold the evidence back
                if p.clip is not None and not p.clip.done():
                    self.recorder.flush()
            clip_done = p.clip is None or p.clip.done()
            if face_done and clip_done and (force or now >= p.retry_mono) and self.commit(p):
                continue
            still.append(p)
        self.pending = still

    def commit(self, p: PendingEvent) -> bool:
        """Assemble the event and store it in the outbox; False (retried later) when that failed."""
        v = _with_track_motion(p.violation, p.track, self.rules.evidence_wait_s)
        clip = None
        clip_problem = None
        if p.clip is not None:
            try:
                clip = p.clip.result()
            except Exception as e:  # the clip failed: the event still goes out with its face
                clip_problem = f"clip not written: {type(e).__name__}: {e}"
                log(logger, "clip_failed", logging.ERROR, key=p.record.key, error=str(e)[:300])
        else:
            clip_problem = "clip not started"
        # whose face: a passenger's no-helmet event carries the passenger's; every event of a vehicle with a
        # passenger also carries the other occupant's face (face_passenger.jpg) when one was seen
        # (a passenger judged by her own rider box, edge.rules: her face is that track's own)
        slot = (
            "passenger" if v.detail.get("role") == "passenger" and not v.detail.get("judged_own_head") else ""
        )
        face = self.faces.best(v.track_id, slot) if self.faces is not None else None
        reason = None
        if face is None:
            reason = (
                self.faces.no_face_reason(v.track_id, slot)
                if self.faces is not None
                else (self.face_error or "face capture disabled")
            )
        other_faces: dict[str, Any] = {}
        if self.faces is not None and "occupant_boxes" in v.detail and not v.detail.get("judged_own_head"):
            other = self.faces.best(v.track_id, "" if slot else "passenger")
            if other is not None:
                other_faces["face_driver.jpg" if slot else "face_passenger.jpg"] = other
        try:
            ev = self.assembler.assemble(
                v,
                p.first_seen,
                face,
                reason,
                clip,
                clip_problem,
                extra={"t_s": round(v.t_s, 3)},
                event_id=p.event_id,
                violation_frame=p.frame,
                other_faces=other_faces,
                prewritten=p.decided_media,
            )
            # the event beside its files: a restart re-submits the folder if the outbox refuses it now
            write_atomic(self.work_dir / str(p.event_id) / EVENT_FILE, ev.event.to_json())
            self.outbox.add(ev.event, ev.media, move=True)
        except (
            Exception
        ) as e:  # disk full, outbox error: the files stay in the work folder, retried with backoff
            p.attempts += 1
            p.retry_mono = time.monotonic() + min(60.0, 2.0**p.attempts)
            p.record.error = f"{type(e).__name__}: {e}"
            self.health.alarm("outbox", f"event not stored: {e}"[:300])
            log(
                logger,
                "event_not_stored",
                logging.ERROR,
                key=p.record.key,
                error=str(e)[:300],
                attempts=p.attempts,
                kept_in=str(self.work_dir / str(p.event_id)),
            )
            return False
        if p.attempts:
            self.health.alarm("outbox", None)
        p.record.error = None
        p.record.outbox_mono = time.monotonic()
        eid = str(ev.event.event_id)
        p.record.event_id = eid
        p.record.face_found = ev.event.face.found
        p.record.media = sorted(ev.media)
        self.on_stored(ev.event, [self.outbox.media_dir / eid / name for name in sorted(ev.media)])
        _remove_tree(self.work_dir / eid)
        if not any(q.violation.track_id == v.track_id for q in self.pending if q is not p):
            self.pending_tracks.discard(v.track_id)
            if v.track_id in self.closed_tracks:
                self.closed_tracks.discard(v.track_id)
                self.on_track_done(v.track_id)
        log(
            logger,
            "event_stored",
            **ev.event.log_fields(),
            outbox_latency_s=round(p.record.outbox_latency_s or 0.0, 3),
            clip_note=ev.event.detail.get("clip_note", ""),
        )
        return True

    def recover(self) -> int:
        """Events a previous run assembled but could not store (disk full, crash): store them now."""
        from anqi_contract.event import parse_event

        stored = 0
        for folder in sorted(p for p in self.work_dir.iterdir() if p.is_dir()):
            f = folder / EVENT_FILE
            if not f.is_file() and (folder / DECISION_FILE).is_file():
                try:
                    f = self._event_from_decision(folder)
                except Exception as e:
                    log(
                        logger,
                        "decision_not_recovered",
                        logging.ERROR,
                        folder=str(folder),
                        error=f"{type(e).__name__}: {e}"[:300],
                    )
                    continue
            if not f.is_file():
                # a folder with neither record (killed between mkdir and the decision record, or a file
                # written by hand): nothing says what it was; kept for a person to look at, said at each start
                log(
                    logger,
                    "incomplete_evidence_kept",
                    logging.WARNING,
                    folder=str(folder),
                    files=len(list(folder.iterdir())),
                )
                continue
            try:
                ev = parse_event(f.read_text(encoding="utf-8"))
                media = {m.name: folder / m.name for m in ev.media}
                missing = [n for n, p in media.items() if not p.is_file()]
                if missing:
                    raise ValueError(f"media missing: {missing}")
                self.outbox.add(ev, media, move=True)
            except Exception as e:
                log(
                    logger,
                    "unstored_event_not_recovered",
                    logging.ERROR,
                    folder=str(folder),
                    error=str(e)[:300],
                )
                continue
            _remove_tree(folder)
            stored += 1
            self.on_recovered(ev)
            log(logger, "unstored_event_recovered", event_id=str(ev.event_id), type=ev.violation_type.value)
        return stored

    def _event_from_decision(self, folder: Path) -> Path:
        """The event of a violation whose daemon died before its evidence was complete (kill -9, power cut,
        crash): the decision record with the files that made it to disk. The event says it was recovered,
        which of its files are missing and why; a clip the recorder had already finished is kept."""
        from anqi_contract.event import parse_event
        from edge.evidence.files import media_ref

        ev = parse_event((folder / DECISION_FILE).read_text(encoding="utf-8"))
        refs = [m for m in ev.media if (folder / m.name).is_file()]
        missing = [m.name for m in ev.media if not (folder / m.name).is_file()]
        detail = dict(ev.detail)
        clip = folder / "clip.mp4"
        if clip.is_file() and self.assembler.sealer() is None and _playable_clip(clip):
            # finished before the crash (clip_written): the window was not re-checked
            refs.append(media_ref(clip, "clip", "clip.mp4"))
            detail["clip_note"] = "clip finished before the daemon stopped; recovered at restart"
        else:
            clip.unlink(missing_ok=True)  # a half-written clip is no evidence
            missing.append("clip.mp4")
        missing.append("face.jpg")
        detail["recovered"] = "the daemon stopped after the decision, before the evidence was complete"
        detail["missing_media"] = ",".join(missing)
        event = ev.model_copy(update={"media": refs, "detail": detail})
        path = write_atomic(folder / EVENT_FILE, event.to_json(), sync_dir=True)
        log(
            logger,
            "decision_recovered",
            logging.WARNING,
            event_id=str(ev.event_id),
            type=ev.violation_type.value,
            missing=",".join(missing),
        )
        return path


def _with_track_motion(v: Violation, track: Track | None, after_s: float) -> Violation:
    """The violation with speed and heading fitted over the track's ground points from 2 s before to
    ``after_s`` after the decision: more points than the rule had, so less noise in the event."""
    if track is None:
        return v
    pts = [p for p in track.history if p.ground is not None and v.t_s - 2.0 <= p.t_s <= v.t_s + after_s]
    if len(pts) < 4:
        return v
    m = fit_motion(np.array([p.t_s for p in pts]), np.array([p.ground for p in pts]), window_s=2.0 + after_s)
    if m is None:
        return v
    return replace(
        v,
        speed_mps=m.speed_mps,
        heading_deg=m.heading_deg,
        detail={**v.detail, "speed_fit_s": round(m.span_s, 2)},
    )


def _playable_clip(path: Path) -> bool:
    """A closed MP4 with at least one decodable video frame (a file cut off mid-write has no index)."""
    try:
        import av

        with av.open(str(path)) as c:
            return any(True for _ in c.decode(video=0))
    except Exception:
        return False


def _remove_tree(path: Path) -> None:

    shutil.rmtree(path, ignore_errors=True)
