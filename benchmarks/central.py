"""Central benchmarks: ingest rate, table-1 classification latency at 1,000,000 stored events, 1:N face search.

    .venv/bin/python benchmarks/central.py [--events 1000000] [--gallery 100000] [--ingest 3000]
        [--ingest-batched 30000] [--batch 256] [--consumer 2000] [--pg URL | --no-pg]

* ingest: events/s into SQLite (WAL, file, ``synchronous=FULL``) and PostgreSQL (a temporary database
  on the local server, dropped after), the consumer's idempotent path (person upsert +
  ``INSERT .. ON CONFLICT DO NOTHING RETURNING``) two ways: ``--ingest`` events through
  :meth:`CentralStore.add_violation`, one transaction per event (``ingest_<db>_events_per_s``), and
  ``--ingest-batched`` events through :meth:`CentralStore.add_violations` in batches of ``--batch``,
  one transaction (multi-row statements) per batch, as the consumer's writer stores them
  (``ingest_<db>_batched_events_per_s``);
* classification: the store is bulk-loaded with ``--events`` events of 50,000 persons over 400 days
  (plus dispositions), then :meth:`CentralStore.assess_person` (the service's one tier evaluation)
  is timed for 1,000 random persons at random times: p50 / p95 / max in ms (target p95 < 20 ms);
* consumer: ``--consumer`` events (with face embeddings of 50 riders) published to a real mosquitto
  by an edge client in its own process and run through :class:`CentralConsumer` (parse, identity, store in batches, ack after the commit,
  tier): events/s from the first publish to the last ack received (``consumer_<db>_events_per_s``)
  and to the last event stored (``..._stored_per_s``); on SQLite again with ``ingest.batch_max: 1``
  (one transaction per event, ``consumer_sqlite_unbatched_...``) for comparison;
* cockpit (``--cockpit``): every query of the big-screen cockpit (central_sync.web.cockpit: counts by
  type today / 7 / 30 days, by point, 30-day trend, newest events, live-stream poll, devices, tiers,
  open tasks by community, the safe-riding rate per point over 7 days from 30 days of 5-minute pass counters
  of 50 devices: 432,000 rows, read from their hourly sums) on the SQLite store of ``--events`` events, 50 runs each: p50 / p95 ms
  (target p95 < 100 ms); ``--cockpit-only`` loads the store and times only these;
* face search: :class:`Gallery` with ``--gallery`` random 128-d unit vectors, one query at a time
  (p50 / p95 ms) and a batch of 256.

Prints a table and, last, one JSON line with every figure. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from central_sync.config import TierThresholds  # noqa: E402
from central_sync.identity import Gallery  # noqa: E402
from central_sync.storage.store import CentralStore, ViolationRecord  # noqa: E402

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
PERSONS = 50_000
TH = TierThresholds()


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def _ingest_records(n: int, tag: str) -> list[ViolationRecord]:
    return [
        ViolationRecord(
            str(uuid.uuid4()),
            "no_helmet",
            NOW - timedelta(seconds=i),
            f"{tag}-{i % 500}",
            point_id="pt-1",
            device_id="dev",
            site_id="site",
            body={"confidence": 0.9},
        )
        for i in range(n)
    ]


def bench_ingest(store: CentralStore, n: int) -> float:
    """One transaction (one commit) per event: :meth:`CentralStore.add_violation`."""
    recs = _ingest_records(n, "ing")
    t = time.perf_counter()
    for r in recs:
        store.add_violation(r)
    dt = time.perf_counter() - t
    for r in recs[:200]:
        assert store.add_violation(r) is False  # duplicate deliveries are refused by the unique id
    return n / dt


def bench_ingest_batched(store: CentralStore, n: int, batch: int = 256) -> float:
    """One transaction per ``batch`` events (the consumer's writer): :meth:`CentralStore.add_violations`."""
    recs = _ingest_records(n, "bat")
    t = time.perf_counter()
    for i in range(0, n, batch):
        assert store.add_violations(recs[i : i + batch]) == len(recs[i : i + batch])
    dt = time.perf_counter() - t
    assert store.add_violations(recs[:batch]) == 0  # a re-delivered batch stores nothing
    return n / dt


def synthetic_rows(n: int, seed: int = 1) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, datetime]]]:
    """(event_id, person_id, time) rows: most persons rare, a few heavy (power law); dispositions for 2%."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, PERSONS + 1) ** 0.8
    weights /= weights.sum()
    who = rng.choice(PERSONS, size=n, p=weights)
    secs = rng.integers(0, 400 * 86400, size=n)
    rows = [
        (
            str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i)),
            f"P{int(w):06d}",
            NOW - timedelta(seconds=int(s)),
        )
        for i, (w, s) in enumerate(zip(who, secs, strict=False))
    ]
    rows.sort()  # primary-key order: the bulk load appends to the B-tree
    disp = [
        (f"P{int(p):06d}", "education" if k % 2 else "fine", NOW - timedelta(days=int(d)))
        for k, (p, d) in enumerate(
            zip(
                rng.choice(PERSONS, size=PERSONS // 50, replace=False),
                rng.integers(1, 400, size=PERSONS // 50),
                strict=False,
            )
        )
    ]
    return rows, disp


EVENT_INDEXES = {
    "ix_events_person_time": "(person_id, time)",
    "ix_events_time": "(time)",
    "ix_events_point_time": "(point_id, time)",
    "ix_events_cockpit": "(time, violation_type, point_id, device_id, received_at)",
}


def load_sqlite(path: Path, rows: list[tuple[Any, ...]], disp: list[tuple[str, str, datetime]]) -> float:
    """Bulk fixture load (not the service's path): indexes dropped during the load and rebuilt after, as a DBA would."""
    t = time.perf_counter()
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous=OFF")
    for name in EVENT_INDEXES:
        con.execute(f"DROP INDEX {name}")
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    now_s = NOW.strftime(fmt)
    con.executemany(
        "INSERT INTO persons (person_id, kind, party_member, created_at, tier) VALUES (?, 'enrolled', 0, ?, 'none')",
        [(f"P{i:06d}", now_s) for i in range(PERSONS)],
    )
    con.executemany(
        "INSERT INTO events (event_id, schema_version, device_id, site_id, point_id, violation_type, time, person_id, "
        "face_found, media_expected, body, received_at) VALUES (?, 1, 'dev', 'site', 'pt-1', 'no_helmet', ?, ?, 1, 0, '{}', ?)",
        ((e, tm.strftime(fmt), p, now_s) for e, p, tm in rows),
    )
    con.executemany(
        "INSERT INTO dispositions (person_id, kind, time, source) VALUES (?, ?, ?, 'import')",
        [(p, k, tm.strftime(fmt)) for p, k, tm in disp],
    )
    for name, cols in EVENT_INDEXES.items():  # the migration's definitions
        con.execute(f"CREATE INDEX {name} ON events {cols}")
    con.commit()
    con.execute("ANALYZE")
    con.close()
    return time.perf_counter() - t


def load_pg(url: str, rows: list[tuple[Any, ...]], disp: list[tuple[str, str, datetime]]) -> float:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    t = time.perf_counter()
    with psycopg.connect(
        host=u.host, port=u.port or 5432, user=u.username, dbname=u.database, password=u.password
    ) as con:
        with con.cursor() as cur:
            for name in EVENT_INDEXES:
                cur.execute(f"DROP INDEX {name}")
            with cur.copy("COPY persons (person_id, kind, party_member, created_at, tier) FROM STDIN") as cp:
                for i in range(PERSONS):
                    cp.write_row((f"P{i:06d}", "enrolled", False, NOW, "none"))
            with cur.copy(
                "COPY events (event_id, schema_version, device_id, site_id, point_id, violation_type, time, person_id, "
                "face_found, media_expected, body, received_at) FROM STDIN"
            ) as cp:
                for e, p, tm in rows:
                    cp.write_row((e, 1, "dev", "site", "pt-1", "no_helmet", tm, p, True, 0, "{}", NOW))
            with cur.copy("COPY dispositions (person_id, kind, time, source) FROM STDIN") as cp:
                for p, k, tm in disp:
                    cp.write_row((p, k, tm, "import"))
            for name, cols in EVENT_INDEXES.items():
                cur.execute(f"CREATE INDEX {name} ON events {cols}")
        con.commit()
        con.autocommit = True
        con.execute(
            "VACUUM ANALYZE"
        )  # what autovacuum does in steady state (visibility map: index-only scans)
    return time.perf_counter() - t


def bench_classify(store: CentralStore, queries: int = 1000, seed: int = 2) -> dict[str, float]:
    rng = random.Random(seed)
    # warm-up (connection pool, statement cache)
    for _ in range(20):
        store.assess_person(f"P{rng.randrange(PERSONS):06d}", NOW, TH)
    lat = []
    tiers: dict[str, int] = {}
    for _ in range(queries):
        # half the queries on the heaviest 1% of persons (the expensive case), half uniform
        pid = f"P{rng.randrange(PERSONS // 100 if rng.random() < 0.5 else PERSONS):06d}"
        at = NOW - timedelta(seconds=rng.randrange(0, 30 * 86400))
        t = time.perf_counter()
        a = store.assess_person(pid, at, TH)
        lat.append((time.perf_counter() - t) * 1000)
        tiers[a.tier.value] = tiers.get(a.tier.value, 0) + 1
    return {"p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "max_ms": max(lat), "tiers": tiers}  # type: ignore[dict-item]


#: pass counters loaded for the cockpit's safe-riding query: devices x days of 5-minute intervals
PASS_DEVICES, PASS_DAYS, PASS_INTERVAL_S = 50, 30, 300


def load_passes(store: CentralStore, devices: int = PASS_DEVICES, days: int = PASS_DAYS) -> int:
    """Heartbeat pass counters as central stores them (web_pass_counts), one row per device and interval."""
    from sqlalchemy import insert

    from central_sync.storage.webtables import PassCount, PassHour

    rng = random.Random(7)
    start0 = NOW - timedelta(days=days)
    n = days * 86400 // PASS_INTERVAL_S
    total = 0
    for d in range(devices):
        rows: list[dict[str, Any]] = []
        for i in range(n):
            st = start0 + timedelta(seconds=i * PASS_INTERVAL_S)
            riders = rng.randint(0, 60)
            bad = rng.randint(0, riders // 5)
            rows.append(
                {
                    "device_id": f"anqi-dev-{d:04d}", "point_id": f"point-{d:03d}", "start": st,
                    "end": st + timedelta(seconds=PASS_INTERVAL_S), "riders": riders, "violators": bad,
                    "no_helmet": bad // 2, "updated_at": st,
                }
            )  # fmt: skip
        hours: dict[datetime, dict[str, Any]] = {}
        for r in rows:  # what the heartbeat reader keeps in step: the sums per hour
            h = hours.setdefault(
                r["start"].replace(minute=0, second=0, microsecond=0),
                {
                    "device_id": r["device_id"],
                    "point_id": r["point_id"],
                    "riders": 0,
                    "violators": 0,
                    "no_helmet": 0,
                },
            )
            h["hour"] = r["start"].replace(minute=0, second=0, microsecond=0)
            h["last_end"] = r["end"]
            for k in ("riders", "violators", "no_helmet"):
                h[k] += r[k]
        with store.session() as s:
            s.execute(insert(PassCount), rows)
            s.execute(insert(PassHour), list(hours.values()))
        total += len(rows)
    return total


def bench_cockpit(store: CentralStore, runs: int = 50) -> dict[str, float]:
    from central_sync.web import cockpit as ck

    t = time.perf_counter()
    passes = load_passes(store)
    print(f"cockpit: loaded {passes} pass-counter rows in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    today = ck.local_midnight(NOW, "Asia/Shanghai")
    queries = {
        "safe_riding_7d": lambda: ck.safe_riding(store, today - timedelta(days=6)),
        "today_by_type": lambda: ck.counts_by_type(store, today),
        "d7_by_type": lambda: ck.counts_by_type(store, today - timedelta(days=6)),
        "d30_by_type": lambda: ck.counts_by_type(store, today - timedelta(days=29)),
        "d30_by_point": lambda: ck.counts_by_point(store, today - timedelta(days=29)),
        "trend_30d": lambda: ck.daily_trend(store, NOW, "Asia/Shanghai"),
        "newest_events": lambda: ck.newest_events(store),
        "stream_poll": lambda: ck.newest_events(store, 20, NOW - timedelta(seconds=1)),
        "devices": lambda: ck.devices(store, NOW),
        "tiers": lambda: ck.tier_distribution(store),
        "open_tasks": lambda: ck.open_tasks_by_community(store),
    }
    out: dict[str, float] = {}
    for name, q in queries.items():
        q()  # warm-up
        lat, cpu = [], []
        for _ in range(runs):
            t, c = time.perf_counter(), time.thread_time()
            q()
            lat.append((time.perf_counter() - t) * 1000)
            cpu.append((time.thread_time() - c) * 1000)
        out[f"{name}_p50_ms"] = pct(lat, 50)
        out[f"{name}_p95_ms"] = pct(lat, 95)
        # CPU time of the querying thread: on a machine shared with other work the wall time mostly measures waiting
        out[f"{name}_cpu_p95_ms"] = pct(cpu, 95)
        print(
            f"cockpit {name:14s} p50 {pct(lat, 50):7.1f} ms  p95 {pct(lat, 95):7.1f} ms  cpu p95 {pct(cpu, 95):7.1f} ms",
            file=sys.stderr,
        )
    return out


def bench_faces(n: int, queries: int = 300) -> dict[str, float]:
    rng = np.random.default_rng(4)
    g = Gallery()
    vecs = rng.normal(size=(n, 128)).astype(np.float32)
    t = time.perf_counter()
    g.add_many([f"G{i}" for i in range(n)], vecs)
    build = time.perf_counter() - t
    q = vecs[rng.integers(0, n, size=queries)] + 0.05 * rng.normal(size=(queries, 128)).astype(np.float32)
    lat = []
    right = 0
    for i in range(queries):
        t = time.perf_counter()
        pid, _ = g.search(q[i])
        lat.append((time.perf_counter() - t) * 1000)
    ids, _ = g.search_batch(q[:256])
    t = time.perf_counter()
    g.search_batch(q[:256])
    batch = (time.perf_counter() - t) * 1000
    right = sum(
        1 for i, pid in enumerate(ids) if pid == f"G{int(np.argmax(g._m @ (q[i] / np.linalg.norm(q[i]))))}"
    )  # noqa: SLF001
    return {
        "gallery": n,
        "build_s": build,
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "batch256_ms": batch,
        "batch_agrees": right == 256,
    }


def _edge_client(port: int, topic: str, payloads: list[bytes], ready: Any, go: Any, out: Any) -> None:
    """The edge side of :func:`bench_consumer`, in its own process (as on a real edge box; in the consumer's
    process it would compete with it for the GIL): publish every payload (QoS 1), count the acks; puts
    ``(first publish, last ack, acks)`` (``time.monotonic``, system-wide) on ``out``."""
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from anqi_contract import protocol as P

    n = len(payloads)
    acks = threading.Semaphore(0)
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-edge", protocol=paho.MQTTv5)
    c.on_message = lambda cl, u, msg: acks.release(
        len(P.decode_acks(bytes(msg.payload)))
    )  # one ack or a batch
    c.connect("127.0.0.1", port)
    c.subscribe(topic.rsplit("/", 1)[0] + "/ack", qos=1)
    c.loop_start()
    time.sleep(0.5)
    ready.set()
    go.wait()
    t = time.monotonic()
    for p in payloads:
        c.publish(topic, p, qos=1)
    got = sum(acks.acquire(timeout=60) for _ in range(n))
    out.put((t, time.monotonic(), got))
    c.loop_stop()
    c.disconnect()


def bench_consumer(n: int, workdir: Path, db_url: str | None = None, **ingest: Any) -> dict[str, float]:
    """Events/s through the whole consumer, end to end: from the first publish by an edge client (its own
    process) to the last ack it receives (MQTT 5 via a real mosquitto, parse, identity, store in batches, ack
    after commit, tier); also to the last stored event. ``ingest``: overrides of the consumer's ``ingest``
    section (``batch_max=1``: one transaction per event)."""
    import multiprocessing

    from anqi_contract import protocol as P
    from anqi_contract.event import FaceInfo, ViolationEvent, ViolationType
    from anqi_contract.localbroker import LocalBroker
    from central_sync.consumer import CentralConsumer

    rng = np.random.default_rng(5)
    faces = [rng.normal(size=128) for _ in range(50)]
    payloads = []
    for i in range(n):
        f = faces[i % len(faces)] + 0.05 * rng.normal(size=128)
        ev = ViolationEvent(
            device_id="dev-1",
            site_id="site-1",
            point_id="pt-1",
            violation_type=ViolationType.no_helmet,
            time=NOW - timedelta(seconds=n - i),
            track_id=i,
            confidence=0.9,
            face=FaceInfo(
                found=True, quality=0.8, embedding_model="sface", embedding=(f / np.linalg.norm(f)).tolist()
            ),
        )
        payloads.append(P.encode_event(ev))
    mp = multiprocessing.get_context("spawn")
    with LocalBroker(workdir=workdir / "mosquitto") as broker:
        cons = CentralConsumer.for_broker(
            "127.0.0.1", broker.port, workdir / "consumer", db_url=db_url, ingest=ingest
        ).start()
        ready, go, res = mp.Event(), mp.Event(), mp.Queue()
        edge = mp.Process(
            target=_edge_client,
            args=(broker.port, P.event_topic("anqi/v1", "site-1", "dev-1"), payloads, ready, go, res),
        )
        edge.start()
        if not ready.wait(60):
            raise RuntimeError("edge client did not start")
        go.set()
        ok = cons.wait_stored(n, 600)
        stored_at = time.monotonic()
        t, last_ack, got = res.get(timeout=120)
        edge.join(30)
        cons.stop()
        persons = len(cons.stats.last_assessment)
        cons.store.close()
    return {
        "events": n,
        "stored_all": ok,
        "acks": got,
        "events_per_s": n / (last_ack - t),
        "stored_per_s": n / (stored_at - t),
        "persons": persons,
        "batch_max": cons.cfg.ingest.batch_max,
        "errors": cons.stats.errors,
    }


def pg_database(admin_url: str) -> tuple[str, Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"anqi_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--gallery", type=int, default=100_000)
    ap.add_argument("--ingest", type=int, default=3000, help="Events stored one per transaction.")
    ap.add_argument(
        "--ingest-batched",
        type=int,
        default=30000,
        help="Events stored in batches of --batch, one transaction each.",
    )
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument(
        "--consumer", type=int, default=2000, help="Events sent through the MQTT consumer (0: skip)."
    )
    ap.add_argument(
        "--pg",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="Admin URL of a PostgreSQL server.",
    )
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument(
        "--consumer-only",
        action="store_true",
        help="Only the consumer benchmark (batched; one by one too unless --no-unbatched): no ingest, classification, face search.",
    )
    ap.add_argument(
        "--no-unbatched", action="store_true", help="Skip the consumer run with ingest.batch_max: 1."
    )
    ap.add_argument("--cockpit", action="store_true", help="Also time the cockpit queries (SQLite store).")
    ap.add_argument(
        "--cockpit-only", action="store_true", help="Load the SQLite store, time the cockpit only."
    )
    args = ap.parse_args()
    import logging

    if args.cockpit_only:
        tmp = Path(tempfile.mkdtemp(prefix="anqi-bench-"))
        store = CentralStore(f"sqlite:///{tmp / 'central.db'}")
        store.migrate()
        rows, disp = synthetic_rows(args.events)
        print(
            f"sqlite: loaded {args.events} events in {load_sqlite(tmp / 'central.db', rows, disp):.0f} s",
            file=sys.stderr,
        )
        assert store.count_events() == args.events
        res = {
            "events_stored": args.events,
            **{f"cockpit_sqlite_{k}": v for k, v in bench_cockpit(store).items()},
        }
        store.close()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        print(json.dumps(res))
        return

    logging.getLogger("alembic").setLevel(logging.WARNING)
    out: dict[str, Any] = {} if args.consumer_only else {"events_stored": args.events}
    tmp = Path(tempfile.mkdtemp(prefix="anqi-bench-"))
    backends: list[tuple[str, str, Any]] = [("sqlite", f"sqlite:///{tmp / 'central.db'}", None)]
    if not args.no_pg and not args.consumer_only:
        try:
            url, drop = pg_database(args.pg)
            backends.append(("postgresql", url, drop))
        except Exception as e:  # noqa: BLE001
            print(f"PostgreSQL skipped: {type(e).__name__}: {str(e).splitlines()[0]}", file=sys.stderr)
    if not args.consumer_only:
        t0 = time.perf_counter()
        rows, disp = synthetic_rows(args.events)
        print(
            f"generated {len(rows)} events, {len(disp)} dispositions in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    for name, url, drop in backends if not args.consumer_only else []:
        try:
            store = CentralStore(url)
            store.migrate()
            out[f"ingest_{name}_events_per_s"] = bench_ingest(store, args.ingest)
            out[f"ingest_{name}_batched_events_per_s"] = bench_ingest_batched(
                store, args.ingest_batched, args.batch
            )
            print(
                f"{name}: ingest {out[f'ingest_{name}_events_per_s']:.0f} events/s one per transaction, "
                f"{out[f'ingest_{name}_batched_events_per_s']:.0f} events/s in batches of {args.batch}; "
                f"bulk loading {args.events} events ...",
                file=sys.stderr,
            )
            load_s = (
                load_sqlite(tmp / "central.db", rows, disp) if name == "sqlite" else load_pg(url, rows, disp)
            )
            out[f"bulk_load_{name}_s"] = load_s
            print(
                f"{name}: loaded in {load_s:.0f} s; timing {args.queries} classifications ...",
                file=sys.stderr,
            )
            assert store.count_events() == args.events + args.ingest + args.ingest_batched
            c = bench_classify(store, args.queries)
            out[f"classify_{name}_p50_ms"] = c["p50_ms"]
            out[f"classify_{name}_p95_ms"] = c["p95_ms"]
            out[f"classify_{name}_max_ms"] = c["max_ms"]
            out[f"classify_{name}_tiers"] = c["tiers"]
            if args.cockpit:
                out.update({f"cockpit_{name}_{k}": v for k, v in bench_cockpit(store).items()})
            store.close()
        finally:
            if drop:
                drop()
    if args.consumer:
        cres = bench_consumer(args.consumer, tmp / "c-sqlite")
        out.update({f"consumer_sqlite_{k}": v for k, v in cres.items()})
        print(
            f"sqlite consumer: {cres['events_per_s']:.0f} events/s to the last ack (batches)"
            + ("" if args.no_unbatched else "; one transaction per event ..."),
            file=sys.stderr,
        )
        if not args.no_unbatched:
            cres = bench_consumer(args.consumer, tmp / "c-sqlite-1", batch_max=1)
            out.update(
                {
                    f"consumer_sqlite_unbatched_{k}": v
                    for k, v in cres.items()
                    if k in ("events_per_s", "stored_per_s", "acks")
                }
            )
        if not args.no_pg:
            try:
                url, drop = pg_database(args.pg)
            except Exception as e:  # noqa: BLE001
                print(f"PostgreSQL consumer skipped: {type(e).__name__}", file=sys.stderr)
            else:
                try:
                    cres = bench_consumer(args.consumer, tmp / "c-pg", db_url=url)
                    out.update({f"consumer_postgresql_{k}": v for k, v in cres.items()})
                finally:
                    drop()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    if not args.consumer_only:
        f = bench_faces(args.gallery)
        out.update({f"face_search_{k}": v for k, v in f.items()})
    print()
    print(f"{'figure':<40} {'value':>14}")
    print("-" * 56)
    for k, v in out.items():
        if isinstance(v, dict):
            v = " ".join(f"{a}={b}" for a, b in sorted(v.items()))
            print(f"{k:<40} {v}")
        elif isinstance(v, float):
            print(f"{k:<40} {v:>14.2f}")
        else:
            print(f"{k:<40} {v!s:>14}")
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
