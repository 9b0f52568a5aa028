"""MqttRelay against real mosquitto processes: order, outages, restarts, acks, health."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mqtt_helpers import wait_for as _wait

from anqi_contract import protocol as P
from anqi_contract.localbroker import LocalBroker
from anqi_tools.reference_consumer import ReferenceConsumer
from edge.config import EdgeConfig
from edge.health import Health
from edge.relay import EventState, MqttRelay, Outbox, RelayConfigError, connect_or_start_local

ROOT = Path(__file__).resolve().parents[2]


def _setup(
    tmp_path: Path, port: int, relay_config: Callable[..., EdgeConfig], **kw: Any
) -> tuple[EdgeConfig, Outbox, Health]:
    cfg = relay_config(tmp_path, port, **kw)
    health = Health(tmp_path / "health.json", cfg.device.device_id)
    return cfg, Outbox.for_config(cfg.relay.outbox, cfg.data_dir, health), health


def test_events_reach_consumer_in_order_with_verified_media_and_are_acked(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any
) -> None:
    cfg, outbox, health = _setup(tmp_path, broker.port, relay_config, media_chunk_kb=4)
    consumer = ReferenceConsumer("127.0.0.1", broker.port).start()
    sent = []
    for i in range(15):
        ev, files = make_event(tmp_path, i, {"face.jpg": 3000, "clip.mp4": 20_000})  # clip: 5 chunks of 4 KiB
        outbox.add(ev, files)
        sent.append(ev)
    relay = MqttRelay(cfg.relay, cfg.device, outbox, health).start()
    try:
        assert relay.wait_drained(20), outbox.stats()
        assert consumer.order == [e.event_id for e in sent]
        for ev in sent:
            stored = consumer.events[ev.event_id]
            assert stored.event == ev
            for ref in ev.media:
                assert len(stored.media[ref.name]) == ref.size
            assert outbox.state_of(ev.event_id) is EventState.acked
        assert consumer.corrupt_chunks == 0
        _wait(lambda: consumer.statuses.get(cfg.device.device_id) == "online", 5)
        assert consumer.statuses[cfg.device.device_id] == "online"
        assert _wait(lambda: bool(consumer.heartbeats), 5)
        hb = consumer.heartbeats[-1]
        assert hb.device_id == cfg.device.device_id and hb.queue_depth >= 0
        _wait(lambda: health.snapshot()["components"]["relay"].get("queue_depth") == 0, 3)
        comp = health.snapshot()["components"]["relay"]
        assert comp["status"] == "up" and comp["connected"] is True and comp["queue_depth"] == 0
    finally:
        relay.stop()
    assert _wait(lambda: consumer.statuses.get(cfg.device.device_id) == "offline", 5)
    consumer.stop()


def test_events_added_while_broker_is_down_are_all_delivered_in_order_after_it_returns(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any
) -> None:
    cfg, outbox, health = _setup(tmp_path, broker.port, relay_config)
    consumer = ReferenceConsumer("127.0.0.1", broker.port).start()
    relay = MqttRelay(cfg.relay, cfg.device, outbox, health).start()
    try:
        assert relay.wait_connected(10)
        first = [make_event(tmp_path, i) for i in range(5)]
        for ev, f in first:
            outbox.add(ev, f)
        assert relay.wait_drained(15)
        broker.stop()  # graceful: the consumer's persistent session is saved
        assert _wait(lambda: not relay.connected, 10)
        assert _wait(lambda: health.snapshot()["components"]["relay"]["status"] == "down", 5)
        during = [make_event(tmp_path, 5 + i) for i in range(20)]
        for ev, f in during:
            outbox.add(ev, f)
        time.sleep(0.5)
        assert outbox.stats().pending == 20
        assert health.snapshot()["components"]["relay"]["queue_depth"] >= 20 or _wait(
            lambda: health.snapshot()["components"]["relay"]["queue_depth"] >= 20, 3
        )
        broker.start()
        assert relay.wait_drained(30), outbox.stats()
        assert consumer.order == [e.event_id for e, _ in first + during]
    finally:
        relay.stop()
        consumer.stop()


def test_stored_ack_without_media_complete_makes_the_edge_resend_the_missing_media(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any
) -> None:
    """Central acks 'stored' but lacks face.jpg: the edge re-sends it, and acks complete next time."""
    cfg, outbox, health = _setup(tmp_path, broker.port, relay_config)
    ev, files = make_event(tmp_path, 0, {"face.jpg": 1000, "ctx.jpg": 500})
    outbox.add(ev, files)
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    seen: list[str] = []
    central = paho.Client(CallbackAPIVersion.VERSION2, client_id="t-central")
    ack_topic = P.ack_topic("anqi/v1", cfg.device.site_id, cfg.device.device_id)

    def on_message(c: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
        t = P.parse_topic(msg.topic)
        if t.kind is P.TopicKind.media:
            seen.append(t.name or "")
        elif t.kind is P.TopicKind.event:
            first = seen.count("face.jpg") == 1
            ack = P.Ack(
                event_id=ev.event_id,
                status="stored",
                media_complete=not first,
                missing_media=["face.jpg"] if first else [],
            )
            c.publish(ack_topic, P.encode_ack(ack), qos=1)

    central.on_message = on_message
    central.connect("127.0.0.1", broker.port)
    central.subscribe(P.central_filters()[P.TopicKind.media], 1)
    central.subscribe(P.central_filters()[P.TopicKind.event], 1)
    central.loop_start()
    relay = MqttRelay(cfg.relay, cfg.device, outbox, health).start()
    try:
        assert relay.wait_drained(15)
        assert sorted(seen) == ["ctx.jpg", "face.jpg", "face.jpg"]
        assert outbox.state_of(ev.event_id) is EventState.acked
        assert relay.stats_acks.get("resend") == 1 and relay.stats_acks.get("acked") == 1
    finally:
        relay.stop()
        central.loop_stop()
        central.disconnect()


def test_one_ack_batch_message_acknowledges_several_events(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any
) -> None:
    """Central acks a stored batch in one AckBatch message: the edge marks every event in it, stored or rejected."""
    cfg, outbox, health = _setup(tmp_path, broker.port, relay_config)
    evs = [make_event(tmp_path, i, {})[0] for i in range(5)]
    for ev in evs:
        outbox.add(ev, {})
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[uuid.UUID] = []
    lock = threading.Lock()
    central = paho.Client(CallbackAPIVersion.VERSION2, client_id="t-central-batch")
    ack_topic = P.ack_topic("anqi/v1", cfg.device.site_id, cfg.device.device_id)

    def on_message(c: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
        with lock:
            got.append(P.decode_event(bytes(msg.payload)).event_id)
            if len(got) == len(evs):  # all five in: answer them in one message, the last one rejected
                acks = [P.Ack(event_id=e, status="stored", media_complete=True) for e in got[:-1]]
                acks.append(P.Ack(event_id=got[-1], status="rejected", reason="unknown point"))
                c.publish(ack_topic, P.encode_acks(acks), qos=1)

    central.on_message = on_message
    central.connect("127.0.0.1", broker.port)
    central.subscribe(P.central_filters()[P.TopicKind.event], 1)
    central.loop_start()
    relay = MqttRelay(cfg.relay, cfg.device, outbox, health).start()
    try:
        assert _wait(lambda: sum(relay.stats_acks.values()) == len(evs), 15), relay.stats_acks
        states = {outbox.state_of(e) for e in got[:-1]}
        assert states == {EventState.acked}
        assert outbox.state_of(got[-1]) is EventState.rejected
        assert relay.stats_acks.get("acked") == 4
    finally:
        relay.stop()
        central.loop_stop()
        central.disconnect()


def test_rejected_event_is_kept_and_raises_an_alarm(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any
) -> None:
    cfg, outbox, health = _setup(tmp_path, broker.port, relay_config)
    ev, files = make_event(tmp_path, 0, {})
    outbox.add(ev, files)
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    central = paho.Client(CallbackAPIVersion.VERSION2, client_id="t-central-rej")

    def reject(c: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        c.publish(
            P.ack_topic("anqi/v1", cfg.device.site_id, cfg.device.device_id),
            P.encode_ack(P.Ack(event_id=ev.event_id, status="rejected", reason="unknown point")),
            qos=1,
        )

    central.on_message = reject
    central.connect("127.0.0.1", broker.port)
    central.subscribe(P.central_filters()[P.TopicKind.event], 1)
    central.loop_start()
    relay = MqttRelay(cfg.relay, cfg.device, outbox, health).start()
    try:
        assert relay.wait_drained(15)
        assert outbox.state_of(ev.event_id) is EventState.rejected
        assert "unknown point" in health.snapshot()["alarms"]["relay_rejected"]
    finally:
        relay.stop()
        central.loop_stop()
        central.disconnect()


def test_published_but_never_acked_events_are_sent_again_after_ack_timeout(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any
) -> None:
    """The broker PUBACKed, but central never answered (e.g. the broker lost it): re-send."""
    cfg, outbox, health = _setup(tmp_path, broker.port, relay_config, outbox={"ack_timeout_s": 1})
    consumer = ReferenceConsumer("127.0.0.1", broker.port, client_id="ref-noack", ack=False).start()
    ev, files = make_event(tmp_path, 0)
    outbox.add(ev, files)
    relay = MqttRelay(cfg.relay, cfg.device, outbox, health).start()
    try:
        assert relay.wait_drained(10, until="published")
        assert _wait(lambda: consumer.deliveries >= 2, 10), consumer.deliveries
        assert outbox.state_of(ev.event_id) in (EventState.published, EventState.pending)
        assert len(consumer.events) == 1 and consumer.duplicates >= 1  # duplicates are harmless
        consumer.ack_enabled = True
        assert relay.wait_drained(10)
    finally:
        relay.stop()
        consumer.stop()


def test_mqtt_311_works_and_password_comes_from_a_credential_file(
    tmp_path: Path, broker_factory: Any, make_event: Any, relay_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pw = tmp_path / "pw"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(pw), "anqi-dev-0001", "s3cret-dev"],
        check=True,
        capture_output=True,
    )
    pw.chmod(0o600)
    b = broker_factory(extra_conf=f"allow_anonymous false\npassword_file {pw}\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "ANQI_MQTT_PASSWORD").write_text("s3cret-dev\n")
    monkeypatch.delenv("ANQI_MQTT_PASSWORD", raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg, outbox, health = _setup(
        tmp_path,
        b.port,
        relay_config,
        protocol="3.1.1",
        username="anqi-dev-0001",
        password_env="ANQI_MQTT_PASSWORD",
    )
    ev, files = make_event(tmp_path, 0)
    outbox.add(ev, files)
    relay = MqttRelay(cfg.relay, cfg.device, outbox, health).start()
    try:
        assert relay.wait_drained(10, until="published")
    finally:
        relay.stop()


def test_wrong_password_keeps_everything_and_says_why(
    tmp_path: Path, broker_factory: Any, make_event: Any, relay_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pw = tmp_path / "pw"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(pw), "anqi-dev-0001", "right"], check=True, capture_output=True
    )
    b = broker_factory(extra_conf=f"allow_anonymous false\npassword_file {pw}\n")
    monkeypatch.setenv("ANQI_TEST_PW", "wrong")
    cfg, outbox, health = _setup(
        tmp_path, b.port, relay_config, username="anqi-dev-0001", password_env="ANQI_TEST_PW"
    )
    ev, files = make_event(tmp_path, 0)
    outbox.add(ev, files)
    relay = MqttRelay(cfg.relay, cfg.device, outbox, health).start()
    try:
        assert _wait(
            lambda: "refused" in health.snapshot()["components"].get("relay", {}).get("detail", ""), 10
        )
        assert not relay.connected and outbox.stats().pending == 1
    finally:
        relay.stop(flush_timeout_s=0)


def test_missing_password_env_is_a_clear_config_error(
    tmp_path: Path, relay_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANQI_NOPE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    cfg = relay_config(tmp_path, 1, username="u", password_env="ANQI_NOPE")
    with pytest.raises(
        RelayConfigError, match="relay.mqtt.password_env: environment variable ANQI_NOPE is not set"
    ):
        MqttRelay(cfg.relay, cfg.device, Outbox.for_config(cfg.relay.outbox, cfg.data_dir), None)


def test_connect_or_start_local_starts_a_development_broker(
    tmp_path: Path, relay_config: Any, make_event: Any
) -> None:
    cfg = relay_config(tmp_path, 1883, host=None)
    local, b = connect_or_start_local(cfg.relay, tmp_path / "dev-broker")
    assert b is not None and local.mqtt.host == "127.0.0.1" and local.mqtt.port == b.port != 1883
    assert cfg.relay.mqtt.host is None  # the caller's config is not changed
    try:
        outbox = Outbox.for_config(cfg.relay.outbox, cfg.data_dir)
        ev, files = make_event(tmp_path, 0)
        outbox.add(ev, files)
        with MqttRelay(local, cfg.device, outbox) as relay:
            assert relay.wait_drained(10, until="published")
    finally:
        b.close()
    other = relay_config(tmp_path, 1884).relay
    same, none = connect_or_start_local(other, tmp_path / "dev-broker-2")
    assert none is None and same is other and same.mqtt.port == 1884


PUBLISHER = r"""
import sys, time, json, pathlib
sys.path.insert(0, sys.argv[1])
from edge.config import parse_config
from edge.relay import MqttRelay, Outbox
cfg = parse_config(json.loads(sys.argv[2]), "child", pathlib.Path(sys.argv[3]))
outbox = Outbox.for_config(cfg.relay.outbox, cfg.data_dir)
relay = MqttRelay(cfg.relay, cfg.device, outbox).start()
print("started", flush=True)
time.sleep(600)
"""


def test_killed_publisher_restarts_and_resends_everything_not_acknowledged(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any
) -> None:
    """kill -9 the publishing process mid-stream; a new process on the same outbox finishes the job."""
    cfg, outbox, _ = _setup(tmp_path, broker.port, relay_config, max_inflight=5, media_chunk_kb=4)
    consumer = ReferenceConsumer("127.0.0.1", broker.port).start()
    sent = []
    for i in range(150):
        ev, files = make_event(tmp_path, i, {"face.jpg": 6000, "clip.mp4": 12_000})
        outbox.add(ev, files)
        sent.append(ev.event_id)
    data = json.loads(cfg.model_dump_json(exclude={"base_dir"}))
    args = [sys.executable, "-c", PUBLISHER, str(ROOT), json.dumps(data), str(tmp_path)]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"started"
        assert child.stderr is not None
        assert _wait(lambda: len(consumer.events) >= 10, 20), (
            child.stderr.read() if child.poll() is not None else ""
        )
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        at_kill = len(consumer.events)
        assert at_kill < len(sent), "the kill came too late to prove anything"
        st = outbox.stats()
        assert st.acked < len(sent)
        child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert consumer.wait_for(len(sent), 60), (len(consumer.events), outbox.stats())
        assert outbox.wait_until("acked", 20), outbox.stats()
        assert set(consumer.events) == set(sent)
        assert consumer.order == sorted(consumer.order, key=sent.index)  # first deliveries in insertion order
    finally:
        child.kill()
        child.wait()
        consumer.stop()


class Mqtt311OnlyFront:
    """A TCP front for a real mosquitto that behaves like an MQTT 3.1.1-only broker: a CONNECT
    with protocol level 5 gets the 3.1.1 answer 'unacceptable protocol version' (CONNACK rc 1);
    any other connection is piped to mosquitto unchanged."""

    def __init__(self, backend_port: int):
        import socket
        import threading

        self.backend_port = backend_port
        self.refused_v5 = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            head = conn.recv(64, socket.MSG_PEEK)
            # fixed header (1 byte + remaining length 1..4 bytes), then "\x00\x04MQTT" and the level
            i = 1
            while head[i] & 0x80:
                i += 1
            level = head[i + 1 + 6]
            if level == 5:
                self.refused_v5 += 1
                conn.sendall(b"\x20\x02\x00\x01")
                conn.close()
                continue
            back = socket.create_connection(("127.0.0.1", self.backend_port))
            for a, b in ((conn, back), (back, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: Any, b: Any) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_protocol_auto_falls_back_to_311_when_the_broker_refuses_mqtt5(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any
) -> None:
    front = Mqtt311OnlyFront(broker.port)
    consumer = ReferenceConsumer("127.0.0.1", broker.port).start()
    cfg, outbox, health = _setup(tmp_path, front.port, relay_config, protocol="auto")
    ev, files = make_event(tmp_path, 0)
    outbox.add(ev, files)
    relay = MqttRelay(cfg.relay, cfg.device, outbox, health).start()
    try:
        assert relay.wait_drained(20), outbox.stats()
        assert front.refused_v5 >= 1 and list(consumer.events) == [ev.event_id]
    finally:
        relay.stop()
        consumer.stop()
        front.close()


def test_a_long_backlog_raises_the_relay_backlog_alarm_and_clears_when_delivered(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any
) -> None:
    cfg, outbox, health = _setup(tmp_path, broker.port, relay_config, relay={"backlog_alarm_s": 10})
    ev, files = make_event(tmp_path, 0)
    outbox.add(ev, files)
    broker.stop()
    relay = MqttRelay(cfg.relay, cfg.device, outbox, health).start()
    try:
        import sqlite3

        with sqlite3.connect(outbox.root / Outbox.DB_NAME) as db:  # as if it had waited for an hour
            db.execute("UPDATE events SET created = created - 3600")
        assert _wait(lambda: "relay_backlog" in health.snapshot()["alarms"], 5)
        assert "broker unreachable" in health.snapshot()["alarms"]["relay_backlog"]
        broker.start()
        consumer = ReferenceConsumer("127.0.0.1", broker.port).start()
        assert relay.wait_drained(20)
        assert _wait(lambda: "relay_backlog" not in health.snapshot()["alarms"], 5)
        consumer.stop()
    finally:
        relay.stop()


def test_flow_control_keeps_at_most_max_unacked_events_at_the_broker(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any
) -> None:
    """Central is not acking: only max_unacked_events go to the broker, the rest waits on disk."""
    cfg, outbox, health = _setup(tmp_path, broker.port, relay_config, max_unacked_events=3)
    consumer = ReferenceConsumer("127.0.0.1", broker.port, client_id="ref-window", ack=False).start()
    evs = [make_event(tmp_path, i) for i in range(10)]
    for ev, f in evs:
        outbox.add(ev, f)
    relay = MqttRelay(cfg.relay, cfg.device, outbox, health).start()
    try:
        assert _wait(lambda: outbox.stats().published == 3, 10)
        time.sleep(1.0)
        st = outbox.stats()
        assert (st.published, st.pending) == (3, 7) and len(consumer.events) == 3
        consumer.ack_enabled = True
        for e in list(
            consumer.events.values()
        ):  # answer what already arrived, as a consumer catching up would
            consumer.publish_ack(
                e.topic, P.Ack(event_id=e.event.event_id, status="stored", media_complete=True)
            )
        assert relay.wait_drained(20), outbox.stats()
        assert consumer.order == [e.event_id for e, _ in evs]
    finally:
        relay.stop()
        consumer.stop()


def test_broker_killed_mid_stream_loses_nothing(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any
) -> None:
    """kill -9 of the broker drops what it had not saved yet; acks that never come make the edge re-send."""
    cfg, outbox, health = _setup(tmp_path, broker.port, relay_config, outbox={"ack_timeout_s": 2})
    consumer = ReferenceConsumer("127.0.0.1", broker.port, client_id="ref-kill").start()
    sent = []
    for i in range(120):
        ev, files = make_event(tmp_path, i, {"face.jpg": 1500})
        outbox.add(ev, files)
        sent.append(ev.event_id)
    relay = MqttRelay(cfg.relay, cfg.device, outbox, health).start()
    try:
        assert _wait(lambda: len(consumer.events) >= 30, 20)
        broker.kill()
        assert len(consumer.events) < len(sent), "the kill came too late to prove anything"
        time.sleep(0.5)
        broker.start()
        assert consumer.wait_for(len(sent), 60), (len(consumer.events), outbox.stats())
        assert relay.wait_drained(30), outbox.stats()
        assert set(consumer.events) == set(sent) and consumer.corrupt_chunks == 0
        assert all(len(e.media["face.jpg"]) == 1500 for e in consumer.events.values())
    finally:
        relay.stop()
        consumer.stop()
