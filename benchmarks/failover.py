"""Failover of the central consumers: kill -9 one of two ``anqi-central run`` processes mid-burst.

    .venv/bin/python benchmarks/failover.py [--events 10000] [--rate 1000] [--kill-after 0.3]
        [--ack-timeout 5] [--session-expiry 0] [--pg ADMIN_URL]

A real mosquitto (own port), a fresh PostgreSQL database (dropped after), two consumers in one share group
started at the same instant on the empty database (migration under the advisory lock). An edge-like publisher
(this process, paho, QoS 1) sends ``--events`` events at ``--rate``/s and re-sends every event not acked within
``--ack-timeout`` s (as the edge outbox does with ``relay.outbox.ack_timeout_s``). After ``--kill-after`` of the
events, consumer A gets SIGKILL. Printed: events stored (distinct), acked, how many events published *after* the
kill needed a re-send (0 when the survivor gets every new event), the time from the kill to the first ack of an
event published after it, and to the last ack. ``--session-expiry 604800`` runs the old session policy.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from anqi_contract import protocol as P  # noqa: E402
from anqi_contract.event import FaceInfo, ViolationEvent, ViolationType  # noqa: E402
from anqi_contract.localbroker import LocalBroker  # noqa: E402
from central_sync.storage.store import CentralStore  # noqa: E402

T0 = datetime(2026, 6, 1, tzinfo=timezone.utc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--kill-after", type=float, default=0.3)
    ap.add_argument("--ack-timeout", type=float, default=5.0)
    ap.add_argument("--session-expiry", type=int, default=0)
    ap.add_argument("--deadline", type=float, default=120.0, help="Give up waiting for acks after this long.")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from central import pg_database

    url, drop = pg_database(a.pg)
    tmp = Path(tempfile.mkdtemp(prefix="anqi-failover-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with LocalBroker(workdir=tmp / "mosquitto") as broker:
            for name in ("central-a", "central-b"):
                cfg = tmp / f"{name}.yaml"
                cfg.write_text(
                    f"database:\n  url: {url}\nmqtt:\n  port: {broker.port}\n  client_id: {name}\n"
                    f"  session_expiry_s: {a.session_expiry}\nmedia:\n  dir: media\nlog_level: WARNING\n"
                )
                procs.append(
                    subprocess.Popen(
                        [str(Path(sys.executable).with_name("anqi-central")), "run", "--config", str(cfg)],
                        stdout=subprocess.DEVNULL,
                        stderr=(tmp / f"{name}.log").open("w"),
                    )
                )
            store = CentralStore(url)
            evs = [
                ViolationEvent(
                    device_id="dev-1",
                    site_id="site-1",
                    point_id="pt-1",
                    violation_type=ViolationType.no_helmet,
                    time=T0 + timedelta(seconds=i),
                    track_id=i,
                    confidence=0.9,
                    face=FaceInfo(found=False),
                )
                for i in range(a.events)
            ]
            payload = {e.event_id: P.encode_event(e) for e in evs}
            topic = P.event_topic("anqi/v1", "site-1", "dev-1")
            acked: dict[uuid.UUID, float] = {}
            lock = threading.Lock()

            def on_ack(c: object, u: object, msg: paho.MQTTMessage) -> None:
                now = time.monotonic()
                with lock:
                    for ack in P.decode_acks(bytes(msg.payload)):
                        acked.setdefault(ack.event_id, now)

            c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-edge", protocol=paho.MQTTv5)
            c.on_message = on_ack
            c.max_inflight_messages_set(200)
            c.connect("127.0.0.1", broker.port)
            c.subscribe(P.ack_topic("anqi/v1", "site-1", "dev-1"), qos=1)
            c.loop_start()
            time.sleep(3.0)  # both consumers migrated, connected, subscribed
            sent_at: dict[uuid.UUID, float] = {}
            resent: set[uuid.UUID] = set()
            kill_t = None
            start = time.monotonic()
            for i, e in enumerate(evs):
                target = start + i / a.rate
                while time.monotonic() < target:
                    time.sleep(0.0005)
                if kill_t is None and i >= a.kill_after * a.events:
                    procs[0].send_signal(signal.SIGKILL)
                    kill_t = time.monotonic()
                c.publish(topic, payload[e.event_id], qos=1)
                sent_at[e.event_id] = time.monotonic()
            assert kill_t is not None
            end = time.monotonic() + a.deadline
            while time.monotonic() < end:
                with lock:
                    if len(acked) >= a.events:
                        break
                    now = time.monotonic()
                    late = [eid for eid, t in sent_at.items() if eid not in acked and now - t > a.ack_timeout]
                for eid in late:  # the edge outbox's re-send of an unacknowledged event
                    if sent_at[eid] > kill_t:
                        resent.add(eid)
                    c.publish(topic, payload[eid], qos=1)
                    sent_at[eid] = time.monotonic()
                time.sleep(0.2)
            c.loop_stop()
            c.disconnect()
            with lock:
                after_kill = [
                    t for eid, t in acked.items() if sent_at.get(eid, 0) > kill_t and eid not in resent
                ]
                last_ack = max(acked.values()) if acked else float("nan")
                n_acked = len(acked)
            with store.session() as s:
                from sqlalchemy import func, select

                from central_sync.storage.models import Event

                n_rows = s.scalar(select(func.count()).select_from(Event))
                n_distinct = s.scalar(select(func.count(func.distinct(Event.event_id))))
            store.close()
            out = {
                "events": a.events,
                "rate_per_s": a.rate,
                "session_expiry_s": a.session_expiry,
                "ack_timeout_s": a.ack_timeout,
                "stored_rows": n_rows,
                "stored_distinct": n_distinct,
                "acked": n_acked,
                "published_after_kill_needing_resend": len([e for e in resent if sent_at[e] > kill_t]),
                "kill_to_first_ack_of_new_event_s": round(min(after_kill) - kill_t, 3)
                if after_kill
                else None,
                "kill_to_last_ack_s": round(last_ack - kill_t, 2),
                "survivor_alive": procs[1].poll() is None,
            }
            print(
                f"kill -9 of 1 of 2 consumers after {int(a.kill_after * a.events)} of {a.events} events "
                f"({a.rate:.0f}/s, session_expiry_s={a.session_expiry}, edge re-send after {a.ack_timeout} s):\n"
                f"  stored {n_rows} rows / {n_distinct} distinct, acked {n_acked}\n"
                f"  events published after the kill that needed a re-send: {out['published_after_kill_needing_resend']}\n"
                f"  kill -> first ack of an event published after it: {out['kill_to_first_ack_of_new_event_s']} s\n"
                f"  kill -> last ack: {out['kill_to_last_ack_s']} s",
                file=sys.stderr,
            )
            print(json.dumps(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(30)
        drop()


if __name__ == "__main__":
    main()
