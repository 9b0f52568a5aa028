"""The consumer's batched writes: bursts stored once and acked, an ack never before the commit,
``stop()`` stores what is queued, one bad event does not hold back its batch, tiers as one by one.

Against a real mosquitto (``broker``) on SQLite and PostgreSQL (``db_url``) unless a test says
otherwise; no timing is asserted.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
from mqtt_helpers import Listener, wait_for
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select, text

from anqi_contract import protocol as P
from anqi_contract.event import FaceInfo, ViolationEvent
from anqi_contract.localbroker import LocalBroker
from central_sync.config import parse_config
from central_sync.consumer import CentralConsumer
from central_sync.storage.models import Embedding, Event, TierChange
from central_sync.storage.store import CentralStore

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
ACKS = "anqi/v1/+/+/ack"


def face(rider: int, i: int) -> FaceInfo:
    """Rider ``rider``'s face, a little different each time (seeded by ``i``)."""
    v = np.random.default_rng(rider).normal(size=128) + 0.1 * np.random.default_rng(1000 + i).normal(size=128)
    v /= np.linalg.norm(v)
    return FaceInfo(found=True, quality=0.8, size_px=64, embedding_model="sface", embedding=v.tolist())


def consumer(tmp: Path, port: int, db_url: str, **ingest: Any) -> CentralConsumer:
    cfg = parse_config(
        {
            "database": {"url": db_url},
            "mqtt": {"port": port, "client_id": f"c-{uuid.uuid4().hex[:6]}"},
            "media": {"dir": str(tmp / "media")},
            "ingest": ingest,
        },
        "test",
        tmp,
    )
    return CentralConsumer(cfg, media_grace_s=0.5, clock=lambda: T0 + timedelta(hours=1))


@pytest.fixture
def running(tmp_path: Path, broker: LocalBroker, db_url: str) -> Iterator[tuple[CentralConsumer, Listener]]:
    cons = consumer(tmp_path, broker.port, db_url, batch_wait_ms=50).start()
    assert cons.connected
    lis = Listener(broker.port, [ACKS])
    yield cons, lis
    lis.close()
    cons.stop()
    cons.store.close()


def events(make_event: Any, tmp: Path, n: int, riders: int = 7) -> list[ViolationEvent]:
    """``n`` events without media; every third without a face, the others of ``riders`` riders."""
    out = []
    for i in range(n):
        ev, _ = make_event(tmp, i, {})
        if i % 3:
            ev = ev.model_copy(update={"face": face(i % riders, i)})
        out.append(ev)
    return out


def burst(lis: Listener, evs: list[ViolationEvent]) -> None:
    """Publish without waiting for each PUBACK (a burst), then wait for the last one."""
    info = None
    for ev in evs:
        info = lis.c.publish(P.event_topic("anqi/v1", ev.site_id, ev.device_id), P.encode_event(ev), qos=1)
    assert info is not None
    info.wait_for_publish(30)


def count(store: CentralStore, model: Any = Event) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_a_burst_with_duplicates_is_stored_once_and_every_delivery_acked(
    running: Any, tmp_path: Path, make_event: Any
) -> None:
    cons, lis = running
    evs = events(make_event, tmp_path, 300)
    again = evs[::10]  # 30 re-deliveries, each right after its first delivery (mostly in the same batch)
    order = []
    for i, ev in enumerate(evs):
        order.append(ev)
        if i % 10 == 0:
            order.append(ev)
    burst(lis, order)
    assert wait_for(lambda: len(lis.acks()) == len(order), 60), (len(lis.acks()), cons.stats)
    acks = lis.acks()
    assert all(a.status == "stored" and a.media_complete for a in acks)
    per_event: dict[uuid.UUID, int] = {}
    for a in acks:
        per_event[a.event_id] = per_event.get(a.event_id, 0) + 1
    assert per_event == {e.event_id: 2 if e in again else 1 for e in evs}
    with lis._lock:  # noqa: SLF001
        messages = sum(1 for t, _ in lis.messages if t.endswith("/ack"))
    assert messages < len(order)  # a stored batch's acks travel together (AckBatch), not one message each
    assert count(cons.store) == 300
    assert cons.stats.events_stored == 300 and cons.stats.duplicates == 30 and cons.stats.errors == 0
    with cons.store.session() as s:
        rows = dict(s.execute(select(Event.event_id, Event.person_id)).all())
        assert count(cons.store, Embedding) == 200  # one per stored face
    with_face = [e for e in evs if e.face.found]
    assert all(rows[str(e.event_id)] for e in with_face)
    assert all(rows[str(e.event_id)] is None for e in evs if not e.face.found)
    assert len({rows[str(e.event_id)] for e in with_face}) == 7  # one file per rider


def test_an_ack_is_published_only_after_its_event_is_committed(
    running: Any, tmp_path: Path, make_event: Any, db_url: str, broker: LocalBroker
) -> None:
    cons, lis = running
    reader = CentralStore(db_url)  # its own connections: sees committed rows only
    seen: list[tuple[uuid.UUID, bool]] = []
    lock = threading.Lock()

    def on_ack(c: Any, u: Any, msg: paho.MQTTMessage) -> None:
        for a in P.decode_acks(bytes(msg.payload)):  # a batch's acks come in one message
            there = reader.event_exists(str(a.event_id))  # checked the moment the ack arrives
            with lock:
                seen.append((a.event_id, there))

    watcher = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"w-{uuid.uuid4().hex[:6]}", protocol=paho.MQTTv5
    )
    subscribed = threading.Event()
    watcher.on_subscribe = lambda *a: subscribed.set()
    watcher.on_message = on_ack
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe(ACKS, qos=1)
    watcher.loop_start()
    try:
        assert subscribed.wait(10)
        evs = events(make_event, tmp_path, 150)
        burst(lis, evs)
        assert wait_for(lambda: len(seen) == 150, 60)
        with lock:
            assert {e for e, _ in seen} == {e.event_id for e in evs}
            assert [e for e, there in seen if not there] == []
    finally:
        watcher.loop_stop()
        watcher.disconnect()
        reader.close()


def test_stop_stores_and_acks_the_events_still_queued(
    tmp_path: Path, broker: LocalBroker, make_event: Any, db_url: str
) -> None:
    cons = consumer(tmp_path, broker.port, db_url, batch_wait_ms=0, batch_max=10).start()
    gate = threading.Event()
    store_events = cons.batches.store_events

    def held(items: Any) -> None:  # the writer's first batch waits until the test lets it go
        gate.wait(30)
        store_events(items)

    cons.batches.store_events = held
    lis = Listener(broker.port, [ACKS])
    try:
        evs = events(make_event, tmp_path, 60)
        burst(lis, evs)
        assert wait_for(
            lambda: cons.stats.events_received == 60, 30
        )  # all decoded: one batch held, the rest queued
        assert cons.batches.qsize() > 0 and cons.stats.events_stored == 0
        stopper = threading.Thread(target=cons.stop)
        stopper.start()
        gate.set()
        stopper.join(60)
        assert not stopper.is_alive()
        assert count(cons.store) == 60 and cons.stats.events_stored == 60 and cons.batches.qsize() == 0
        assert wait_for(lambda: len(lis.acks()) == 60, 10), len(lis.acks())  # acked before the disconnect
        assert {a.event_id for a in lis.acks()} == {e.event_id for e in evs}
    finally:
        gate.set()
        lis.close()
        cons.stop()
        cons.store.close()


def poison(store: CentralStore) -> None:
    """Make inserting an event of point 'poison' fail in the database (SQLite trigger)."""
    with store.engine.begin() as c:
        c.execute(
            text(
                "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.point_id = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'poisoned event'); END"
            )
        )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_one_event_that_fails_to_insert_does_not_hold_back_its_batch(
    running: Any, tmp_path: Path, make_event: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cons, lis = running
    poison(cons.store)
    evs = events(make_event, tmp_path, 20)
    bad = evs[7] = evs[7].model_copy(update={"point_id": "poison"})
    topic = P.event_topic("anqi/v1", bad.site_id, bad.device_id)
    with caplog.at_level("INFO", logger="anqi.central.consumer"):
        cons.handle_many([(topic, P.encode_event(e)) for e in evs])  # one batch, on this thread
    good = {e.event_id for e in evs if e is not bad}
    assert count(cons.store) == 19 and not cons.store.event_exists(str(bad.event_id))
    assert cons.stats.events_stored == 19 and cons.stats.errors == 1
    msgs = [r.getMessage() for r in caplog.records]
    assert "batch_failed" in msgs and msgs.count("event_not_stored") == 1
    assert wait_for(lambda: len(lis.acks()) == 19)
    assert {a.event_id for a in lis.acks()} == good  # the failed event is not acked: the edge re-sends it

    # the same through MQTT, in a burst with more events: the others are stored and acked
    more = events(make_event, tmp_path, 80)
    bad2 = more[40] = more[40].model_copy(update={"point_id": "poison"})
    burst(lis, more)
    assert wait_for(lambda: len(lis.acks()) == 19 + 79, 60)
    assert count(cons.store) == 19 + 79 and not cons.store.event_exists(str(bad2.event_id))
    assert cons.stats.errors == 2


def test_duplicates_within_one_batch_and_already_stored_ones_are_acked_not_stored(
    running: Any, tmp_path: Path, make_event: Any
) -> None:
    cons, lis = running
    a, b, c = events(make_event, tmp_path, 3)
    topic = P.event_topic("anqi/v1", a.site_id, a.device_id)
    cons.handle_many([(topic, P.encode_event(e)) for e in (a, b, a, c, b, a)])
    assert count(cons.store) == 3 and cons.stats.events_stored == 3 and cons.stats.duplicates == 3
    cons.handle_many([(topic, P.encode_event(e)) for e in (c, b)])  # stored already
    assert count(cons.store) == 3 and cons.stats.duplicates == 5
    assert wait_for(lambda: len(lis.acks()) == 8)
    assert sorted(str(x.event_id) for x in lis.acks()) == sorted(
        str(e.event_id) for e in (a, b, a, c, b, a, c, b)
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_one_riders_events_in_one_batch_raise_the_tier_step_by_step(
    tmp_path: Path, make_event: Any, db_url: str
) -> None:
    # no broker needed: handle() / handle_many() store on the caller's thread
    cons = consumer(tmp_path, 1, db_url)
    try:
        evs = [make_event(tmp_path, i, {})[0].model_copy(update={"face": face(3, i)}) for i in range(4)]
        topic = P.event_topic("anqi/v1", evs[0].site_id, evs[0].device_id)
        cons.handle(topic, P.encode_event(evs[0]))
        assert cons.store.event_exists(str(evs[0].event_id))  # stored when handle() returns
        cons.handle_many([(topic, P.encode_event(e)) for e in evs[1:]])
        with cons.store.session() as s:
            (pid,) = {p for (p,) in s.execute(select(Event.person_id))}
            changes = [
                (c.from_tier, c.to_tier) for c in s.scalars(select(TierChange).order_by(TierChange.id))
            ]
        # as if stored one at a time: occasional at the first event, frequent at the fourth
        assert changes == [("none", "occasional"), ("occasional", "frequent")]
        assert cons.stats.events_stored == 4 and cons.stats.last_assessment == {pid: "frequent"}
    finally:
        cons.store.close()
