"""Failover of the central consumers, against a real mosquitto and a real PostgreSQL.

* two ``anqi-central run`` processes started at once on a fresh database both come up (the schema is
  migrated under an advisory lock);
* ``kill -9`` of one of them mid-stream: the other takes its share at once, every event is stored once
  and acked (the few the dead one had taken are re-sent by the edge after its ack timeout);
* a consumer that ran once and stopped leaves nothing behind in the share group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from mqtt_helpers import Listener, wait_for
from sqlalchemy import create_engine, func, select, text

from anqi_contract import protocol as P
from anqi_contract.localbroker import LocalBroker
from central_sync.consumer import CentralConsumer
from central_sync.storage.models import Event, Media, TierChange
from central_sync.storage.store import CentralStore


def test_concurrent_migrations_on_a_fresh_postgresql_database_all_succeed(fresh_pg_url: str) -> None:
    """Six stores migrating the same empty database at the same instant (before: UniqueViolation on
    alembic_version for all but one)."""
    n = 6
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def one() -> None:
        st = CentralStore(fresh_pg_url)
        try:
            barrier.wait(10)
            st.migrate()
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)
        finally:
            st.close()

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    eng = create_engine(fresh_pg_url)
    with eng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    eng.dispose()


def _run_consumer(tmp: Path, name: str, port: int, db_url: str) -> tuple[subprocess.Popen[str], Path]:
    cfgf = tmp / f"{name}.yaml"
    cfgf.write_text(
        f"database:\n  url: {db_url}\nmqtt:\n  port: {port}\n  client_id: {name}\n  keepalive_s: 5\n"
        f"media:\n  dir: media\nlog_level: INFO\n"
    )
    log = tmp / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "central_sync.cli", "run", "--config", str(cfgf)],
        cwd=Path(__file__).resolve().parents[2],  # this checkout's code, whatever the venv's entry point
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        text=True,
    )
    return proc, log


def test_kill_9_of_one_of_two_consumers_moves_its_share_to_the_other(
    tmp_path: Path, broker: LocalBroker, make_event: Any, relay_config: Any, fresh_pg_url: str
) -> None:
    from edge.health import Health
    from edge.relay import EventState, MqttRelay, Outbox

    a, a_log = _run_consumer(tmp_path, "central-a", broker.port, fresh_pg_url)
    b, b_log = _run_consumer(tmp_path, "central-b", broker.port, fresh_pg_url)  # same instant, fresh database
    try:

        def connected(log: Path) -> bool:
            return "consumer_connected" in log.read_text()

        for log in (a_log, b_log):
            assert wait_for(lambda: connected(log), 60), log.read_text()  # noqa: B023 - used at once
        time.sleep(0.5)  # connected -> subscribed
        ecfg = relay_config(tmp_path / "edge", broker.port, media_chunk_kb=4, outbox={"ack_timeout_s": 3})
        health = Health(tmp_path / "edge" / "health.json", ecfg.device.device_id)
        outbox = Outbox.for_config(ecfg.relay.outbox, ecfg.data_dir, health)
        relay = MqttRelay(ecfg.relay, ecfg.device, outbox, health).start()
        store = CentralStore(fresh_pg_url)
        n, kill_at = 240, 80
        sent = []
        killed = None
        for i in range(n):
            ev, files = make_event(tmp_path / "edge", i, {"face.jpg": 1200} if i % 4 == 0 else {})
            outbox.add(ev, files)
            sent.append(ev)
            if killed is None and i >= kill_at and store.count_events() >= kill_at // 2:
                assert "event_stored" in a_log.read_text()  # a had its share before it was killed
                a.send_signal(signal.SIGKILL)
                killed = time.monotonic()
            time.sleep(0.005)
        assert killed is not None
        assert relay.wait_drained(60), outbox.stats()
        took = time.monotonic() - killed
        assert all(outbox.state_of(e.event_id) is EventState.acked for e in sent)
        with store.session() as s:
            ids = [e for (e,) in s.execute(select(Event.event_id))]
            assert len(ids) == n and set(ids) == {str(e.event_id) for e in sent}  # all stored, none twice
            assert s.scalar(select(func.count()).select_from(Media)) == len(range(0, n, 4))
            changes = s.execute(select(TierChange.person_id, TierChange.to_tier)).all()
            assert len(changes) == len(set(changes))
        assert b.poll() is None
        # the survivor took over: what a stored after the kill is nothing; b stored the rest
        assert took < 30
        relay.stop()
        store.close()
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)


def test_a_consumer_that_ran_once_and_stopped_leaves_no_share_behind(
    tmp_path: Path, broker: LocalBroker, make_event: Any
) -> None:
    """Before: its 7-day session stayed in the share group and took every second event until it returned."""
    gone = CentralConsumer.for_broker("127.0.0.1", broker.port, tmp_path / "gone").start()
    assert gone.connected
    gone.stop()
    gone.store.close()
    cons = CentralConsumer.for_broker("127.0.0.1", broker.port, tmp_path / "central").start()
    lis = Listener(broker.port, ["anqi/v1/+/+/ack"])
    try:
        evs = [make_event(tmp_path, i, {})[0] for i in range(20)]
        for ev in evs:
            lis.publish(P.event_topic("anqi/v1", ev.site_id, ev.device_id), P.encode_event(ev))
        assert cons.wait_stored(20, 10), cons.stats
        assert wait_for(lambda: {a.event_id for a in lis.acks()} == {e.event_id for e in evs}, 5)
    finally:
        lis.close()
        cons.stop()
        cons.store.close()


def test_media_are_not_queued_for_a_consumer_that_is_gone(tmp_path: Path, broker: LocalBroker) -> None:
    """A consumer that disconnected has no session left: when a consumer with its client id comes back it is
    handed nothing that was published while it was away (before: every chunk of every clip was queued for it)."""
    cid = f"central-{uuid.uuid4().hex[:6]}"
    first = CentralConsumer.for_broker("127.0.0.1", broker.port, tmp_path / "c1", client_id=cid).start()
    first.stop()
    first.store.close()
    lis = Listener(broker.port, ["anqi/v1/+/+/ack"])
    eid = uuid.uuid4()
    for _, payload in P.iter_media_chunks(eid, "clip.mp4", _blob(tmp_path, 20_000), 4096):
        lis.publish(P.media_topic("anqi/v1", "site", "dev", eid, "clip.mp4"), payload)
    lis.close()
    again = CentralConsumer.for_broker("127.0.0.1", broker.port, tmp_path / "c2", client_id=cid).start()
    try:
        time.sleep(1.0)
        assert again.stats.media_files == 0 and not (again.media_dir / str(eid)).exists()
    finally:
        again.stop()
        again.store.close()


def _blob(tmp: Path, size: int) -> Path:
    p = tmp / f"blob-{size}"
    p.write_bytes(os.urandom(size))
    return p
