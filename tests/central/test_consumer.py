"""The central consumer against a real mosquitto: acks, duplicates, schema versions, media, tiers, tasks.

The edge side is either a raw paho client speaking :mod:`anqi_contract.protocol` (to craft duplicates,
corrupt chunks and unknown schema versions) or the real edge ``Outbox`` + ``MqttRelay``
(the end-to-end test).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mqtt_helpers import Listener, wait_for
from sqlalchemy import func, select

from anqi_contract import protocol as P
from anqi_contract.event import FaceInfo, ViolationEvent
from anqi_contract.localbroker import LocalBroker
from central_sync.config import CentralConfig, parse_config
from central_sync.consumer import CentralConsumer, reevaluate_all
from central_sync.storage.models import (
    Disposition,
    Event,
    Media,
    Person,
    Task,
    TierChange,
)
from central_sync.storage.store import CentralStore

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
SITE, DEVICE = "huzhou-demo", "anqi-dev-0001"


def central_cfg(tmp: Path, port: int, db_url: str | None = None, **extra: Any) -> CentralConfig:
    return parse_config(
        {
            "database": {"url": db_url or f"sqlite:///{tmp / 'central.db'}"},
            "mqtt": {"port": port, "client_id": f"c-{uuid.uuid4().hex[:6]}"},
            "media": {"dir": str(tmp / "media")},
            **extra,
        },
        "test",
        tmp,
    )


@pytest.fixture
def consumer_env(
    tmp_path: Path, broker: LocalBroker, db_url: str
) -> Iterator[tuple[CentralConsumer, Listener]]:
    """A running consumer on SQLite and on PostgreSQL (``db_url`` is parametrised in conftest)."""
    cfg = central_cfg(tmp_path, broker.port, db_url)
    cons = CentralConsumer(cfg, media_grace_s=0.5, clock=lambda: T0 + timedelta(hours=1)).start()
    assert cons.connected
    lis = Listener(broker.port, ["anqi/v1/+/+/ack", "anqi/v1/central/tasks/#"])
    yield cons, lis
    lis.close()
    cons.stop()
    cons.store.close()


def start_edge_relay(root: Path, port: int, relay_config: Any, **kw: Any) -> tuple[Any, Any]:
    """The edge side: a real outbox and MQTT relay (config from the ``relay_config`` fixture), started."""
    from edge.health import Health
    from edge.relay import MqttRelay, Outbox

    cfg = relay_config(root, port, **kw)
    health = Health(root / "health.json", cfg.device.device_id)
    outbox = Outbox.for_config(cfg.relay.outbox, cfg.data_dir, health)
    return outbox, MqttRelay(cfg.relay, cfg.device, outbox, health).start()


def face(seed: int, noise: float = 0.0, rng_seed: int = 0) -> FaceInfo:
    base = np.random.default_rng(seed).normal(size=128)
    v = base + noise * np.random.default_rng(rng_seed).normal(size=128)
    v /= np.linalg.norm(v)
    return FaceInfo(found=True, quality=0.8, size_px=64, embedding_model="sface", embedding=v.tolist())


def publish_event(
    lis: Listener, ev: ViolationEvent, files: dict[str, Path] | None = None, chunk: int = 4096
) -> None:
    for ref in ev.media:
        for _, payload in P.iter_media_chunks(ev.event_id, ref.name, (files or {})[ref.name], chunk):
            lis.publish(P.media_topic("anqi/v1", ev.site_id, ev.device_id, ev.event_id, ref.name), payload)
    lis.publish(P.event_topic("anqi/v1", ev.site_id, ev.device_id), P.encode_event(ev))


def test_duplicate_delivery_is_stored_once_and_acked_each_time(
    consumer_env: Any, tmp_path: Path, make_event: Any
) -> None:
    cons, lis = consumer_env
    ev, files = make_event(tmp_path, 1, {"face.jpg": 3000})
    for _ in range(3):
        publish_event(lis, ev, files)
    assert wait_for(lambda: len(lis.acks()) == 3)
    assert all(a.event_id == ev.event_id and a.status == "stored" and a.media_complete for a in lis.acks())
    with cons.store.session() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 1
        assert s.scalar(select(func.count()).select_from(Media)) == 1
    assert cons.stats.duplicates == 2 and cons.stats.events_stored == 1


def test_unknown_schema_version_is_rejected_with_an_ack_and_a_log_line(
    consumer_env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cons, lis = consumer_env
    eid = uuid.uuid4()
    body = {
        "schema_version": 2,
        "event_id": str(eid),
        "device_id": DEVICE,
        "site_id": SITE,
        "time": T0.isoformat(),
    }
    with caplog.at_level("WARNING", logger="anqi.central.consumer"):
        lis.publish(P.event_topic("anqi/v1", SITE, DEVICE), json.dumps(body).encode())
        lis.publish(P.event_topic("anqi/v1", SITE, DEVICE), b"\xff not json")
        assert wait_for(lambda: len(lis.acks()) == 1 and cons.stats.rejected == 2)
    (ack,) = lis.acks()
    assert ack.status == "rejected" and ack.event_id == eid and "schema_version 2" in (ack.reason or "")
    assert any(
        r.getMessage() == "event_rejected" and "schema_version" in str(getattr(r, "fields", {}).get("reason"))
        for r in caplog.records
    )
    assert cons.store.count_events() == 0


def test_event_published_as_another_device_is_rejected(
    consumer_env: Any, tmp_path: Path, make_event: Any
) -> None:
    cons, lis = consumer_env
    ev, files = make_event(tmp_path, 1, {}, device="anqi-dev-0002")
    lis.publish(P.event_topic("anqi/v1", SITE, DEVICE), P.encode_event(ev))
    assert wait_for(lambda: len(lis.acks()) == 1)
    assert lis.acks()[0].status == "rejected" and cons.store.count_events() == 0


def test_corrupt_chunk_is_rejected_and_the_resent_file_completes_the_event(
    consumer_env: Any, tmp_path: Path, make_event: Any
) -> None:
    cons, lis = consumer_env
    ev, files = make_event(tmp_path, 1, {"clip.mp4": 10_000})
    chunks = list(P.iter_media_chunks(ev.event_id, "clip.mp4", files["clip.mp4"], 4096))
    topic = P.media_topic("anqi/v1", SITE, DEVICE, ev.event_id, "clip.mp4")
    bad = bytearray(chunks[1][1])
    bad[-1] ^= 0xFF  # flip one byte of the chunk's data
    lis.publish(topic, chunks[0][1])
    lis.publish(topic, bytes(bad))
    lis.publish(topic, chunks[2][1])
    lis.publish(P.event_topic("anqi/v1", SITE, DEVICE), P.encode_event(ev))
    assert wait_for(lambda: len(lis.acks()) == 1, 10)
    ack = lis.acks()[0]
    assert ack.status == "stored" and not ack.media_complete and ack.missing_media == ["clip.mp4"]
    assert cons.stats.corrupt_chunks == 1
    assert not (cons.media_dir / str(ev.event_id) / "clip.mp4").exists()
    # the edge re-sends the missing file: now complete and verified
    for _, payload in chunks:
        lis.publish(topic, payload)
    assert wait_for(lambda: len(lis.acks()) == 2, 10)
    assert lis.acks()[1].media_complete and lis.acks()[1].missing_media == []
    stored = cons.media_dir / str(ev.event_id) / "clip.mp4"
    assert stored.read_bytes() == files["clip.mp4"].read_bytes()
    with cons.store.session() as s:
        (m,) = s.scalars(select(Media)).all()
        assert m.sha256 == ev.media[0].sha256 and m.size == 10_000


def test_faces_of_one_unknown_person_share_one_file_and_raise_the_tier(
    consumer_env: Any, tmp_path: Path, make_event: Any
) -> None:
    cons, lis = consumer_env
    evs = []
    for i in range(4):
        ev, _ = make_event(tmp_path, i, {})
        evs.append(ev.model_copy(update={"face": face(7, 0.1, i)}))
    other, _ = make_event(tmp_path, 9, {})
    evs.append(other.model_copy(update={"face": face(8)}))
    for ev in evs:
        publish_event(lis, ev)
    assert wait_for(lambda: len(lis.acks()) == 5)
    # an event is acked once committed, and its person re-assessed after that: wait for the last re-assessment
    assert wait_for(lambda: len(cons.stats.last_assessment) == 2 and cons.stats.tier_changes >= 3)
    with cons.store.session() as s:
        pids = [s.get(Event, str(e.event_id)).person_id for e in evs]
        assert len(set(pids[:4])) == 1 and pids[4] != pids[0] and all(p and p.startswith("U-") for p in pids)
        assert s.get(Person, pids[0]).kind == "unknown"
        assert s.get(Person, pids[0]).tier == "frequent"
        changes = [
            (c.from_tier, c.to_tier)
            for c in s.scalars(
                select(TierChange).where(TierChange.person_id == pids[0]).order_by(TierChange.id)
            )
        ]
    assert changes == [("none", "occasional"), ("occasional", "frequent")]
    assert wait_for(lambda: len(lis.tasks()) == 3 + 2 + 3)
    kinds = sorted(t["kind"] for t in lis.tasks() if t["person_id"] == pids[0])
    assert kinds == sorted(
        ["sms_reminder", "voice_reminder", "case_study_link", "education_by_community", "home_visit"]
    )


def test_end_to_end_edge_relay_to_consumer_ack_tier_and_disposition_tasks(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any
) -> None:
    from central_sync.identity import EnrolmentRecord
    from central_sync.persons import enrol_embeddings
    from edge.relay import EventState

    # central: a gallery person who is a party member with an employer
    cfg = central_cfg(tmp_path / "central", broker.port)
    (tmp_path / "central").mkdir()
    store = CentralStore.from_config(cfg)
    cons = CentralConsumer(cfg, store=store, media_grace_s=1.0, clock=lambda: T0 + timedelta(hours=1))
    g = np.asarray(face(42).embedding)
    enrol_embeddings(
        store,
        cfg,
        cons.resolver,
        EnrolmentRecord(
            "P-001",
            name="Zhang San",
            id_number="33050119900101123X",
            community="Feiying",
            employer="Huzhou Bus Co.",
            party_member=True,
        ),
        g[None, :],
    )
    cons.start()
    lis = Listener(broker.port, ["anqi/v1/central/tasks/#"])
    # edge: the real outbox and relay
    outbox, relay = start_edge_relay(tmp_path / "edge", broker.port, relay_config, media_chunk_kb=4)
    try:
        sent = []
        for i in range(4):
            ev, files = make_event(tmp_path / "edge", i, {"face.jpg": 3000, "clip.mp4": 9000})
            ev = ev.model_copy(update={"face": face(42, 0.2, i).model_copy(update={"found": True})})
            outbox.add(ev, files)
            sent.append(ev)
        assert relay.wait_drained(30), outbox.stats()
        assert all(outbox.state_of(e.event_id) is EventState.acked for e in sent)
        with store.session() as s:
            assert {s.get(Event, str(e.event_id)).person_id for e in sent} == {"P-001"}  # type: ignore[union-attr]
            assert s.scalar(select(func.count()).select_from(Media)) == 8
            assert s.get(Person, "P-001").tier == "frequent"  # type: ignore[union-attr]
        assert wait_for(lambda: len(lis.tasks()) == 6)
        kinds = sorted(t["kind"] for t in lis.tasks())
        assert kinds == sorted(
            [
                "sms_reminder",
                "voice_reminder",
                "case_study_link",
                "education_by_employer",
                "party_index_deduction",
                "home_visit",
            ]
        )
        edu = next(t for t in lis.tasks() if t["kind"] == "education_by_employer")
        assert edu["person_id"] == "P-001" and edu["employer"] == "Huzhou Bus Co." and "id_number" not in edu
        # the employer reports the education done (twice: feedback is idempotent)
        fb = {
            "task_id": edu["task_id"],
            "status": "done",
            "time": (T0 + timedelta(minutes=30)).isoformat(),
            "feedback_id": "fb-1",
        }
        for _ in range(2):
            lis.publish("anqi/v1/central/feedback", json.dumps(fb).encode())
        assert wait_for(lambda: cons.stats.feedback == 1)
        time.sleep(0.3)
        with store.session() as s:
            assert s.get(Task, edu["task_id"]).status == "done"  # type: ignore[union-attr]
            assert [d.kind for d in s.scalars(select(Disposition))] == ["education"]
        # a violation after the education: repeat -> public notice + credit deduction, once
        ev, files = make_event(tmp_path / "edge", 50, {"face.jpg": 1000})
        ev = ev.model_copy(update={"time": T0 + timedelta(minutes=40), "face": face(42, 0.2, 99)})
        outbox.add(ev, files)
        assert relay.wait_drained(30)
        assert wait_for(lambda: len(lis.tasks()) == 8)
        assert sorted(t["kind"] for t in lis.tasks()[6:]) == ["credit_deduction", "public_notice"]
        with store.session() as s:
            assert s.get(Person, "P-001").tier == "repeat"  # type: ignore[union-attr]
        # the same event delivered again makes no new task (no duplicate storm)
        lis.publish(P.event_topic("anqi/v1", ev.site_id, ev.device_id), P.encode_event(ev))
        time.sleep(0.5)
        assert len(lis.tasks()) == 8
    finally:
        relay.stop()
        lis.close()
        cons.stop()
        store.close()


def test_daily_reevaluation_lowers_tiers_as_windows_slide_without_tasks(
    tmp_path: Path, broker: LocalBroker, make_event: Any
) -> None:
    cfg = central_cfg(tmp_path, broker.port)
    cons = CentralConsumer(cfg, media_grace_s=0.5, clock=lambda: T0 + timedelta(hours=1)).start()
    lis = Listener(broker.port, ["anqi/v1/+/+/ack", "anqi/v1/central/tasks/#"])
    try:
        for i in range(4):
            ev, _ = make_event(tmp_path, i, {})
            publish_event(lis, ev.model_copy(update={"face": face(5, 0.1, i)}))
        assert wait_for(lambda: len(lis.acks()) == 4 and len(lis.tasks()) == 5)
        r = reevaluate_all(cons.store, cfg, cons.desk, T0 + timedelta(days=8))
        assert r["occasional"] == 1 and r["changed"] == 1
        r = reevaluate_all(cons.store, cfg, cons.desk, T0 + timedelta(days=31))
        assert r["none"] == 1 and r["changed"] == 1
        assert reevaluate_all(cons.store, cfg, cons.desk, T0 + timedelta(days=31))["changed"] == 0
        time.sleep(0.3)
        assert len(lis.tasks()) == 5  # falling tiers call for no task
    finally:
        lis.close()
        cons.stop()
        cons.store.close()


def test_anqi_central_run_consumes_acks_and_stops_on_sigterm(
    tmp_path: Path, broker: LocalBroker, make_event: Any
) -> None:
    import signal
    import subprocess
    import sys

    cfgf = tmp_path / "central.yaml"
    cfgf.write_text(
        f"database:\n  url: sqlite:///central.db\nmqtt:\n  port: {broker.port}\n  client_id: run-test\nmedia:\n  dir: media\n"
    )
    import os
    import socket

    exe = Path(sys.executable).with_name("anqi-central")
    sock_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    notify.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "2000000"}
    proc = subprocess.Popen(
        [str(exe), "run", "--config", str(cfgf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lis = Listener(broker.port, ["anqi/v1/+/+/ack"])
    try:
        ev, files = make_event(tmp_path, 1, {"face.jpg": 2000})
        deadline = time.monotonic() + 30
        while not lis.acks() and time.monotonic() < deadline and proc.poll() is None:
            publish_event(lis, ev, files)  # until the consumer has subscribed; duplicates are harmless
            wait_for(lambda: bool(lis.acks()), 1.0)
        assert lis.acks() and lis.acks()[0].status == "stored" and lis.acks()[0].media_complete
        msgs = [
            notify.recv(4096).decode() for _ in range(3)
        ]  # READY, then status + watchdog pings (every 1 s)
        assert msgs[0].startswith("READY=1") and any("WATCHDOG=1" in m for m in msgs[1:])
    finally:
        lis.close()
        notify.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "consumer_connected" in err and "event_stored" in err
    assert CentralStore(f"sqlite:///{tmp_path / 'central.db'}").count_events() == 1


def test_in_process_consumer_for_a_broker_counts_stored_events(
    tmp_path: Path, broker: LocalBroker, make_event: Any
) -> None:
    cons = CentralConsumer.for_broker("127.0.0.1", broker.port, tmp_path / "central").start()
    lis = Listener(broker.port, ["anqi/v1/+/+/ack"])
    try:
        evs = [make_event(tmp_path, i, {"face.jpg": 500}) for i in range(5)]
        for ev, files in evs + evs[:2]:
            publish_event(lis, ev, files)
        assert cons.wait_stored(5, 10)
        assert wait_for(lambda: len(lis.acks()) == 7)
        assert cons.stats.events_stored == 5 and cons.stats.duplicates == 2
    finally:
        lis.close()
        cons.stop()
        cons.store.close()


def test_consumer_started_before_the_broker_connects_when_it_comes_up(
    tmp_path: Path, make_event: Any
) -> None:
    from anqi_contract.localbroker import free_port

    port = free_port()
    cons = CentralConsumer.for_broker("127.0.0.1", port, tmp_path / "central").start(timeout=0.5)
    assert not cons.connected
    broker = LocalBroker(port=port, workdir=tmp_path / "mosq").start()
    try:
        assert wait_for(lambda: cons.connected, 30)
        lis = Listener(port, ["anqi/v1/+/+/ack"])
        ev, files = make_event(tmp_path, 1, {"face.jpg": 800})
        publish_event(lis, ev, files)
        assert wait_for(lambda: len(lis.acks()) == 1, 10) and lis.acks()[0].status == "stored"
        lis.close()
    finally:
        cons.stop()
        cons.store.close()
        broker.close()


def test_broker_restart_mid_stream_loses_nothing_and_stores_each_event_once(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any
) -> None:

    cons = CentralConsumer.for_broker(
        "127.0.0.1", broker.port, tmp_path / "central", media_grace_s=1.0
    ).start()
    outbox, relay = start_edge_relay(
        tmp_path / "edge", broker.port, relay_config, media_chunk_kb=4, outbox={"ack_timeout_s": 3}
    )
    try:
        sent = []
        for i in range(40):
            ev, files = make_event(tmp_path / "edge", i, {"face.jpg": 1500, "clip.mp4": 6000})
            outbox.add(ev, files)
            sent.append(ev)
            if i == 20:
                broker.restart()
        assert relay.wait_drained(90), outbox.stats()
        assert cons.wait_stored(40, 30)
        with cons.store.session() as s:
            stored = {e for (e,) in s.execute(select(Event.event_id))}
            assert stored == {str(e.event_id) for e in sent}
            assert s.scalar(select(func.count()).select_from(Media)) == 80
    finally:
        relay.stop()
        cons.stop()
        cons.store.close()


def test_two_consumers_in_one_share_group_split_the_events_and_store_each_once(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any, fresh_pg_url: str
) -> None:
    from edge.relay import EventState

    pg_url = fresh_pg_url
    a = CentralConsumer.for_broker("127.0.0.1", broker.port, tmp_path / "central", db_url=pg_url).start()
    b = CentralConsumer.for_broker("127.0.0.1", broker.port, tmp_path / "central", db_url=pg_url).start()
    outbox, relay = start_edge_relay(tmp_path / "edge", broker.port, relay_config, media_chunk_kb=4)
    try:
        sent = []
        for i in range(30):
            ev, files = make_event(tmp_path / "edge", i, {"face.jpg": 1200, "clip.mp4": 9000})
            ev = ev.model_copy(update={"face": face(11 + i % 3, 0.1, i)})  # three riders
            outbox.add(ev, files)
            sent.append(ev)
        assert relay.wait_drained(60), outbox.stats()
        assert all(outbox.state_of(e.event_id) is EventState.acked for e in sent)
        assert a.stats.events_stored + b.stats.events_stored == 30
        assert a.stats.events_stored > 0 and b.stats.events_stored > 0  # the share group split the load
        with a.store.session() as s:
            assert s.scalar(select(func.count()).select_from(Event)) == 30
            assert s.scalar(select(func.count()).select_from(Media)) == 60
            per_person = s.execute(select(Event.person_id, func.count()).group_by(Event.person_id)).all()
            changes = s.execute(select(TierChange.person_id, TierChange.to_tier)).all()
        assert sorted(n for _, n in per_person) == [10, 10, 10]  # one file per rider across both consumers
        # never two identical tier changes for one person (row lock), whichever consumer assessed
        assert len(changes) == len(set(changes))
    finally:
        relay.stop()
        a.stop()
        b.stop()
        a.store.close()
        b.store.close()
