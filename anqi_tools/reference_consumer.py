"""A minimal central-side consumer of the wire protocol, built only on :mod:`anqi_contract.protocol`.

It is the executable statement of the ack contract the edge relies on (``central_sync`` is the
production consumer): subscribe with a persistent session, verify and reassemble media, store each
event once (idempotent on ``event_id``), then publish ``.../ack`` with ``stored`` and
``media_complete`` (or ``missing_media`` after a grace period), or ``rejected`` with a reason.
Used by the relay tests and ``benchmarks/soak_relay.py``; keeps everything in memory.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from anqi_contract import protocol as P
from anqi_contract.event import UnsupportedSchemaVersion, ViolationEvent
from anqi_contract.logs import log

logger = logging.getLogger("anqi.relay.consumer")


@dataclass
class StoredEvent:
    event: ViolationEvent
    topic: P.Topic
    deliveries: int = 1
    media: dict[str, bytes] = field(default_factory=dict)
    acked: bool = False


class ReferenceConsumer:
    """Consumes every device under ``prefix``; ``events`` holds each event once, in arrival order."""

    def __init__(
        self,
        host: str,
        port: int,
        prefix: str = "anqi/v1",
        client_id: str = "anqi-central-ref",
        username: str | None = None,
        password: str | None = None,
        tls: Any = None,
        media_grace_s: float = 5.0,
        ack: bool = True,
    ):
        self.host, self.port, self.prefix = host, port, prefix
        self.media_grace_s = media_grace_s
        self.ack_enabled = ack
        self.events: dict[uuid.UUID, StoredEvent] = {}
        self.order: list[uuid.UUID] = []
        self.deliveries = 0
        self.duplicates = 0
        self.rejected: list[str] = []
        self.corrupt_chunks = 0
        self.statuses: dict[str, str] = {}
        self.heartbeats: list[P.Heartbeat] = []
        self._assembler = P.MediaAssembler()
        self._media: dict[uuid.UUID, dict[str, bytes]] = {}
        self._waiting: dict[uuid.UUID, float] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connected = threading.Event()
        self._stop = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self._connected.clear()
        self.client.on_message = self._on_message
        self._grace_thread = threading.Thread(target=self._grace_loop, daemon=True, name="ref-consumer-grace")

    def start(self, timeout: float = 10.0) -> ReferenceConsumer:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(self.host, self.port, 30, clean_start=False, properties=props)
        self.client.loop_start()
        self._grace_thread.start()
        if not self._connected.wait(timeout):
            raise TimeoutError(f"reference consumer could not connect to {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log(logger, "consumer_connect_refused", logging.ERROR, reason=str(rc))
            return
        client.subscribe([(f, 1) for f in P.central_filters(self.prefix).values()])
        self._connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = P.parse_topic(msg.topic, self.prefix)
        except P.ProtocolError as e:
            log(logger, "consumer_foreign_topic", logging.WARNING, error=str(e)[:200])
            return
        if topic.kind is P.TopicKind.media:
            try:
                done = self._assembler.add_payload(topic, bytes(msg.payload), self.prefix)
            except P.ProtocolError:
                self.corrupt_chunks += 1
                return
            if done is not None:
                with self._lock:
                    self._media.setdefault(done.event_id, {})[done.name] = done.data
                self._try_ack(done.event_id)
        elif topic.kind is P.TopicKind.event:
            self._on_event(topic, bytes(msg.payload))
        elif topic.kind is P.TopicKind.status:
            try:
                self.statuses[topic.device] = P.decode_status(bytes(msg.payload)).state
            except P.ProtocolError:
                pass
        elif topic.kind is P.TopicKind.heartbeat:
            try:
                self.heartbeats.append(P.decode_heartbeat(bytes(msg.payload)))
            except P.ProtocolError:
                pass

    def _on_event(self, topic: P.Topic, payload: bytes) -> None:
        try:
            ev = P.decode_event(payload)
        except (P.ProtocolError, UnsupportedSchemaVersion) as e:
            log(logger, "consumer_event_rejected", logging.WARNING, error=str(e)[:200])
            eid = _event_id_of(payload)
            self.rejected.append(str(e))
            if eid is not None:
                self.publish_ack(topic, P.Ack(event_id=eid, status="rejected", reason=str(e)[:200]))
            return
        if ev.device_id != topic.device:
            self.rejected.append(f"device_id {ev.device_id} published on {topic}")
            self.publish_ack(
                topic, P.Ack(event_id=ev.event_id, status="rejected", reason="device_id does not match topic")
            )
            return
        with self._changed:
            self.deliveries += 1
            stored = self.events.get(ev.event_id)
            if stored is not None:
                self.duplicates += 1
                stored.deliveries += 1
            else:
                self.events[ev.event_id] = StoredEvent(ev, topic)
                self.order.append(ev.event_id)
            self._waiting.setdefault(ev.event_id, time.monotonic())
            self._changed.notify_all()
        self._try_ack(ev.event_id)

    def _try_ack(self, eid: uuid.UUID, give_up: bool = False) -> None:
        with self._lock:
            stored = self.events.get(eid)
            if stored is None or eid not in self._waiting:
                return
            have = self._media.get(eid, {})
            missing = [m.name for m in stored.event.media if m.name not in have]
            if missing and not give_up:
                return
            del self._waiting[eid]
            stored.media.update(have)
            stored.acked = True
        self.publish_ack(
            stored.topic,
            P.Ack(event_id=eid, status="stored", media_complete=not missing, missing_media=missing),
        )

    def publish_ack(self, topic: P.Topic, ack: P.Ack) -> None:
        if self.ack_enabled:
            self.client.publish(P.ack_topic(self.prefix, topic.site, topic.device), P.encode_ack(ack), qos=1)

    def _grace_loop(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            with self._lock:
                late = [e for e, t in self._waiting.items() if now - t > self.media_grace_s]
            for eid in late:
                self._try_ack(eid, give_up=True)

    def wait_for(self, n_events: int, timeout: float) -> bool:
        """Block until ``n_events`` distinct events were stored."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.events) >= n_events, timeout)


def _event_id_of(payload: bytes) -> uuid.UUID | None:
    import json

    try:
        return uuid.UUID(str(json.loads(payload)["event_id"]))
    except (ValueError, KeyError, TypeError):
        return None
