"""``anqi-central demo``: the whole central side on this machine with a demo data set, in one command.

Starts a private mosquitto (loopback, free port), the central consumer, and the web service; publishes
demo events over MQTT the way an edge does (deciding frame + clip, faces of three enrolled riders and one
unknown rider), so persons, tiers and table-2 tasks come from the real consumer; then prints the URLs of
the cockpit (kiosk token), the officers' console (an administrator account) and a rider's link.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
import numpy as np

POINTS = ["湖州-人民路口", "湖州-红旗路口", "湖州-凤凰路口"]
TYPES = ["no_helmet", "no_helmet", "no_helmet", "wrong_way", "red_light", "passenger"]


def _face(seed: int, rng: np.random.Generator) -> list[float]:
    v = np.random.default_rng(seed).normal(size=128) + 0.2 * rng.normal(size=128)
    return (v / np.linalg.norm(v)).tolist()


def _media(folder: Path, i: int) -> dict[str, Path]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    img = np.full((360, 640, 3), (60, 50, 40), np.uint8)
    cv2.rectangle(img, (240, 70), (400, 330), (0, 0, 255), 3)
    cv2.putText(img, f"demo {i}", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
    cv2.imwrite(str(folder / "violation.jpg"), img)
    cv2.imwrite(
        str(folder / "preview.jpg"), cv2.GaussianBlur(img, (9, 9), 0)
    )  # the edge's all-faces-blurred copy
    files = {"violation.jpg": folder / "violation.jpg", "preview.jpg": folder / "preview.jpg"}
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        subprocess.run(  # nosec B603 - fixed argument list, the ffmpeg found on PATH
            [ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10", "-t", "2",
             "-pix_fmt", "yuv420p", "-c:v", "libx264", str(folder / "clip.mp4")],
            check=True,
        )  # fmt: skip
        files["clip.mp4"] = folder / "clip.mp4"
    return files


def _edge_heartbeats(pub: Any, rng: np.random.Generator, every_s: float = 10.0) -> None:
    """The three demo devices as an edge keeps them: status online (retained) and a heartbeat every ``every_s``
    with pass counters of the last hour's 5-minute intervals (riders through the zone, violators among them)."""
    from anqi_contract import protocol as P

    started = time.monotonic()
    counts: dict[tuple[int, float], list[int]] = {}
    while True:
        now = time.time()
        for d in range(3):
            dev, point = f"anqi-dev-000{1 + d}", POINTS[d]
            topic = P.topic_for("anqi/v1", "huzhou-demo", dev, P.TopicKind.status)
            pub.publish(
                topic, P.encode_status(P.DeviceStatus(state="online", device_id=dev, time=now)), 1, True
            )
            cur = now - now % 300
            for k in range(12):
                c = counts.setdefault((d, cur - 300 * k), [int(rng.integers(5, 40)), 0])
                if k == 0:  # the current interval counts on
                    c[0] += int(rng.integers(0, 3))
                c[1] = min(c[0], max(c[1], int(c[0] * rng.uniform(0.02, 0.2))))
            passes = [
                P.PassCount(
                    point_id=point, start=st, end=st + 300, riders=c[0], violators=c[1], no_helmet=c[1] // 2
                )
                for (dd, st), c in sorted(counts.items())
                if dd == d and st > cur - 3600
            ]
            hb = P.Heartbeat(
                device_id=dev, time=now, uptime_s=time.monotonic() - started, queue_depth=0, passes=passes,
                components={"camera": "up", "detector": "up", "relay": "up"},
            )  # fmt: skip
            pub.publish(
                P.topic_for("anqi/v1", "huzhou-demo", dev, P.TopicKind.heartbeat), P.encode_heartbeat(hb)
            )
        time.sleep(every_s)


@click.command()
@click.option("--port", type=int, default=8080, show_default=True, help="HTTP port of the web service.")
@click.option("--events", type=int, default=40, show_default=True, help="Demo events to publish.")
def demo(port: int, events: int) -> None:
    """Start mosquitto + consumer + web with demo data and print the three faces' URLs (Ctrl-C stops)."""
    import paho.mqtt.client as mqtt
    import uvicorn

    from anqi_contract import protocol as P
    from anqi_contract.event import FaceInfo, MediaRef, ViolationEvent, ViolationType
    from anqi_contract.localbroker import LocalBroker
    from central_sync.config import parse_config
    from central_sync.consumer import CentralConsumer
    from central_sync.identity import EnrolmentRecord
    from central_sync.persons import enrol_embeddings
    from central_sync.sharing.http import create_app
    from central_sync.storage.models import Task
    from central_sync.storage.store import CentralStore
    from central_sync.web import auth

    root = Path(tempfile.mkdtemp(prefix="anqi-central-demo-"))
    broker = LocalBroker(workdir=root / "mosquitto").start()
    cfg = parse_config(
        {
            "database": {"url": f"sqlite:///{root / 'central.db'}"},
            "mqtt": {"port": broker.port, "client_id": "anqi-central-demo"},
            "media": {"dir": str(root / "media")},
            "api": {"port": port},
        },
        "demo",
        root,
    )
    store = CentralStore.from_config(cfg)
    cons = CentralConsumer(cfg, store=store, media_grace_s=2.0)
    rng = np.random.default_rng(7)
    riders = [("P-001", "张三", "飞英社区"), ("P-002", "李四", "龙溪社区"), ("P-003", "王芳", "飞英社区")]
    for k, (pid, name, comm) in enumerate(riders):
        enrol_embeddings(
            store, cfg, cons.resolver, EnrolmentRecord(pid, name=name, community=comm),
            np.asarray(_face(100 + k, rng))[None, :],
        )  # fmt: skip
    cons.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anqi-demo-edge")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    now = datetime.now(timezone.utc)
    for i in range(events):
        files = _media(root / "edge" / str(i), i)
        refs = [
            MediaRef(
                name=n, kind="clip" if n.endswith(".mp4") else "context",
                content_type="video/mp4" if n.endswith(".mp4") else "image/jpeg",
                size=p.stat().st_size, sha256=hashlib.sha256(p.read_bytes()).hexdigest(),
            )
            for n, p in files.items()
        ]  # fmt: skip
        who = 100 + (i % 4)  # the fourth face is nobody enrolled: an unknown-person file
        ev = ViolationEvent(
            event_id=uuid.uuid4(), device_id=f"anqi-dev-000{1 + i % 3}", site_id="huzhou-demo",
            point_id=POINTS[i % 3], violation_type=ViolationType(TYPES[i % len(TYPES)]),
            time=now - timedelta(hours=int(rng.integers(0, 20 * 24)) if i >= 8 else i),
            track_id=i, confidence=0.9,
            face=FaceInfo(found=True, quality=0.8, size_px=64, embedding_model="sface", embedding=_face(who, rng)),
            media=refs,
        )  # fmt: skip
        for n, p in files.items():
            for _, payload in P.iter_media_chunks(ev.event_id, n, p, 64 * 1024):
                pub.publish(
                    P.media_topic("anqi/v1", ev.site_id, ev.device_id, ev.event_id, n), payload, qos=1
                )
        pub.publish(P.event_topic("anqi/v1", ev.site_id, ev.device_id), P.encode_event(ev), qos=1)
    deadline = time.monotonic() + 60
    while store.count_events() < events and time.monotonic() < deadline:
        time.sleep(0.2)
    beats = threading.Thread(target=_edge_heartbeats, args=(pub, rng), daemon=True)
    app = create_app(cfg, store)
    beats.start()
    kiosk = auth.create_kiosk_token(store, "demo-big-screen")
    password = secrets.token_urlsafe(9)
    auth.add_user(store, "admin", password, "admin")
    from sqlalchemy import select

    with store.session() as s:  # the link an SMS reminder task carries (made with its case-study task)
        task = s.scalars(select(Task).where(Task.status == "open", Task.kind == "sms_reminder")).first()
        link = task.payload.get("link") if task else None
    base = f"http://127.0.0.1:{port}"
    click.echo(f"stored {store.count_events()} demo events in {root}")
    click.echo(f"驾驶舱 cockpit (1920x1080):  {base}/cockpit?token={kiosk}")
    click.echo(f"管理端 console:              {base}/console   (user admin, password {password})")
    click.echo(f"服务端 rider link (390 px):  {link}" if link else "服务端: no open reminder task")
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_config=None)
    finally:
        pub.loop_stop()
        pub.disconnect()
        cons.stop()
        store.close()
        broker.close()
