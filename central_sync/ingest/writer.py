"""The batching writer: :class:`BatchQueue` (the writer thread takes what is queued, up to ``ingest.batch_max``,
waiting at most ``ingest.batch_wait_ms``) hands batches to :class:`EventWriter`, which stores them idempotently in as
few transactions as possible and acks each event after the commit that holds it."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from anqi_contract import protocol as P
from anqi_contract.event import ViolationEvent
from anqi_contract.logs import log
from central_sync.config import IngestConfig
from central_sync.identity import to_blob
from central_sync.ingest.acks import AckList, Acknowledger
from central_sync.ingest.faces import FaceIdentifier
from central_sync.ingest.pending import Pending
from central_sync.ingest.reassess import TierReassessor
from central_sync.ingest.stats import ConsumerStats
from central_sync.storage.store import CentralStore

logger = logging.getLogger("anqi.central.consumer")

Item = tuple[P.Topic, ViolationEvent]
StoreEvents = Callable[[Sequence[Item]], None]


class EventWriter:
    """Decoded events into the store, each acked after the commit that holds it."""

    def __init__(
        self,
        store: CentralStore,
        faces: FaceIdentifier,
        acks: Acknowledger,
        reassessor: TierReassessor,
        stats: ConsumerStats,
        embedding_model: str,
        clock: Callable[[], datetime],
    ):
        self.store = store
        self.faces = faces
        self.acks = acks
        self.reassessor = reassessor
        self.stats = stats
        self.embedding_model = (
            embedding_model  # identity.embedding_model: for embeddings that do not name theirs
        )
        self.clock = clock

    def store_events(self, items: Sequence[Item]) -> None:
        """Store decoded events idempotently, as few transactions as possible, and ack each after its commit.

        Duplicates (stored already, or earlier in ``items``) are acked, not stored again. The new events are
        identified, then written in one transaction; a transaction holds at most one event per person, so that the
        tier re-assessment after the commit sees each person exactly as the one-event-at-a-time consumer did (an
        event of a person already in the transaction starts the next one). After each commit: log lines, media links
        and acks per event, then one tier re-assessment per person. A transaction that fails is retried one event
        per transaction, so that one bad event cannot hold back the others (it is logged and not acked; the edge
        re-sends it). The acks of one call go out together, one message per device (:class:`~anqi_contract.protocol.AckBatch`)."""
        acks: AckList = []
        try:
            self._store_events_acking(items, acks)
        finally:
            self.acks.send_acks(acks)

    def _store_events_acking(self, items: Sequence[Item], acks: AckList) -> None:
        """:meth:`store_events`, the acks appended to ``acks`` (sent by the caller)."""
        firsts: dict[str, Pending] = {}
        try:
            stored = self.store.existing_event_ids([str(ev.event_id) for _, ev in items])
        except Exception as e:  # noqa: BLE001 - the database is down: nothing is acked, the edge re-sends
            self.stats.count_error(len(items))
            log(
                logger,
                "events_not_stored",
                logging.ERROR,
                events=len(items),
                error=f"{type(e).__name__}: {str(e)[:300]}",
            )
            return
        for topic, ev in items:
            eid = str(ev.event_id)
            if eid in stored:
                self.acks.duplicate(topic, ev, acks)
            elif eid in firsts:
                firsts[eid].copies.append(topic)  # acked once the first delivery is stored
            else:
                firsts[eid] = Pending(topic, ev)
        todo = []
        for p in firsts.values():
            try:
                self.faces.identify(p)
            except Exception as e:  # noqa: BLE001 - this event only
                self._failed(p, e)
                continue
            todo.append(p)
        while todo:
            try:
                with self.store.session() as s:
                    chunk, rest = self.faces.resolve_persons(s, todo)
                    new = self._write(s, chunk)
            except Exception as e:  # noqa: BLE001 - retried one event per transaction below
                if len(todo) == 1:
                    self._failed(todo[0], e)
                    return
                log(
                    logger,
                    "batch_failed",
                    logging.WARNING,
                    events=len(todo),
                    error=f"{type(e).__name__}: {str(e)[:300]}",
                    action="storing its events one by one",
                )
                for p in todo:
                    self._store_one(p, acks)
                return
            self._after_commit(chunk, new, acks)
            todo = rest

    def _store_one(self, p: Pending, acks: AckList) -> None:
        try:
            with self.store.session() as s:
                chunk, _ = self.faces.resolve_persons(s, [p])
                new = self._write(s, chunk)
        except Exception as e:  # noqa: BLE001 - this event only
            self._failed(p, e)
            return
        self._after_commit([p], new, acks)

    def _failed(self, p: Pending, e: Exception) -> None:
        self.stats.count_error()
        log(
            logger,
            "event_not_stored",
            logging.ERROR,
            event_id=str(p.event.event_id),
            device=p.topic.device,
            error=f"{type(e).__name__}: {str(e)[:300]}",
        )

    def _write(self, s: Session, chunk: list[Pending]) -> set[str]:
        """The rows of one transaction: unknown-file persons, events (one multi-row insert), their embeddings."""
        self.store.ensure_persons(
            s,
            sorted(
                {p.match.person_id for p in chunk if p.match and p.match.person_id and p.match.provisional}
            ),
            kind="unknown",
        )
        new = self.store.insert_events(s, [p.record() for p in chunk])
        self.store.add_embeddings(
            s,
            [
                (
                    p.match.person_id,
                    "event",
                    p.event.face.embedding_model or self.embedding_model,
                    to_blob(p.embedding()),
                    str(p.event.event_id),
                )
                for p in chunk
                if p.match and p.match.person_id and p.event.face.embedding and str(p.event.event_id) in new
            ],
        )
        return new

    def _after_commit(self, chunk: list[Pending], new: set[str], acks: AckList) -> None:
        """Durably committed: count, log, link media and ack each event (into ``acks``); then re-assess each person
        once."""
        latest: dict[str, Pending] = {}
        n_new = 0
        logging_on = logger.isEnabledFor(logging.INFO)  # the line's fields are built only when it is written
        for p in chunk:
            ev, eid = p.event, str(p.event.event_id)
            if eid in new:
                n_new += 1
                if logging_on:
                    log(
                        logger,
                        "event_stored",
                        device=p.topic.device,
                        person=p.person_id or "-",
                        score=None if p.match is None else round(p.match.score, 3),
                        **ev.log_fields(),
                    )
                if p.person_id and (p.person_id not in latest or ev.time >= latest[p.person_id].event.time):
                    latest[p.person_id] = p
                self.acks.safe_ack(p.topic, ev, acks)
            else:  # another consumer stored it between our check and our insert
                self.acks.duplicate(p.topic, ev, acks)
            for t in p.copies:
                self.acks.duplicate(t, ev, acks)
        if n_new:
            self.stats.count_stored(n_new)
        if latest:
            now = self.clock()
            self.reassessor.reassess_many(
                [(pid, max(now, p.event.time), str(p.event.event_id)) for pid, p in latest.items()]
            )


_STOP = object()  # tells the writer thread to drain the queue and end


class BatchQueue:
    """The writer thread: decoded events queued by the network thread, stored in batches by ``store_events``."""

    def __init__(self, ingest: IngestConfig, store_events: StoreEvents, stats: ConsumerStats):
        self.batch_max = ingest.batch_max
        self.wait_s = ingest.batch_wait_ms / 1000.0
        self.store_events = store_events
        self.stats = stats
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=ingest.queue_max)
        self._accepting = threading.Event()  # set while the writer thread takes events from the queue
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="anqi-central-writer", daemon=True)
        self._thread.start()
        self._accepting.set()

    def stop(self) -> None:
        """Store what is queued and end the writer thread; from here on, :meth:`enqueue` stores on its caller's
        thread."""
        self._accepting.clear()
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def qsize(self) -> int:
        return self._queue.qsize()

    def enqueue(self, topic: P.Topic, ev: ViolationEvent) -> None:
        """Hand a decoded event to the writer thread (blocks while the queue is full: back-pressure to the broker)."""
        while self._accepting.is_set():
            try:
                self._queue.put((topic, ev), timeout=0.5)
                return
            except queue.Full:
                continue
        self.store_events([(topic, ev)])  # stopping: the writer may be gone, store it here

    def drain(self) -> None:
        """Store everything still queued, in batches of ``ingest.batch_max``."""
        while batch := self._queued_now(self.batch_max):
            self._store_batch(batch)

    def _queued_now(self, limit: int) -> list[Item]:
        """Up to ``limit`` events already on the queue, without waiting (stop markers skipped)."""
        items: list[Item] = []
        while len(items) < limit:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                items.append(item)
        return items

    def _loop(self) -> None:
        """Take the first queued event, then what else is queued (up to ``ingest.batch_max``, waiting at most
        ``ingest.batch_wait_ms`` for it), store them as one batch; on stop, drain the queue first."""
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[Item] = []
            if first is _STOP:
                stopping = True
            else:
                batch.append(first)
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.batch_max:
                left = deadline - time.monotonic()
                try:
                    nxt = (
                        self._queue.get(timeout=left)
                        if left > 0 and not stopping
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                else:
                    batch.append(nxt)
            self._store_batch(batch)
        self.drain()  # stopping: what is still queued, without waiting

    def _store_batch(self, batch: list[Item]) -> None:
        if not batch:
            return
        try:
            self.store_events(batch)
        except Exception as e:  # noqa: BLE001 - the writer must outlive any one batch
            self.stats.count_error()
            log(
                logger,
                "batch_failed",
                logging.ERROR,
                events=len(batch),
                error=f"{type(e).__name__}: {str(e)[:300]}",
            )
