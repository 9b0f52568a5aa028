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

:class:`CentralConsumer` runs in-process (tests, benchmarks) or under ``anqi-central run``. It only wires the
parts of :mod:`central_sync.ingest` (session, admission, media, acks, faces, writer, reassessment) and runs the
grace loop (late acks, stale assemblies, gallery reload, tasks not yet confirmed).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from anqi_contract import protocol as P
from anqi_contract.event import ViolationEvent
from anqi_contract.logs import log
from anqi_contract.sealed import KeyRing
from central_sync.config import CentralConfig, load_keyring
from central_sync.dispositions import DispositionDesk
from central_sync.identity import IdentityResolver
from central_sync.ingest.acks import Acknowledger
from central_sync.ingest.admission import EventAdmission
from central_sync.ingest.faces import FaceIdentifier
from central_sync.ingest.media import MediaFiles, MediaReceiver
from central_sync.ingest.reassess import TierReassessor, reevaluate_all
from central_sync.ingest.registry import DeviceRegistry
from central_sync.ingest.session import MqttSession
from central_sync.ingest.stats import ConsumerStats
from central_sync.ingest.writer import BatchQueue, EventWriter
from central_sync.persons import load_resolver
from central_sync.storage.store import CentralStore
from central_sync.tiers import TierAssessment

__all__ = ["CentralConsumer", "ConsumerStats", "reevaluate_all"]

logger = logging.getLogger("anqi.central.consumer")


class CentralConsumer:
    """MQTT consumer + the store + identity + dispositions; ``start()`` / ``stop()``."""

    def __init__(
        self,
        cfg: CentralConfig,
        store: CentralStore | None = None,
        resolver: IdentityResolver | None = None,
        media_grace_s: float = 5.0,
        clock: Callable[[], datetime] | None = None,
        keyring: KeyRing | None = None,
    ):
        self.cfg = cfg
        #: central's private keys for evidence sealed on the devices (sealing.key_ids; never in the YAML)
        self.keyring = keyring if keyring is not None else load_keyring(cfg)
        self.store = store or CentralStore.from_config(cfg)
        self.prefix = cfg.mqtt.topic_prefix.strip("/")
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.stats = ConsumerStats()
        self._stop = threading.Event()
        self._grace_thread: threading.Thread | None = None
        self._last_gallery_check = time.monotonic()

        self.session = MqttSession(
            cfg.mqtt, cfg.resolve, self.subscriptions, self._on_message, self._on_connected, self._stop
        )
        self.desk = DispositionDesk(cfg, self.store, publish=self.session.publish)
        registry = DeviceRegistry(cfg.devices)
        self.files = MediaFiles(cfg.resolve(cfg.media.dir))
        self.media = MediaReceiver(
            cfg.media, self.files, registry, self.keyring, cfg.sealing.require_sealed, self.stats
        )
        self.acks = Acknowledger(
            self.prefix, self.session.publish, self.store, self.files, self.stats, media_grace_s
        )
        self.admission = EventAdmission(
            registry, self.keyring, cfg.sealing.require_sealed, self.acks, self.stats
        )
        self.faces = FaceIdentifier(
            cfg.identity,
            self.store,
            resolver or load_resolver(self.store, cfg),
            lambda: load_resolver(self.store, cfg),
        )
        self.reassessor = TierReassessor(self.desk, self.stats)
        self.writer = EventWriter(
            self.store,
            self.faces,
            self.acks,
            self.reassessor,
            self.stats,
            cfg.identity.embedding_model,
            self.clock,
        )
        self.batches = BatchQueue(cfg.ingest, self.writer.store_events, self.stats)

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

    # ------------------------------------------------------------------ what the wired parts expose
    @property
    def resolver(self) -> IdentityResolver:
        return self.faces.resolver

    @property
    def media_dir(self) -> Path:
        return self.files.root

    @property
    def connected(self) -> bool:
        return self.session.connected

    def wait_stored(self, n_events: int, timeout: float) -> bool:
        """Block until ``n_events`` distinct events were stored by this consumer."""
        return self.stats.wait_stored(n_events, timeout)

    def subscriptions(self) -> list[tuple[str, int]]:
        g, q = self.cfg.mqtt.share_group, self.cfg.mqtt.qos
        f = P.central_filters(self.prefix)
        return [
            (P.shared_subscription(g, f[P.TopicKind.event]), q),
            (f[P.TopicKind.media], q),
            (P.shared_subscription(g, self.desk.feedback_topic), q),
        ]

    def refresh_identity(self) -> bool:
        """Reload gallery and unknown files from the store if another process changed them."""
        return self.faces.refresh()

    def reassess(self, person_id: str, at: datetime, event_id: str | None = None) -> TierAssessment | None:
        """Table 1 for the person at ``at``; a tier change is recorded and its tasks published."""
        return self.reassessor.reassess(person_id, at, event_id)

    def reassess_many(self, items: Sequence[tuple[str, datetime, str | None]]) -> None:
        """:meth:`reassess` for the persons of one stored batch ``(person_id, at, event_id)``."""
        self.reassessor.reassess_many(items)

    # ------------------------------------------------------------------ life cycle
    def start(self, timeout: float = 15.0) -> CentralConsumer:
        if not self.cfg.devices:
            log(logger, "device_registry_empty", logging.WARNING, hint="events from any device are accepted")
        self._stop.clear()
        self.batches.start()
        self.session.connect()
        self.desk.start()
        self._grace_thread = threading.Thread(target=self._grace_loop, name="anqi-central-grace", daemon=True)
        self._grace_thread.start()
        self.session.wait_connected(timeout)
        return self

    def stop(self) -> None:
        """Store and ack every event already taken from the broker, then disconnect."""
        self._stop.set()
        self.batches.stop()  # from here on, a late message is stored on the network thread itself
        self.session.close()
        self.batches.drain()  # put on the queue while the writer was ending: stored, acked at the next delivery
        if self._grace_thread is not None:
            self._grace_thread.join(timeout=5)
        self.desk.stop()

    def _on_connected(self) -> None:
        try:
            n = self.desk.publish_pending()
            if n:
                log(logger, "tasks_republished", count=n)
        except Exception as e:  # noqa: BLE001 - a database hiccup must not kill the network thread
            log(logger, "tasks_republish_failed", logging.ERROR, error=str(e)[:200])

    def _grace_loop(self) -> None:
        while not self._stop.wait(0.5):
            self.acks.ack_late()
            self.media.expire()
            if time.monotonic() - self._last_gallery_check > 10:
                self._last_gallery_check = time.monotonic()
                try:
                    self.refresh_identity()
                    if self.connected:
                        self.desk.publish_pending(older_than_s=5.0)
                except Exception as e:  # noqa: BLE001 - keep serving with the old gallery
                    log(logger, "periodic_check_failed", logging.ERROR, error=str(e)[:200])

    # ------------------------------------------------------------------ messages
    def _on_message(self, topic_s: str, payload: bytes) -> None:
        """The network thread: an event is decoded here (a reject answered at once) and queued for the writer."""
        try:
            topic = self._topic(topic_s)
            if topic is not None and topic.kind is P.TopicKind.event:
                ev = self.admission.decode(topic, payload)
                if ev is not None:
                    self.batches.enqueue(topic, ev)  # stored and acked by the writer thread
            else:
                self.handle(topic_s, payload)
        except Exception as e:  # noqa: BLE001 - never let one message stop the consumer
            self.stats.count_error()
            log(
                logger,
                "message_failed",
                logging.ERROR,
                topic=topic_s,
                error=f"{type(e).__name__}: {str(e)[:300]}",
            )

    def _topic(self, topic_s: str) -> P.Topic | None:
        if topic_s == self.desk.feedback_topic:
            return None
        try:
            return P.parse_topic(topic_s, self.prefix)
        except P.ProtocolError:
            return None

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
                done = self.media.receive(topic, payload)
                if done is not None:
                    self.acks.media_arrived(topic, done)
            elif topic.kind is P.TopicKind.event:
                ev = self.admission.decode(topic, payload)
                if ev is not None:
                    events.append((topic, ev))
        if events:
            self.writer.store_events(events)

    def _on_feedback(self, payload: bytes) -> None:
        try:
            if self.desk.record_feedback(payload):
                self.stats.feedback += 1
        except ValueError as e:
            log(logger, "feedback_rejected", logging.WARNING, error=str(e)[:300])
