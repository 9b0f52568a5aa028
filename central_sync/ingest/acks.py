"""Acks and the media grace: verified files linked to a stored event, acks published one message per device,
events whose files are missing held ``media.grace_s``, then acked with ``missing_media`` (the edge re-sends)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from anqi_contract import protocol as P
from anqi_contract.event import ViolationEvent
from anqi_contract.logs import log
from central_sync.ingest.media import MediaFiles
from central_sync.ingest.stats import ConsumerStats
from central_sync.storage.models import Event, Media, utcnow
from central_sync.storage.store import CentralStore

logger = logging.getLogger("anqi.central.consumer")

Publish = Callable[[str, bytes], bool]
#: acks collected by a caller that sends them together (one message per device)
AckList = list[tuple[P.Topic, P.Ack]]


@dataclass
class _Waiting:
    topic: P.Topic
    event: ViolationEvent
    since: float


class Acknowledger:
    """Links media and acks stored events; thread-safe (writer thread, network thread, grace loop)."""

    def __init__(
        self,
        prefix: str,
        publish: Publish,
        store: CentralStore,
        files: MediaFiles,
        stats: ConsumerStats,
        grace_s: float,
    ):
        self.prefix = prefix
        self._publish = publish
        self.store = store
        self.files = files
        self.stats = stats
        self.grace_s = grace_s
        self._lock = threading.Lock()  # the waiting events
        self._media_lock = (
            threading.Lock()
        )  # one media link at a time (the writer's ack and a late file's ack)
        self._waiting: dict[uuid.UUID, _Waiting] = {}

    # ------------------------------------------------------------------ acks
    def send_ack(self, topic: P.Topic, ack: P.Ack, acks: AckList | None = None) -> None:
        """Publish one ack now, or append it to ``acks`` for the caller to send with others."""
        if acks is not None:
            acks.append((topic, ack))
        else:
            self.send_acks([(topic, ack)])

    def send_acks(self, acks: Sequence[tuple[P.Topic, P.Ack]]) -> None:
        """Publish acks, one message per device (in order; at most ``ACK_BATCH_MAX`` acks per message)."""
        per_device: dict[tuple[str, str], list[P.Ack]] = {}
        for topic, ack in acks:
            per_device.setdefault((topic.site, topic.device), []).append(ack)
        for (site, device), these in per_device.items():
            for i in range(0, len(these), P.ACK_BATCH_MAX):
                self._publish(
                    P.ack_topic(self.prefix, site, device), P.encode_acks(these[i : i + P.ACK_BATCH_MAX])
                )
        self.stats.count_acks(len(acks))

    def duplicate(self, topic: P.Topic, ev: ViolationEvent, acks: AckList | None = None) -> None:
        """An event stored before (by this consumer or another): acked again, not stored."""
        self.stats.count_duplicate()
        log(logger, "event_duplicate", event_id=str(ev.event_id), device=topic.device)
        self.safe_ack(topic, ev, acks)

    def safe_ack(self, topic: P.Topic, ev: ViolationEvent, acks: AckList | None = None) -> None:
        """:meth:`link_media_and_ack`; a failure is logged (stored: the edge re-sends and is acked then)."""
        try:
            self.link_media_and_ack(topic, ev, final=False, acks=acks)
        except Exception as e:  # noqa: BLE001 - stored; the edge re-sends and is acked then
            self.stats.count_error()
            log(
                logger,
                "ack_failed",
                logging.ERROR,
                event_id=str(ev.event_id),
                error=f"{type(e).__name__}: {str(e)[:300]}",
            )

    # ------------------------------------------------------------------ media links
    def link_media_and_ack(
        self, topic: P.Topic, ev: ViolationEvent, final: bool, acks: AckList | None = None
    ) -> None:
        """Record verified media files of a stored event; ack when complete (or when the grace ran out): at once,
        or appended to ``acks`` for the caller to send with others."""
        if not ev.media:
            self.send_ack(topic, P.Ack(event_id=ev.event_id, status="stored", media_complete=True), acks)
            return
        with self._media_lock:  # the writer thread and a file completing on the network thread: one at a time
            self._link_media_and_ack_locked(topic, ev, final, acks)

    def _link_media_and_ack_locked(
        self, topic: P.Topic, ev: ViolationEvent, final: bool, acks: AckList | None
    ) -> None:
        missing: list[str] = []
        eid = str(ev.event_id)
        with self.store.session() as s:
            have = {n for (n,) in s.execute(select(Media.name).where(Media.event_id == eid))}
            for m in ev.media:
                if m.name in have:
                    continue
                path = self.files.path(eid, m.name)
                if self.files.matches(path, m):
                    s.add(
                        Media(
                            event_id=eid,
                            name=m.name,
                            kind=m.kind,
                            content_type=m.content_type,
                            size=m.size if m.sealed_to is None else path.stat().st_size,
                            sha256=m.sha256 if m.sealed_to is None else P.sha256_file(path),
                            path=str(path),
                            stored_at=utcnow(),
                        )
                    )
                else:
                    missing.append(m.name)
        with self._lock:
            if missing and not final:
                self._waiting.setdefault(ev.event_id, _Waiting(topic, ev, time.monotonic()))
                return
            self._waiting.pop(ev.event_id, None)
        self.send_ack(
            topic,
            P.Ack(
                event_id=ev.event_id,
                status="stored",
                media_complete=not missing,
                missing_media=missing,
                reason="media missing or corrupt; re-send" if missing else None,
            ),
            acks,
        )

    def media_arrived(self, topic: P.Topic, event_id: uuid.UUID) -> None:
        """A verified file of ``event_id`` was written: link it and ack the event if it is stored."""
        with self._lock:
            w = self._waiting.get(event_id)
        if w is not None:
            self.link_media_and_ack(w.topic, w.event, final=False)
        elif self.store.event_exists(str(event_id)):
            # a re-send after an incomplete ack: link it and answer again
            ev = self._stored_event(event_id)
            if ev is not None:
                self.link_media_and_ack(topic, ev, final=False)

    def ack_late(self) -> None:
        """Ack the events that waited longer than the grace for their files (``missing_media``)."""
        now = time.monotonic()
        with self._lock:
            late = [w for w in self._waiting.values() if now - w.since > self.grace_s]
        for w in late:
            try:
                self.link_media_and_ack(w.topic, w.event, final=True)
            except Exception as e:  # noqa: BLE001
                log(
                    logger,
                    "late_ack_failed",
                    logging.ERROR,
                    event_id=str(w.event.event_id),
                    error=str(e)[:200],
                )

    def _stored_event(self, event_id: uuid.UUID) -> ViolationEvent | None:
        with self.store.session() as s:
            e = s.get(Event, str(event_id))
            if e is None:
                return None
            try:
                return ViolationEvent.model_validate(e.body)
            except Exception:  # noqa: BLE001 - a body stored by an older schema
                return None
