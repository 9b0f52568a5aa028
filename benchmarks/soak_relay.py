"""Soak test of the relay: N events with small media, edge outbox -> real mosquitto -> central consumer.

The broker is restarted twice during the run (once gracefully, once with kill -9, which loses
whatever mosquitto had not yet saved: the edge's ack timeout must recover it). Prints delivered /
lost / duplicated counts and throughput; the last line is one JSON object with the keys
``sent``, ``delivered``, ``lost``, ``duplicated``, ``events_per_s`` (plus details).

    .venv/bin/python benchmarks/soak_relay.py                 # 10,000 events
    .venv/bin/python benchmarks/soak_relay.py --events 2000   # quicker

``--consumer central`` (the default) runs ``central_sync.consumer.CentralConsumer`` on a SQLite
database (the production consumer: stores each event once, verifies media, acks); ``--consumer
reference`` runs :class:`anqi_tools.reference_consumer.ReferenceConsumer` (protocol.py + the same
ack contract, in memory). Delivered = distinct events the consumer stored; duplicated = repeated
deliveries it recognised by event_id.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anqi_contract.event import FaceInfo, MediaRef, ViolationEvent, ViolationType  # noqa: E402
from anqi_contract.localbroker import LocalBroker  # noqa: E402
from anqi_contract.logs import setup_logging  # noqa: E402
from anqi_tools.reference_consumer import ReferenceConsumer  # noqa: E402
from edge.config import parse_config  # noqa: E402
from edge.health import Health  # noqa: E402
from edge.relay import MqttRelay, Outbox  # noqa: E402


class CentralSide:
    """What the soak needs of a consumer: distinct stored event ids, duplicates, verified media."""

    def __init__(self, kind: str, port: int, tmp: Path):
        self.kind = kind
        if kind == "central":
            from central_sync.config import parse_config as central_config
            from central_sync.consumer import CentralConsumer

            cfg = central_config(
                {
                    "database": {"url": f"sqlite:///{tmp / 'central.db'}"},
                    "mqtt": {"port": port, "client_id": "anqi-central-soak"},
                    "media": {"dir": str(tmp / "central-media")},
                },
                "soak",
                tmp,
            )
            self.central = CentralConsumer(cfg, media_grace_s=10).start()
        else:
            self.ref = ReferenceConsumer(
                "127.0.0.1", port, client_id="anqi-central-soak", media_grace_s=10
            ).start()

    def stored_ids(self) -> set[uuid.UUID]:
        if self.kind == "central":
            from sqlalchemy import select

            from central_sync.storage.models import Event

            with self.central.store.session() as s:
                return {uuid.UUID(e) for e in s.scalars(select(Event.event_id))}
        return set(self.ref.events)

    def count(self) -> int:
        return self.central.stats.events_stored if self.kind == "central" else len(self.ref.events)

    def duplicates(self) -> int:
        return self.central.stats.duplicates if self.kind == "central" else self.ref.duplicates

    def corrupt_chunks(self) -> int:
        return self.central.stats.corrupt_chunks if self.kind == "central" else self.ref.corrupt_chunks

    def verified_media(self, ids: set[uuid.UUID], size: int) -> int:
        if self.kind == "central":
            from sqlalchemy import func, select

            from central_sync.storage.models import Media

            with self.central.store.session() as s:
                return int(s.scalar(select(func.count()).select_from(Media).where(Media.size == size)) or 0)
        return sum(1 for e in ids if len(self.ref.events[e].media.get("face.jpg", b"")) == size)

    def first_order(self) -> list[uuid.UUID]:
        if self.kind == "central":
            from sqlalchemy import select

            from central_sync.storage.models import Event

            with self.central.store.session() as s:
                return [uuid.UUID(e) for e in s.scalars(select(Event.event_id).order_by(Event.received_at))]
        return list(self.ref.order)

    def stop(self) -> None:
        if self.kind == "central":
            self.central.stop()
            self.central.store.close()
        else:
            self.ref.stop()


T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)


def make_event(folder: Path, i: int, media_bytes: int) -> tuple[ViolationEvent, dict[str, Path]]:
    eid = uuid.uuid4()
    data = os.urandom(media_bytes)
    f = folder / f"{eid}.jpg"
    f.write_bytes(data)
    ref = MediaRef(
        name="face.jpg",
        kind="face",
        content_type="image/jpeg",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    ev = ViolationEvent(
        event_id=eid,
        device_id="anqi-soak-0001",
        site_id="soak",
        point_id="p1",
        violation_type=ViolationType.no_helmet,
        time=T0 + timedelta(milliseconds=i),
        track_id=i,
        confidence=0.9,
        face=FaceInfo(found=True),
        media=[ref],
    )
    return ev, {"face.jpg": f}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--media-bytes", type=int, default=2048, help="size of each event's face image")
    ap.add_argument(
        "--down-s", type=float, default=2.0, help="how long the broker stays down at each restart"
    )
    ap.add_argument("--timeout-s", type=float, default=600.0)
    ap.add_argument(
        "--prefill",
        action="store_true",
        help="fill the outbox first (untimed), then start the relay: measures the relay alone, not Outbox.add",
    )
    ap.add_argument("--consumer", choices=("central", "reference"), default="central")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    setup_logging("INFO" if args.verbose else "ERROR", sys.stderr)

    tmp = Path(tempfile.mkdtemp(prefix="anqi-soak-"))
    broker = LocalBroker(workdir=tmp / "broker").start()
    cfg = parse_config(
        {
            "device": {"device_id": "anqi-soak-0001", "site_id": "soak", "data_dir": str(tmp / "edge")},
            "relay": {
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": broker.port,
                    "max_inflight": 50,
                    "reconnect_min_s": 0.2,
                    "reconnect_max_s": 2,
                    "keepalive_s": 10,
                },
                "outbox": {"ack_timeout_s": 15, "max_disk_mb": 4096},
                "heartbeat_s": 5,
            },
        },
        "soak",
        tmp,
    )
    health = Health(tmp / "health.json", cfg.device.device_id)
    outbox = Outbox.for_config(cfg.relay.outbox, cfg.data_dir, health)
    consumer = CentralSide(args.consumer, broker.port, tmp)
    src = tmp / "evidence"
    src.mkdir()

    sent: list[uuid.UUID] = []
    add_s: list[float] = []

    def produce() -> None:
        for i in range(args.events):
            ev, files = make_event(src, i, args.media_bytes)
            t = time.perf_counter()
            outbox.add(ev, files, move=True)
            add_s.append(time.perf_counter() - t)
            sent.append(ev.event_id)

    restarts: list[dict[str, float | str]] = []
    max_depth = 0
    producer = threading.Thread(target=produce, name="soak-producer")
    if args.prefill:
        t = time.monotonic()
        producer.start()
        producer.join()
        print(f"outbox prefilled with {len(sent)} events in {time.monotonic() - t:.1f} s", flush=True)
    relay = MqttRelay(cfg.relay, cfg.device, outbox, health).start()
    t_start = time.monotonic()
    if not args.prefill:
        producer.start()
    plan = [(args.events // 3, "graceful"), (2 * args.events // 3, "kill -9")]
    deadline = t_start + args.timeout_s
    while time.monotonic() < deadline:
        max_depth = max(max_depth, outbox.stats().unacked)
        if plan and consumer.count() >= plan[0][0]:
            at, how = plan.pop(0)
            t = time.monotonic()
            broker.stop() if how == "graceful" else broker.kill()
            time.sleep(args.down_s)
            broker.start()
            restarts.append(
                {
                    "after_delivered": at,
                    "how": how,
                    "at_s": round(t - t_start, 2),
                    "down_s": round(time.monotonic() - t, 2),
                }
            )
            print(
                f"broker restarted ({how}) after {at} deliveries, down {time.monotonic() - t:.1f} s",
                flush=True,
            )
        if not producer.is_alive() and len(sent) == args.events and outbox.wait_until("acked", 0.5):
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - t_start
    producer.join(timeout=5)
    relay.stop()

    time.sleep(1.0)  # let the consumer finish what it received
    sent_set = set(sent)
    delivered_ids = consumer.stored_ids() & sent_set
    complete = consumer.verified_media(delivered_ids, args.media_bytes)
    stats = outbox.stats()
    first_order = [e for e in consumer.first_order() if e in sent_set]
    index = {e: i for i, e in enumerate(sent)}
    out_of_order = sum(1 for a, b in zip(first_order, first_order[1:], strict=False) if index[b] < index[a])
    result = {
        "sent": len(sent),
        "delivered": len(delivered_ids),
        "lost": len(sent_set - delivered_ids),
        "duplicated": consumer.duplicates(),
        "events_per_s": round(len(delivered_ids) / elapsed, 1),
        "elapsed_s": round(elapsed, 1),
        "media_verified": complete,
        "edge_acked": stats.acked,
        "edge_unacked": stats.unacked,
        "out_of_order_first_deliveries": out_of_order,
        "max_queue_depth": max_depth,
        "broker_restarts": restarts,
        "corrupt_chunks": consumer.corrupt_chunks(),
        "consumer": args.consumer,
        "prefill": args.prefill,
        "add_ms_p50": round(sorted(add_s)[len(add_s) // 2] * 1000, 2) if add_s else None,
        "add_ms_p99": round(sorted(add_s)[int(len(add_s) * 0.99)] * 1000, 2) if add_s else None,
        "relay_connects": relay.connects,
        "acks": relay.stats_acks,
    }
    print(
        f"sent {result['sent']}  delivered {result['delivered']}  lost {result['lost']}  duplicated {result['duplicated']}  "
        f"media verified {complete}  {result['events_per_s']} events/s over {result['elapsed_s']} s  "
        f"(edge acked {stats.acked}, unacked {stats.unacked}, out-of-order first deliveries {out_of_order})"
    )
    consumer.stop()
    outbox.close()
    broker.close()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    logging.getLogger("paho").setLevel(logging.ERROR)
    sys.exit(main())
