"""Cost of the per-frame stages after detection: tracker + capture zone + rules, and face capture on
head crops (real YuNet on frames of the bike-lane clip). Prints one table and, last, one JSON line.

    .venv/bin/python benchmarks/tracking.py
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np

from edge.config import load_config
from edge.detect.rider import FrameDetections as Dets  # what the tracker is fed
from edge.rules import RuleSet
from edge.track import RiderTracker, Track, TrackPoint
from edge.zone import CaptureZone

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "examples" / "bikelane-cyclists.yaml"
VIDEO = ROOT.parent / "shared" / "video" / "bikelane-cyclists.mp4"
T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)


def riders_frame(n: int, i: int) -> Dets:
    """``n`` riders approaching in lanes across a 640x360 view, each with a head box."""
    xs = 40 + np.arange(n) * (560 / max(n, 1))
    grow = 1 + 0.02 * i
    w, h = 30 * grow, 90 * grow
    y1 = np.full(n, 200 + 1.2 * i)
    r = np.c_[xs, y1 - h, xs + w, y1].astype(np.float32)
    hd = np.c_[xs + w * 0.3, y1 - h, xs + w * 0.7, y1 - h + w * 0.4].astype(np.float32)
    return Dets(r, np.full(n, 0.9, np.float32), hd, np.full(n, 0.8, np.float32), np.full(n, 0.9, np.float32))


def bench_tracking(n: int, frames: int = 100) -> float:
    cfg = load_config(CONFIG)
    tr = RiderTracker(cfg.track, CaptureZone.from_config(cfg.zone))
    rules = RuleSet.from_config(cfg.rules, cfg.track.motion_window_s)
    t0 = time.perf_counter()
    for i in range(frames):
        upd = tr.update(riders_frame(n, i), i * 0.1, T0 + timedelta(seconds=i * 0.1), (640, 360))
        rules.check(upd.active)
    return (time.perf_counter() - t0) / frames * 1e3


def bench_faces() -> tuple[float, int]:
    from anqi_contract.manifest import resolve
    from edge.detect.faces import FaceDetector
    from edge.evidence import FaceCapture

    cap = cv2.VideoCapture(str(VIDEO))
    frames = []
    for i in range(238):
        ok, f = cap.read()
        if ok and i >= 150 and i % 3 == 0:
            frames.append(f)
    fc = FaceCapture(FaceDetector(resolve("yunet")[1], 0.6, min_face_px=8))
    head = (100.0, 20.0, 200.0, 90.0)
    pt = TrackPoint(
        0.0, T0, (60.0, 20.0, 240.0, 360.0), 0.9, "rider", (0.0, 20.0), 20.0, True, head, 0.9, 0.9
    )
    from collections import deque

    track = Track(
        key=1, box=np.zeros(4), first_t_s=0.0, first_utc=T0, last_t_s=0.0, history=deque([pt]), track_id=1
    )
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        fc.offer(track, f, i * 0.1, T0)
    return (time.perf_counter() - t0) / len(frames) * 1e3, len(frames)


def main() -> None:
    rows = {n: bench_tracking(n) for n in (1, 5, 20, 50)}
    face_ms, face_n = bench_faces()
    print(f"{'riders per frame':>18} {'track+zone+rules ms/frame':>26}")
    for n, ms in rows.items():
        print(f"{n:>18} {ms:>26.3f}")
    print(f"face capture on one head crop (YuNet, {face_n} frames): {face_ms:.2f} ms")
    print(
        json.dumps(
            {
                "track_ms_1": round(rows[1], 3),
                "track_ms_5": round(rows[5], 3),
                "track_ms_20": round(rows[20], 3),
                "track_ms_50": round(rows[50], 3),
                "face_crop_ms": round(face_ms, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
