"""The central MQTT consumer: edge events in, stored once, acknowledged, identified, tiered.

Subscriptions (``mqtt.topic_prefix`` = ``anqi/v1``, wire format from :mod:`edge.relay.protocol`):

* ``$share/<group>/anqi/v1/+/+/event`` (MQTT 5 shared subscription: consumers of one group split
  the events between them);
* ``anqi/v1/+/+/media/#`` *not* shared: the chunks of one file must all reach the consumer that
  reassembles them, and the event may land on any consumer of the group; every consumer therefore
  reassembles all media (verified SHA-256 per chunk and per file, :class:`protocol.MediaAssembler`)
  into the shared ``media.dir`` (atomic rename, so two consumers writing the same file is harmless);
* ``$share/<group>/anqi/v1/central/feedback``: outcomes of disposition tasks.

Per event: parse (unknown ``schema_version`` -> log line + ``rejected`` ack), check the device
id against the topic, resolve the face (gallery, else a provisional unknown file), store
idempotently on ``event_id``, link the verified media named in the event, publish ``.../ack``
(``stored`` + ``media_complete``; when media are missing it waits ``media.grace_s`` for them,
then acks with ``missing_media`` so the edge re-sends them), then re-assess the person's tier and
hand a change to :class:`~central_sync.dispositions.DispositionDesk`.

:class:`CentralConsumer` runs in-process (tests, benchmarks) or under ``anqi-central run``.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
import uuid
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

from central_sync.config import CentralConfig, read_secret
from central_sync.dispositions import DispositionDesk
from central_sync.identity import IdentityResolver, Match, to_blob
from central_sync.persons import catch_up_unknown_files, load_resolver
from central_sync.storage.models import Embedding, Media, Person, utcnow
from central_sync.storage.store import CentralStore, ViolationRecord
from central_sync.tiers import TierAssessment
from edge.event import UnsupportedSchemaVersion, ViolationEvent
from edge.logs import log
from edge.relay import protocol as P

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


class CentralConsumer:
    """MQTT consumer + the store + identity + dispositions; ``start()`` / ``stop()``."""

    def __init__(self, cfg: CentralConfig, store: CentralStore | None = None, resolver: IdentityResolver | None = None,
                 media_grace_s: float = 5.0, clock: Any = None):
        self.cfg = cfg
        self.store = store or CentralStore.from_config(cfg)
        self.resolver = resolver or load_resolver(self.store, cfg)
        self.prefix = cfg.mqtt.topic_prefix.strip("/")
        self.media_dir = cfg.resolve(cfg.media.dir)
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self.media_grace_s = media_grace_s
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.stats = ConsumerStats()
        self.assembler = P.MediaAssembler(max_bytes=int(cfg.media.max_event_media_mb * 4) << 20, max_idle_s=cfg.media.assembly_timeout_s)
        self.desk = DispositionDesk(cfg, self.store, publish=self._publish)
        self._lock = threading.RLock()
        self._waiting: dict[uuid.UUID, _Waiting] = {}
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._grace_thread: threading.Thread | None = None
        self._sub_mid = -1
        self._stored_cv = threading.Condition()
        self._gallery_signature = self._signature()
        self._last_gallery_check = time.monotonic()
        self.client = self._make_client()

    @classmethod
    def for_broker(cls, host: str, port: int, workdir: Path, db_url: str | None = None, prefix: str = "anqi/v1",
                   media_grace_s: float = 5.0, **sections: Any) -> "CentralConsumer":
        """A consumer for tests and benchmarks: SQLite (or ``db_url``) and media under ``workdir``."""
        from central_sync.config import parse_config

        workdir.mkdir(parents=True, exist_ok=True)
        cfg = parse_config({"database": {"url": db_url or f"sqlite:///{workdir / 'central.db'}"},
                            "mqtt": {"host": host, "port": port, "topic_prefix": prefix, "client_id": f"anqi-central-{uuid.uuid4().hex[:8]}"},
                            "media": {"dir": str(workdir / "media")}, **sections}, "<in-process>", workdir)
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
            c.username_pw_set(m.username, read_secret(m.password_env, "mqtt.password_env") if m.password_env else None)
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

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        failed = [str(rc) for rc in rcs if rc.is_failure]
        if failed:
            log(logger, "subscribe_refused", logging.ERROR, reasons=",".join(failed), hint="check the broker ACL for the consumer user")
        if mid == self._sub_mid:
            self._connected.set()  # subscribed: from now on nothing published is missed

    def subscriptions(self) -> list[tuple[str, int]]:
        g, q = self.cfg.mqtt.share_group, self.cfg.mqtt.qos
        f = P.central_filters(self.prefix)
        return [(P.shared_subscription(g, f[P.TopicKind.event]), q), (f[P.TopicKind.media], q),
                (P.shared_subscription(g, self.desk.feedback_topic), q)]

    def start(self, timeout: float = 15.0) -> "CentralConsumer":
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7 * 24 * 3600  # queued events survive a consumer restart
        self._stop.clear()
        self.client.connect_async(self.cfg.mqtt.host, self.cfg.mqtt.port, self.cfg.mqtt.keepalive_s, clean_start=False, properties=props)
        self.client.loop_start()
        self.desk.start()
        self._grace_thread = threading.Thread(target=self._grace_loop, name="anqi-central-grace", daemon=True)
        self._grace_thread.start()
        if not self._connected.wait(timeout):
            log(logger, "consumer_not_connected", logging.WARNING, host=self.cfg.mqtt.host, port=self.cfg.mqtt.port,
                hint="keeps retrying; check mqtt.host / port / credentials")
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
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
        log(logger, "consumer_connected", host=self.cfg.mqtt.host, port=self.cfg.mqtt.port,
            session_present=bool(getattr(flags, "session_present", False)), group=self.cfg.mqtt.share_group)
        try:
            n = self.desk.publish_pending()
            if n:
                log(logger, "tasks_republished", count=n)
        except Exception as e:  # noqa: BLE001 - a database hiccup must not kill the network thread
            log(logger, "tasks_republish_failed", logging.ERROR, error=str(e)[:200])

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log(logger, "consumer_disconnected", logging.WARNING, reason=str(rc))

    def _publish(self, topic: str, payload: bytes) -> bool:
        info = self.client.publish(topic, payload, qos=1)
        return info.rc == paho.MQTT_ERR_SUCCESS

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            self.handle(msg.topic, bytes(msg.payload))
        except Exception as e:  # noqa: BLE001 - never let one message stop the consumer
            self.stats.errors += 1
            log(logger, "message_failed", logging.ERROR, topic=msg.topic, error=f"{type(e).__name__}: {str(e)[:300]}")

    # ------------------------------------------------------------------ handling (usable without MQTT)
    def handle(self, topic_s: str, payload: bytes) -> None:
        if topic_s == self.desk.feedback_topic:
            self._on_feedback(payload)
            return
        try:
            topic = P.parse_topic(topic_s, self.prefix)
        except P.ProtocolError as e:
            log(logger, "foreign_topic", logging.WARNING, error=str(e)[:200])
            return
        if topic.kind is P.TopicKind.media:
            self._on_media(topic, payload)
        elif topic.kind is P.TopicKind.event:
            self._on_event(topic, payload)

    def _on_feedback(self, payload: bytes) -> None:
        try:
            if self.desk.record_feedback(payload):
                self.stats.feedback += 1
        except ValueError as e:
            log(logger, "feedback_rejected", logging.WARNING, error=str(e)[:300])

    def _on_media(self, topic: P.Topic, payload: bytes) -> None:
        try:
            chunk = P.decode_chunk(payload, topic)
            if chunk.header.size > self.cfg.media.max_event_media_mb * (1 << 20):
                raise P.ProtocolError(f"media {chunk.header.name} of {chunk.header.size} bytes exceeds media.max_event_media_mb")
            done = self.assembler.add(chunk)
        except P.ProtocolError as e:
            self.stats.corrupt_chunks += 1
            log(logger, "media_chunk_rejected", logging.WARNING, event_id=str(topic.event_id), name=topic.name, device=topic.device,
                error=str(e)[:300])
            return
        if done is None:
            return
        path = self._media_path(done.event_id, done.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(done.data)
        os.replace(tmp, path)
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

    def _on_event(self, topic: P.Topic, payload: bytes) -> None:
        self.stats.events_received += 1
        try:
            ev = P.decode_event(payload)
        except (P.ProtocolError, UnsupportedSchemaVersion) as e:
            self._reject(topic, payload, str(e))
            return
        if ev.device_id != topic.device or ev.site_id != topic.site:
            self._reject(topic, payload, f"event of device {ev.device_id}/{ev.site_id} published on {topic.site}/{topic.device}")
            return
        eid = str(ev.event_id)
        if self.store.event_exists(eid):
            self.stats.duplicates += 1
            log(logger, "event_duplicate", event_id=eid, device=topic.device)
            self._link_media_and_ack(topic, ev, final=False)
            return
        match = self._identify(ev)
        with self.store.session() as s:
            if match is not None and match.person_id is None:
                # nobody known: under the group-wide lock (PostgreSQL; held until this transaction commits), pick up
                # the files other consumers opened, then join one or open a new one: one rider, one file
                self.store.lock_new_person_files(s)
                catch_up_unknown_files(self.store, self.resolver)
                match = self.resolver.resolve(ev.face.embedding or [])
            if match is not None and match.person_id and not match.new_file:
                merged_into = self.store.merged_into(match.person_id, s)
                if merged_into:  # a stale unknown file: follow the merge
                    match = Match(merged_into, match.score)
            rec = ViolationRecord(
                event_id=eid, violation_type=ev.violation_type.value, time=ev.time, person_id=match.person_id if match else None,
                point_id=ev.point_id, device_id=ev.device_id, site_id=ev.site_id, schema_version=ev.schema_version,
                confidence=ev.confidence, face_found=ev.face.found, match_score=match.score if match else None,
                media_expected=len(ev.media), body=json.loads(ev.model_dump_json(exclude={"face": {"embedding"}})))
            if match is not None and match.person_id and match.new_file:  # existing files have their row already
                self.store.ensure_person(s, match.person_id, kind="unknown")
            new = self.store.add_violation(rec, s, person_exists=match is not None)
            if new and match is not None and match.person_id and ev.face.embedding:
                self.store.add_embedding(s, match.person_id, "event", ev.face.embedding_model or self.cfg.identity.embedding_model,
                                         to_blob(np.asarray(ev.face.embedding, dtype=np.float32)), eid)
        if not new:  # another consumer stored it between our check and our insert
            self.stats.duplicates += 1
            self._link_media_and_ack(topic, ev, final=False)
            return
        with self._stored_cv:
            self.stats.events_stored += 1
            self._stored_cv.notify_all()
        log(logger, "event_stored", device=topic.device, person=rec.person_id or "-",
            score=None if match is None else round(match.score, 3), **ev.log_fields())
        self._link_media_and_ack(topic, ev, final=False)
        if rec.person_id:
            self.reassess(rec.person_id, max(self.clock(), ev.time), event_id=eid)

    def _identify(self, ev: ViolationEvent) -> Match | None:
        f = ev.face
        if not f.found or not f.embedding:
            return None
        want = self.cfg.identity.embedding_model.lower()
        if f.embedding_model and not f.embedding_model.lower().startswith(want):
            log(logger, "embedding_model_mismatch", logging.WARNING, event_id=str(ev.event_id), model=f.embedding_model, expected=want)
            return None
        if f.quality is not None and f.quality < self.cfg.identity.min_quality:
            return None
        try:
            return self.resolver.resolve(f.embedding, open_file=False)  # Match(None, ...) when a new file is needed
        except ValueError as e:
            log(logger, "embedding_unusable", logging.WARNING, event_id=str(ev.event_id), error=str(e))
            return None

    def _reject(self, topic: P.Topic, payload: bytes, reason: str) -> None:
        self.stats.rejected += 1
        eid = _event_id_of(payload)
        log(logger, "event_rejected", logging.WARNING, device=topic.device, site=topic.site,
            event_id=str(eid) if eid else "-", reason=reason[:300])
        if eid is not None:
            self._send_ack(topic, P.Ack(event_id=eid, status="rejected", reason=reason[:200]))

    def _link_media_and_ack(self, topic: P.Topic, ev: ViolationEvent, final: bool) -> None:
        """Record verified media files of a stored event; ack when complete (or when the grace ran out)."""
        missing: list[str] = []
        eid = str(ev.event_id)
        if not ev.media:
            self._send_ack(topic, P.Ack(event_id=ev.event_id, status="stored", media_complete=True))
            return
        with self.store.session() as s:
            have = {n for (n,) in s.execute(select(Media.name).where(Media.event_id == eid))}
            for m in ev.media:
                if m.name in have:
                    continue
                path = self._media_path(eid, m.name)
                if path.is_file() and P.sha256_file(path) == m.sha256:
                    s.add(Media(event_id=eid, name=m.name, kind=m.kind, content_type=m.content_type, size=m.size,
                                sha256=m.sha256, path=str(path), stored_at=utcnow()))
                else:
                    missing.append(m.name)
        with self._lock:
            if missing and not final:
                self._waiting.setdefault(ev.event_id, _Waiting(topic, ev, time.monotonic()))
                return
            self._waiting.pop(ev.event_id, None)
        self._send_ack(topic, P.Ack(event_id=ev.event_id, status="stored", media_complete=not missing, missing_media=missing,
                                    reason="media missing or corrupt; re-send" if missing else None))

    def _send_ack(self, topic: P.Topic, ack: P.Ack) -> None:
        self._publish(P.ack_topic(self.prefix, topic.site, topic.device), P.encode_ack(ack))
        self.stats.acks_sent += 1

    def _grace_loop(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            with self._lock:
                late = [w for w in self._waiting.values() if now - w.since > self.media_grace_s]
            for w in late:
                try:
                    self._link_media_and_ack(w.topic, w.event, final=True)
                except Exception as e:  # noqa: BLE001
                    log(logger, "late_ack_failed", logging.ERROR, event_id=str(w.event.event_id), error=str(e)[:200])
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
        log(logger, "identity_reloaded", gallery_persons=len(fresh.gallery.persons), unknown_files=len(fresh.unknown))
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


def reevaluate_all(store: CentralStore, cfg: CentralConfig, desk: DispositionDesk, at: datetime) -> dict[str, int]:
    """The daily pass: re-assess everyone who may hold a tier at ``at`` (windows slide without events)."""
    from datetime import timedelta

    counts: dict[str, int] = {}
    before = desk.changes
    for pid in store.persons_active_since(at - timedelta(days=cfg.tiers.repeat_window_days), at):
        a, _ = desk.reassess(pid, at)
        if a is not None:
            counts[a.tier.value] = counts.get(a.tier.value, 0) + 1
    counts["changed"] = desk.changes - before
    log(logger, "reevaluated", at=at.isoformat(), **counts)
    return counts


def _event_id_of(payload: bytes) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(json.loads(payload)["event_id"]))
    except (ValueError, KeyError, TypeError):
        return None
