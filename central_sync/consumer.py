"""The central MQTT consumer: edge events in, stored once, acknowledged, identified, tiered.

Subscriptions (``mqtt.topic_prefix`` = ``anqi/v1``, wire format from :mod:`anqi_contract.protocol`):

* ``$share/<group>/anqi/v1/+/+/event`` (MQTT 5 shared subscription: consumers of one group split
  the events between them);
* ``anqi/v1/+/+/media/#`` *not* shared: the chunks of one file must all reach the consumer that
  reassembles them, and the event may land on any consumer of the group; every consumer therefore
  reassembles all media (verified SHA-256 per chunk and per file, :class:`protocol.MediaAssembler`)
  into the shared ``media.dir`` (atomic rename, so two consumers writing the same file is harmless);
* ``$share/<group>/anqi/v1/central/feedback``: outcomes of disposition tasks.

Per event: parse (unknown ``schema_version`` -> log line + ``rejected`` ack, at once, on the
network thread), check the device id against the topic, resolve the face (gallery, else a
provisional unknown file), store idempotently on ``event_id``, link the verified media named in the
event, publish ``.../ack`` (``stored`` + ``media_complete``; when media are missing it waits
``media.grace_s`` for them, then acks with ``missing_media`` so the edge re-sends them), then
re-assess the person's tier and hand a change to :class:`~central_sync.dispositions.DispositionDesk`.

Writes are batched (``ingest``): the network thread queues each valid event; one writer thread
takes what is queued (up to ``ingest.batch_max``, waiting at most ``ingest.batch_wait_ms``) and
stores it in one transaction, so a burst costs one commit per batch instead of one per event. An
event is acked only after the transaction holding it committed. A transaction holds at most one
event per person (the next event of that person starts the next transaction), so every tier
re-assessment sees the same history, and plans the same tasks, as when events are stored one by
one. A failing batch is retried one event per transaction; ``stop()`` stores what is queued first.

:class:`CentralConsumer` runs in-process (tests, benchmarks) or under ``anqi-central run``.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import select

from anqi_contract import protocol as P
from anqi_contract.event import UnsupportedSchemaVersion, ViolationEvent
from anqi_contract.fsutil import write_atomic
from anqi_contract.logs import log
from anqi_contract.sealed import KeyRing, SealError, is_sealed
from central_sync.config import CentralConfig, load_keyring, read_secret
from central_sync.dispositions import DispositionDesk
from central_sync.identity import IdentityResolver, Match, to_blob
from central_sync.persons import catch_up_unknown_files, load_resolver
from central_sync.storage.models import Embedding, Media, Person, utcnow
from central_sync.storage.store import CentralStore, ViolationRecord
from central_sync.tiers import TierAssessment

logger = logging.getLogger("anqi.central.consumer")


@dataclass
class ConsumerStats:
    events_received: int = 0
    events_stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    acks_sent: int = 0
    media_files: int = 0
    corrupt_chunks: int = 0
    tier_changes: int = 0
    feedback: int = 0
    errors: int = 0
    last_assessment: dict[str, str] = field(default_factory=dict)


@dataclass
class _Waiting:
    topic: P.Topic
    event: ViolationEvent
    since: float


@dataclass
class _Pending:
    """A new event on its way into the store: its identity match and the later copies of it in the same batch."""

    topic: P.Topic
    event: ViolationEvent
    match: Match | None = None
    followed: bool = False  # merged_into looked up
    copies: list[P.Topic] = field(default_factory=list)
    vector: np.ndarray | None = None  # the face embedding as float32, converted once (search and stored blob)

    @property
    def person_id(self) -> str | None:
        return self.match.person_id if self.match is not None else None

    def record(self) -> ViolationRecord:
        ev, m = self.event, self.match
        return ViolationRecord(
            event_id=str(ev.event_id),
            violation_type=ev.violation_type.value,
            time=ev.time,
            person_id=self.person_id,
            point_id=ev.point_id,
            device_id=ev.device_id,
            site_id=ev.site_id,
            schema_version=ev.schema_version,
            confidence=ev.confidence,
            face_found=ev.face.found,
            match_score=m.score if m else None,
            media_expected=len(ev.media),
            body=ev.model_dump(mode="json", exclude={"face": {"embedding"}}),
        )


_STOP = object()  # tells the writer thread to drain the queue and end


class CentralConsumer:
    """MQTT consumer + the store + identity + dispositions; ``start()`` / ``stop()``."""

    def __init__(
        self,
        cfg: CentralConfig,
        store: CentralStore | None = None,
        resolver: IdentityResolver | None = None,
        media_grace_s: float = 5.0,
        clock: Any = None,
        keyring: KeyRing | None = None,
    ):
        self.cfg = cfg
        #: central's private keys for evidence sealed on the devices (sealing.key_ids; never in the YAML)
        self.keyring = keyring if keyring is not None else load_keyring(cfg)
        self.store = store or CentralStore.from_config(cfg)
        self.resolver = resolver or load_resolver(self.store, cfg)
        self.prefix = cfg.mqtt.topic_prefix.strip("/")
        self.media_dir = cfg.resolve(cfg.media.dir)
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self.media_grace_s = media_grace_s
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.stats = ConsumerStats()
        self.assembler = P.MediaAssembler(
            max_bytes=int(cfg.media.max_event_media_mb * 4) << 20, max_idle_s=cfg.media.assembly_timeout_s
        )
        self.desk = DispositionDesk(cfg, self.store, publish=self._publish)
        self._lock = threading.RLock()
        self._media_lock = (
            threading.Lock()
        )  # one media link at a time (the writer's ack and a late file's ack)
        self._waiting: dict[uuid.UUID, _Waiting] = {}
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=cfg.ingest.queue_max)
        self._accepting = threading.Event()  # set while the writer thread takes events from the queue
        self._writer: threading.Thread | None = None
        self._pub_lock = threading.Lock()
        self._unconfirmed: collections.deque[paho.MQTTMessageInfo] = collections.deque(maxlen=100_000)
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._grace_thread: threading.Thread | None = None
        self._sub_mid: int | None = -1
        self._stored_cv = threading.Condition()
        self._gallery_signature = self._signature()
        self._last_gallery_check = time.monotonic()
        self.client = self._make_client()

    @classmethod
    def for_broker(
        cls,
        host: str,
        port: int,
        workdir: Path,
        db_url: str | None = None,
        prefix: str = "anqi/v1",
        media_grace_s: float = 5.0,
        client_id: str | None = None,
        **sections: Any,
    ) -> CentralConsumer:
        """A consumer for tests and benchmarks: SQLite (or ``db_url``) and media under ``workdir``."""
        from central_sync.config import parse_config

        workdir.mkdir(parents=True, exist_ok=True)
        cfg = parse_config(
            {
                "database": {"url": db_url or f"sqlite:///{workdir / 'central.db'}"},
                "mqtt": {
                    "host": host,
                    "port": port,
                    "topic_prefix": prefix,
                    "client_id": client_id or f"anqi-central-{uuid.uuid4().hex[:8]}",
                },
                "media": {"dir": str(workdir / "media")},
                **sections,
            },
            "<in-process>",
            workdir,
        )
        return cls(cfg, media_grace_s=media_grace_s)

    def wait_stored(self, n_events: int, timeout: float) -> bool:
        """Block until ``n_events`` distinct events were stored by this consumer."""
        with self._stored_cv:
            return self._stored_cv.wait_for(lambda: self.stats.events_stored >= n_events, timeout)

    # ------------------------------------------------------------------ MQTT
    def _make_client(self) -> paho.Client:
        m = self.cfg.mqtt
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=m.client_id, protocol=paho.MQTTv5)
        if m.username:
            c.username_pw_set(
                m.username, read_secret(m.password_env, "mqtt.password_env") if m.password_env else None
            )
        if m.ca_file:
            ctx = ssl.create_default_context(cafile=str(self.cfg.resolve(m.ca_file)))
            if m.cert_file and m.key_file:
                ctx.load_cert_chain(str(self.cfg.resolve(m.cert_file)), str(self.cfg.resolve(m.key_file)))
            c.tls_set_context(ctx)
        c.max_inflight_messages_set(100)
        c.reconnect_delay_set(1, 8)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        return c

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        failed = [str(rc) for rc in rcs if rc.is_failure]
        if failed:
            log(
                logger,
                "subscribe_refused",
                logging.ERROR,
                reasons=",".join(failed),
                hint="check the broker ACL for the consumer user",
            )
        if mid == self._sub_mid:
            self._connected.set()  # subscribed: from now on nothing published is missed

    def subscriptions(self) -> list[tuple[str, int]]:
        g, q = self.cfg.mqtt.share_group, self.cfg.mqtt.qos
        f = P.central_filters(self.prefix)
        return [
            (P.shared_subscription(g, f[P.TopicKind.event]), q),
            (f[P.TopicKind.media], q),
            (P.shared_subscription(g, self.desk.feedback_topic), q),
        ]

    def start(self, timeout: float = 15.0) -> CentralConsumer:
        props = Properties(PacketTypes.CONNECT)
        if not self.cfg.devices:
            log(logger, "device_registry_empty", logging.WARNING, hint="events from any device are accepted")
        # failover: with the default expiry 0 the session (its place in the share group, the media subscription)
        # ends with the connection, so the broker hands the other consumers every later event at once
        expiry = self.cfg.mqtt.session_expiry_s
        props.SessionExpiryInterval = expiry
        self._stop.clear()
        self._writer = threading.Thread(target=self._writer_loop, name="anqi-central-writer", daemon=True)
        self._writer.start()
        self._accepting.set()
        self.client.connect_async(
            self.cfg.mqtt.host,
            self.cfg.mqtt.port,
            self.cfg.mqtt.keepalive_s,
            clean_start=expiry == 0,  # never resume a session left by an older version of this consumer
            properties=props,
        )
        self.client.loop_start()
        self.desk.start()
        self._grace_thread = threading.Thread(target=self._grace_loop, name="anqi-central-grace", daemon=True)
        self._grace_thread.start()
        if not self._connected.wait(timeout):
            log(
                logger,
                "consumer_not_connected",
                logging.WARNING,
                host=self.cfg.mqtt.host,
                port=self.cfg.mqtt.port,
                hint="keeps retrying; check mqtt.host / port / credentials",
            )
        return self

    def stop(self) -> None:
        """Store and ack every event already taken from the broker, then disconnect."""
        self._stop.set()
        self._accepting.clear()  # from here on, a late message is stored on the network thread itself
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join()
            self._writer = None
        self._flush_publishes(
            10.0
        )  # a disconnect drops what paho still holds back (beyond the in-flight window)
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
        self._drain_queue()  # put on the queue while the writer was ending: stored, acked at the next delivery
        if self._grace_thread is not None:
            self._grace_thread.join(timeout=5)
        self.desk.stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log(logger, "consumer_connect_refused", logging.ERROR, host=self.cfg.mqtt.host, reason=str(rc))
            return
        _, self._sub_mid = client.subscribe(self.subscriptions())
        log(
            logger,
            "consumer_connected",
            host=self.cfg.mqtt.host,
            port=self.cfg.mqtt.port,
            session_present=bool(getattr(flags, "session_present", False)),
            group=self.cfg.mqtt.share_group,
        )
        try:
            n = self.desk.publish_pending()
            if n:
                log(logger, "tasks_republished", count=n)
        except Exception as e:  # noqa: BLE001 - a database hiccup must not kill the network thread
            log(logger, "tasks_republish_failed", logging.ERROR, error=str(e)[:200])

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log(logger, "consumer_disconnected", logging.WARNING, reason=str(rc))

    def _publish(self, topic: str, payload: bytes) -> bool:
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return False
        with self._pub_lock:  # kept until the broker confirmed it, so that stop() can wait for it
            self._unconfirmed.append(info)
            while self._unconfirmed and self._unconfirmed[0].is_published():
                self._unconfirmed.popleft()
        return True

    def _flush_publishes(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until the broker confirmed the acks and tasks published so far."""
        end = time.monotonic() + timeout
        with self._pub_lock:
            pending = list(self._unconfirmed)
        for info in pending:
            while not info.is_published() and self.connected and time.monotonic() < end:
                time.sleep(0.01)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = self._topic(msg.topic)
            if topic is not None and topic.kind is P.TopicKind.event:
                ev = self._decode_event(topic, bytes(msg.payload))  # a reject is answered here, at once
                if ev is not None:
                    self._enqueue(topic, ev)  # stored and acked by the writer thread
            else:
                self.handle(msg.topic, bytes(msg.payload))
        except Exception as e:  # noqa: BLE001 - never let one message stop the consumer
            self._count_error()
            log(
                logger,
                "message_failed",
                logging.ERROR,
                topic=msg.topic,
                error=f"{type(e).__name__}: {str(e)[:300]}",
            )

    def _topic(self, topic_s: str) -> P.Topic | None:
        if topic_s == self.desk.feedback_topic:
            return None
        try:
            return P.parse_topic(topic_s, self.prefix)
        except P.ProtocolError:
            return None

    def _queued_now(self, limit: int) -> list[tuple[P.Topic, ViolationEvent]]:
        """Up to ``limit`` events already on the queue, without waiting (stop markers skipped)."""
        items: list[tuple[P.Topic, ViolationEvent]] = []
        while len(items) < limit:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                items.append(item)
        return items

    def _drain_queue(self) -> None:
        """Store everything still queued, in batches of ``ingest.batch_max``."""
        while batch := self._queued_now(self.cfg.ingest.batch_max):
            self._store_batch(batch)

    # ------------------------------------------------------------------ handling (usable without MQTT)
    def handle(self, topic_s: str, payload: bytes) -> None:
        """One message, handled on the caller's thread (an event is stored and acked before this returns)."""
        self.handle_many([(topic_s, payload)])

    def handle_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Messages handled on the caller's thread, in order; their valid events stored as one batch, as the writer
        thread stores what it takes from the queue."""
        events: list[tuple[P.Topic, ViolationEvent]] = []
        for topic_s, payload in messages:
            if topic_s == self.desk.feedback_topic:
                self._on_feedback(payload)
                continue
            try:
                topic = P.parse_topic(topic_s, self.prefix)
            except P.ProtocolError as e:
                log(logger, "foreign_topic", logging.WARNING, error=str(e)[:200])
                continue
            if topic.kind is P.TopicKind.media:
                self._on_media(topic, payload)
            elif topic.kind is P.TopicKind.event:
                ev = self._decode_event(topic, payload)
                if ev is not None:
                    events.append((topic, ev))
        if events:
            self._store_events(events)

    def _on_feedback(self, payload: bytes) -> None:
        try:
            if self.desk.record_feedback(payload):
                self.stats.feedback += 1
        except ValueError as e:
            log(logger, "feedback_rejected", logging.WARNING, error=str(e)[:300])

    def _on_media(self, topic: P.Topic, payload: bytes) -> None:
        try:
            problem = self._registry_problem(topic)
            if problem:
                raise P.ProtocolError(problem)
            chunk = P.decode_chunk(payload, topic)
            if chunk.header.size > self.cfg.media.max_event_media_mb * (1 << 20):
                raise P.ProtocolError(
                    f"media {chunk.header.name} of {chunk.header.size} bytes exceeds media.max_event_media_mb"
                )
            done = self.assembler.add(chunk)
        except P.ProtocolError as e:
            self.stats.corrupt_chunks += 1
            log(
                logger,
                "media_chunk_rejected",
                logging.WARNING,
                event_id=str(topic.event_id),
                name=topic.name,
                device=topic.device,
                error=str(e)[:300],
            )
            return
        if done is None:
            return
        data = done.data
        path = self._media_path(done.event_id, done.name)
        if is_sealed(data):
            try:  # opened on receipt: what central keeps and shows is the evidence itself
                data = self.keyring.open(data)
            except SealError as e:
                self._count_error()
                log(
                    logger,
                    "media_open_failed",
                    logging.ERROR,
                    event_id=str(done.event_id),
                    name=done.name,
                    device=topic.device,
                    error=str(e)[:300],
                )
                return
        elif self.cfg.sealing.require_sealed:
            self._count_error()
            log(
                logger,
                "media_unsealed_refused",
                logging.ERROR,
                event_id=str(done.event_id),
                name=done.name,
                device=topic.device,
            )
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # durable before it is linked and acked as complete: the edge deletes its copy on that ack
        write_atomic(
            path,
            data,
            tmp=path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"),
            sync_dir=True,
        )
        if data is not done.data:  # the digest of the sealed bytes the event names, beside the opened file
            write_atomic(self._sealed_digest_path(path), done.sha256, sync_dir=True)
        self.stats.media_files += 1
        log(logger, "media_verified", event_id=str(done.event_id), name=done.name, bytes=len(done.data))
        with self._lock:
            w = self._waiting.get(done.event_id)
        if w is not None:
            self._link_media_and_ack(w.topic, w.event, final=False)
        elif self.store.event_exists(str(done.event_id)):
            # a re-send after an incomplete ack: link it and answer again
            ev = self._stored_event(done.event_id)
            if ev is not None:
                self._link_media_and_ack(topic, ev, final=False)

    def _media_path(self, event_id: uuid.UUID | str, name: str) -> Path:
        return self.media_dir / str(event_id) / name

    @staticmethod
    def _sealed_digest_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.sealed-sha256")

    def _media_matches(self, path: Path, ref: Any) -> bool:
        """The stored file is the one the event names (for a sealed file: the sealed bytes that were opened)."""
        if not path.is_file():
            return False
        if ref.sealed_to is not None:
            d = self._sealed_digest_path(path)
            return d.is_file() and d.read_text(encoding="ascii", errors="replace").strip() == ref.sha256
        return P.sha256_file(path) == ref.sha256

    def _open_sealed(self, topic: P.Topic, ev: ViolationEvent) -> ViolationEvent | None:
        """The event with its sealed embedding opened; ``None`` (not acked: the edge keeps it and re-sends) when
        it cannot be opened or arrives unsealed where sealing is required."""
        f = ev.face
        if f.embedding_sealed:
            try:
                vec = self.keyring.open_embedding(f.embedding_sealed)
            except SealError as e:
                self._count_error()
                log(
                    logger,
                    "embedding_open_failed",
                    logging.ERROR,
                    event_id=str(ev.event_id),
                    device=topic.device,
                    error=str(e)[:300],
                )
                return None
            return ev.model_copy(
                update={"face": f.model_copy(update={"embedding": vec, "embedding_sealed": None})}
            )
        if self.cfg.sealing.require_sealed and (f.embedding or any(m.sealed_to is None for m in ev.media)):
            self._reject(
                topic, ev.to_json().encode(), "evidence not sealed (central requires sealing.require_sealed)"
            )
            return None
        return ev

    def _decode_event(self, topic: P.Topic, payload: bytes) -> ViolationEvent | None:
        """The event of a message, or ``None`` after rejecting it (ack ``rejected`` at once, nothing is stored)."""
        self.stats.events_received += 1
        try:
            ev = P.decode_event(payload)
        except (P.ProtocolError, UnsupportedSchemaVersion) as e:
            self._reject(topic, payload, str(e))
            return None
        if ev.device_id != topic.device or ev.site_id != topic.site:
            self._reject(
                topic,
                payload,
                f"event of device {ev.device_id}/{ev.site_id} published on {topic.site}/{topic.device}",
            )
            return None
        problem = self._registry_problem(topic, ev.point_id)
        if problem:
            self._reject(topic, payload, problem)
            return None
        return self._open_sealed(topic, ev)

    def _registry_problem(self, topic: P.Topic, point_id: str | None = None) -> str | None:
        """Why the device registry refuses a message on ``topic`` (None: accepted, or no registry configured)."""
        if not self.cfg.devices:
            return None
        d = self.cfg.registered(topic.device)
        if d is None:
            return f"device {topic.device} is not registered (central config: devices)"
        if d.site_id != topic.site:
            return f"device {topic.device} is registered at site {d.site_id}, not {topic.site}"
        if point_id is not None and d.point_id is not None and d.point_id != point_id:
            return f"device {topic.device} is registered at point {d.point_id}, not {point_id}"
        return None

    # ------------------------------------------------------------------ the writer: batches of events, one transaction each
    def _enqueue(self, topic: P.Topic, ev: ViolationEvent) -> None:
        """Hand a decoded event to the writer thread (blocks while the queue is full: back-pressure to the broker)."""
        while self._accepting.is_set():
            try:
                self._queue.put((topic, ev), timeout=0.5)
                return
            except queue.Full:
                continue
        self._store_events([(topic, ev)])  # stopping: the writer may be gone, store it here

    def _writer_loop(self) -> None:
        """Take the first queued event, then what else is queued (up to ``ingest.batch_max``, waiting at most
        ``ingest.batch_wait_ms`` for it), store them as one batch; on stop, drain the queue first."""
        ing = self.cfg.ingest
        wait_s = ing.batch_wait_ms / 1000.0
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[tuple[P.Topic, ViolationEvent]] = []
            if first is _STOP:
                stopping = True
            else:
                batch.append(first)
            deadline = time.monotonic() + wait_s
            while len(batch) < ing.batch_max:
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
        self._drain_queue()  # stopping: what is still queued, without waiting

    def _store_batch(self, batch: list[tuple[P.Topic, ViolationEvent]]) -> None:
        if not batch:
            return
        try:
            self._store_events(batch)
        except Exception as e:  # noqa: BLE001 - the writer must outlive any one batch
            self._count_error()
            log(
                logger,
                "batch_failed",
                logging.ERROR,
                events=len(batch),
                error=f"{type(e).__name__}: {str(e)[:300]}",
            )

    def _store_events(self, items: Sequence[tuple[P.Topic, ViolationEvent]]) -> None:
        """Store decoded events idempotently, as few transactions as possible, and ack each after its commit.

        Duplicates (stored already, or earlier in ``items``) are acked, not stored again. The new events are
        identified, then written in one transaction; a transaction holds at most one event per person, so that the
        tier re-assessment after the commit sees each person exactly as the one-event-at-a-time consumer did (an
        event of a person already in the transaction starts the next one). After each commit: log lines, media links
        and acks per event, then one tier re-assessment per person. A transaction that fails is retried one event
        per transaction, so that one bad event cannot hold back the others (it is logged and not acked; the edge
        re-sends it). The acks of one call go out together, one message per device (:class:`~anqi_contract.protocol.AckBatch`)."""
        acks: list[tuple[P.Topic, P.Ack]] = []
        try:
            self._store_events_acking(items, acks)
        finally:
            self._send_acks(acks)

    def _store_events_acking(
        self, items: Sequence[tuple[P.Topic, ViolationEvent]], acks: list[tuple[P.Topic, P.Ack]]
    ) -> None:
        """:meth:`_store_events`, the acks appended to ``acks`` (sent by the caller)."""
        firsts: dict[str, _Pending] = {}
        try:
            stored = self.store.existing_event_ids([str(ev.event_id) for _, ev in items])
        except Exception as e:  # noqa: BLE001 - the database is down: nothing is acked, the edge re-sends
            self._count_error(len(items))
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
                self._duplicate(topic, ev, acks)
            elif eid in firsts:
                firsts[eid].copies.append(topic)  # acked once the first delivery is stored
            else:
                firsts[eid] = _Pending(topic, ev)
        todo = []
        for p in firsts.values():
            try:
                p.match = self._identify(p.event, p)
            except Exception as e:  # noqa: BLE001 - this event only
                self._failed(p, e)
                continue
            todo.append(p)
        while todo:
            try:
                with self.store.session() as s:
                    chunk, rest = self._resolve_persons(s, todo)
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
                    self._store_events_one(p, acks)
                return
            self._after_commit(chunk, new, acks)
            todo = rest

    def _store_events_one(self, p: _Pending, acks: list[tuple[P.Topic, P.Ack]]) -> None:
        try:
            with self.store.session() as s:
                chunk, _ = self._resolve_persons(s, [p])
                new = self._write(s, chunk)
        except Exception as e:  # noqa: BLE001 - this event only
            self._failed(p, e)
            return
        self._after_commit([p], new, acks)

    def _failed(self, p: _Pending, e: Exception) -> None:
        self._count_error()
        log(
            logger,
            "event_not_stored",
            logging.ERROR,
            event_id=str(p.event.event_id),
            device=p.topic.device,
            error=f"{type(e).__name__}: {str(e)[:300]}",
        )

    def _resolve_persons(self, s: Any, todo: list[_Pending]) -> tuple[list[_Pending], list[_Pending]]:
        """Inside the transaction, event by event: open or join an unknown file for a face nobody known has, follow
        merged files; stop before the second event of one person. Returns (this transaction's events, the rest)."""
        locked = False
        persons: set[str] = set()
        # the merges of the files already matched, in one look-up (not one per event)
        ask = sorted(
            {
                p.match.person_id
                for p in todo
                if p.match is not None and p.match.person_id and not p.match.new_file and not p.followed
            }
        )
        merges = self.store.merged_into_many(ask, s) if ask else {}
        asked = set(ask)
        for i, p in enumerate(todo):
            m = p.match
            if m is not None and (m.person_id is None or m.new_file) and not locked:
                # nobody known: under the group-wide lock (PostgreSQL; held until this transaction commits), pick up
                # the files other consumers opened (once: while we hold the lock nobody else opens one), then join
                # one or open a new one: one rider, one file. A file opened by a transaction that failed is written
                # under the lock too, when its event is retried.
                self.store.lock_new_person_files(s)
                catch_up_unknown_files(self.store, self.resolver)
                locked = True
            if m is not None and m.person_id is None:
                p.match = m = self.resolver.resolve(
                    p.vector if p.vector is not None else (p.event.face.embedding or [])
                )
            if m is not None and m.person_id and not m.new_file and not p.followed:
                merged_into = (
                    merges.get(m.person_id)
                    if m.person_id in asked
                    else self.store.merged_into(m.person_id, s)
                )
                if merged_into:  # a stale unknown file: follow the merge
                    p.match = Match(merged_into, m.score)
                p.followed = True
            pid = p.person_id
            if pid is not None:
                if pid in persons:
                    return todo[:i], todo[i:]
                persons.add(pid)
        return todo, []

    def _write(self, s: Any, chunk: list[_Pending]) -> set[str]:
        """The rows of one transaction: unknown-file persons, events (one multi-row insert), their embeddings."""
        self.store.ensure_persons(
            s,
            sorted(
                {p.match.person_id for p in chunk if p.match and p.match.person_id and p.match.provisional}
            ),
            kind="unknown",
        )
        new = self.store.insert_events(s, [p.record() for p in chunk])
        model = self.cfg.identity.embedding_model
        self.store.add_embeddings(
            s,
            [
                (
                    p.match.person_id,
                    "event",
                    p.event.face.embedding_model or model,
                    to_blob(
                        p.vector
                        if p.vector is not None
                        else np.asarray(p.event.face.embedding, dtype=np.float32)
                    ),
                    str(p.event.event_id),
                )
                for p in chunk
                if p.match and p.match.person_id and p.event.face.embedding and str(p.event.event_id) in new
            ],
        )
        return new

    def _after_commit(self, chunk: list[_Pending], new: set[str], acks: list[tuple[P.Topic, P.Ack]]) -> None:
        """Durably committed: count, log, link media and ack each event (into ``acks``); then re-assess each person
        once."""
        latest: dict[str, _Pending] = {}
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
                self._safe_ack(p.topic, ev, acks)
            else:  # another consumer stored it between our check and our insert
                self._duplicate(p.topic, ev, acks)
            for t in p.copies:
                self._duplicate(t, ev, acks)
        if n_new:
            with self._stored_cv:
                self.stats.events_stored += n_new
                self._stored_cv.notify_all()
        if latest:
            now = self.clock()
            self.reassess_many(
                [(pid, max(now, p.event.time), str(p.event.event_id)) for pid, p in latest.items()]
            )

    def _duplicate(
        self, topic: P.Topic, ev: ViolationEvent, acks: list[tuple[P.Topic, P.Ack]] | None = None
    ) -> None:
        with self._lock:
            self.stats.duplicates += 1
        log(logger, "event_duplicate", event_id=str(ev.event_id), device=topic.device)
        self._safe_ack(topic, ev, acks)

    def _safe_ack(
        self, topic: P.Topic, ev: ViolationEvent, acks: list[tuple[P.Topic, P.Ack]] | None = None
    ) -> None:
        try:
            self._link_media_and_ack(topic, ev, final=False, acks=acks)
        except Exception as e:  # noqa: BLE001 - stored; the edge re-sends and is acked then
            self._count_error()
            log(
                logger,
                "ack_failed",
                logging.ERROR,
                event_id=str(ev.event_id),
                error=f"{type(e).__name__}: {str(e)[:300]}",
            )

    def _count_error(self, n: int = 1) -> None:
        with self._lock:
            self.stats.errors += n

    def _identify(self, ev: ViolationEvent, p: _Pending | None = None) -> Match | None:
        """The face's match (``Match(None, ..)`` when it needs a new unknown file); ``p.vector``: its embedding."""
        f = ev.face
        if not f.found or not f.embedding:
            return None
        want = self.cfg.identity.embedding_model.lower()
        if f.embedding_model and not f.embedding_model.lower().startswith(want):
            log(
                logger,
                "embedding_model_mismatch",
                logging.WARNING,
                event_id=str(ev.event_id),
                model=f.embedding_model,
                expected=want,
            )
            return None
        if f.quality is not None and f.quality < self.cfg.identity.min_quality:
            return None
        try:
            v = np.asarray(f.embedding, dtype=np.float32)
            if p is not None:
                p.vector = v
            return self.resolver.resolve(v, open_file=False)  # Match(None, ...) when a new file is needed
        except ValueError as e:
            log(logger, "embedding_unusable", logging.WARNING, event_id=str(ev.event_id), error=str(e))
            return None

    def _reject(self, topic: P.Topic, payload: bytes, reason: str) -> None:
        self.stats.rejected += 1
        eid = _event_id_of(payload)
        log(
            logger,
            "event_rejected",
            logging.WARNING,
            device=topic.device,
            site=topic.site,
            event_id=str(eid) if eid else "-",
            reason=reason[:300],
        )
        if eid is not None:
            self._send_ack(topic, P.Ack(event_id=eid, status="rejected", reason=reason[:200]))

    def _link_media_and_ack(
        self, topic: P.Topic, ev: ViolationEvent, final: bool, acks: list[tuple[P.Topic, P.Ack]] | None = None
    ) -> None:
        """Record verified media files of a stored event; ack when complete (or when the grace ran out): at once,
        or appended to ``acks`` for the caller to send with others."""
        if not ev.media:
            self._send_ack(topic, P.Ack(event_id=ev.event_id, status="stored", media_complete=True), acks)
            return
        with (
            self._media_lock
        ):  # the writer thread and a file completing on the network thread: one after the other
            self._link_media_and_ack_locked(topic, ev, final, acks)

    def _link_media_and_ack_locked(
        self, topic: P.Topic, ev: ViolationEvent, final: bool, acks: list[tuple[P.Topic, P.Ack]] | None
    ) -> None:
        missing: list[str] = []
        eid = str(ev.event_id)
        with self.store.session() as s:
            have = {n for (n,) in s.execute(select(Media.name).where(Media.event_id == eid))}
            for m in ev.media:
                if m.name in have:
                    continue
                path = self._media_path(eid, m.name)
                if self._media_matches(path, m):
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
        self._send_ack(
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

    def _send_ack(self, topic: P.Topic, ack: P.Ack, acks: list[tuple[P.Topic, P.Ack]] | None = None) -> None:
        if acks is not None:
            acks.append((topic, ack))
        else:
            self._send_acks([(topic, ack)])

    def _send_acks(self, acks: Sequence[tuple[P.Topic, P.Ack]]) -> None:
        """Publish acks, one message per device (in order; at most ``ACK_BATCH_MAX`` acks per message)."""
        per_device: dict[tuple[str, str], list[P.Ack]] = {}
        for topic, ack in acks:
            per_device.setdefault((topic.site, topic.device), []).append(ack)
        for (site, device), these in per_device.items():
            for i in range(0, len(these), P.ACK_BATCH_MAX):
                self._publish(
                    P.ack_topic(self.prefix, site, device), P.encode_acks(these[i : i + P.ACK_BATCH_MAX])
                )
        with self._lock:
            self.stats.acks_sent += len(acks)

    def _grace_loop(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            with self._lock:
                late = [w for w in self._waiting.values() if now - w.since > self.media_grace_s]
            for w in late:
                try:
                    self._link_media_and_ack(w.topic, w.event, final=True)
                except Exception as e:  # noqa: BLE001
                    log(
                        logger,
                        "late_ack_failed",
                        logging.ERROR,
                        event_id=str(w.event.event_id),
                        error=str(e)[:200],
                    )
            self.assembler.expire()
            if time.monotonic() - self._last_gallery_check > 10:
                self._last_gallery_check = time.monotonic()
                try:
                    self.refresh_identity()
                    if self.connected:
                        self.desk.publish_pending(older_than_s=5.0)
                except Exception as e:  # noqa: BLE001 - keep serving with the old gallery
                    log(logger, "periodic_check_failed", logging.ERROR, error=str(e)[:200])

    def _signature(self) -> tuple[int, int]:
        """Changes when persons are enrolled or unknown files merged (by ``anqi-central enrol`` elsewhere)."""
        from sqlalchemy import func

        with self.store.session() as s:
            g = s.scalar(select(func.max(Embedding.id)).where(Embedding.source == "gallery")) or 0
            m = s.scalar(select(func.count()).select_from(Person).where(Person.merged_into.is_not(None))) or 0
        return int(g), int(m)

    def refresh_identity(self) -> bool:
        """Reload gallery and unknown files from the store if another process changed them."""
        sig = self._signature()
        if sig == self._gallery_signature:
            return False
        fresh = load_resolver(self.store, self.cfg)
        with self.resolver._lock:  # noqa: SLF001
            self.resolver.gallery, self.resolver.unknown = fresh.gallery, fresh.unknown
        self._gallery_signature = sig
        log(
            logger,
            "identity_reloaded",
            gallery_persons=len(fresh.gallery.persons),
            unknown_files=len(fresh.unknown),
        )
        return True

    def _stored_event(self, event_id: uuid.UUID) -> ViolationEvent | None:
        from central_sync.storage.models import Event

        with self.store.session() as s:
            e = s.get(Event, str(event_id))
            if e is None:
                return None
            try:
                return ViolationEvent.model_validate(e.body)
            except Exception:  # noqa: BLE001 - a body stored by an older schema
                return None

    # ------------------------------------------------------------------ tiers
    def reassess(self, person_id: str, at: datetime, event_id: str | None = None) -> TierAssessment | None:
        """Table 1 for the person at ``at``; a tier change is recorded and its tasks published."""
        before = self.desk.changes
        a, _ = self.desk.reassess(person_id, at, event_id)
        self.stats.tier_changes += self.desk.changes - before
        if a is not None:
            self.stats.last_assessment[person_id] = a.tier.value
        return a

    def reassess_many(self, items: Sequence[tuple[str, datetime, str | None]]) -> None:
        """:meth:`reassess` for the persons of one stored batch ``(person_id, at, event_id)``; a failure is logged
        (the daily re-evaluation catches up) and does not keep the others from being assessed."""
        before = self.desk.changes
        try:
            res = self.desk.reassess_many(items)
        except Exception as e:  # noqa: BLE001 - one by one, so that one person cannot hold back the others
            log(
                logger,
                "reassess_failed",
                logging.WARNING,
                persons=len(items),
                error=f"{type(e).__name__}: {str(e)[:300]}",
                action="one by one",
            )
            for pid, at, eid in items:
                try:
                    self.reassess(pid, at, eid)
                except Exception as e1:  # noqa: BLE001
                    self._count_error()
                    log(
                        logger,
                        "reassess_failed",
                        logging.ERROR,
                        person=pid,
                        error=f"{type(e1).__name__}: {str(e1)[:300]}",
                    )
            return
        self.stats.tier_changes += self.desk.changes - before
        for pid, a in res.items():
            if a is not None:
                self.stats.last_assessment[pid] = a.tier.value


def reevaluate_all(
    store: CentralStore, cfg: CentralConfig, desk: DispositionDesk, at: datetime, write: bool = True
) -> dict[str, int]:
    """The daily pass: re-assess everyone who may hold a tier at ``at`` (windows slide without events).
    ``write=False`` is a dry run: the tiers at ``at`` and how many would change, nothing stored, no task."""
    from datetime import timedelta

    from central_sync.storage.models import Person

    counts: dict[str, int] = {}
    before = desk.changes
    would = 0
    for pid in store.persons_active_since(at - timedelta(days=cfg.tiers.repeat_window_days), at):
        if write:
            a, _ = desk.reassess(pid, at)
        else:
            with store.session() as s:
                stored = s.scalar(select(Person.tier).where(Person.person_id == pid))
                a = None if stored is None else store.assess_person(pid, at, cfg.tiers, s)
            would += a is not None and a.tier.value != stored
        if a is not None:
            counts[a.tier.value] = counts.get(a.tier.value, 0) + 1
    counts["changed"] = desk.changes - before if write else 0
    if not write:
        counts["would_change"] = would
    log(logger, "reevaluated", at=at.isoformat(), write=write, **counts)
    return counts


def _event_id_of(payload: bytes) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(json.loads(payload)["event_id"]))
    except (ValueError, KeyError, TypeError):
        return None
