#!/usr/bin/env python3
"""Cost per event of issue 20's privacy work on the device: bystander blur and sealing, and central's opening.

One event's evidence at 1080p, as the daemon makes it: the deciding frame and the face's frame (a frame of
../shared/video/bikelane-cyclists.mp4 upscaled to 1920x1080, the size of a camera's main stream), the face
crop, a 7 s clip (the first bytes of the 1080p25 H.264 test clip ``anqi_tools.testclips.make_test_clip``
makes, at the size a -6 s..+1 s remux of it has) and the 128-d embedding. For each step: wall ms and CPU ms
(process time, all threads) per event, median of ``--repeat`` runs; last line JSON.

    .venv/bin/python benchmarks/privacy_cost.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VIDEO = ROOT.parent / "shared" / "video" / "bikelane-cyclists.mp4"


def measure(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append((time.perf_counter() - w0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--clip-seconds", type=float, default=7.0)
    args = ap.parse_args()

    from anqi_contract.manifest import resolve
    from anqi_contract.sealed import KeyRing, Sealer, generate_keypair, parse_private_key, parse_public_key
    from anqi_tools.testclips import make_test_clip
    from edge.detect.faces import FaceDetector
    from edge.evidence.files import encode_jpeg
    from edge.evidence.privacy import FaceBlur

    cap = cv2.VideoCapture(str(VIDEO))
    for _ in range(200):
        ok, frame = cap.read()
    assert ok
    frame = cv2.resize(frame, (1920, 1080))
    clip_path = make_test_clip(width=1920, height=1080, fps=25, gop=50, loops=1)
    whole = clip_path.read_bytes()
    # a 7 s remux of a 25 s clip: 7/25 of its bytes
    n = int(len(whole) * args.clip_seconds / 24.0)
    clip = whole[:n]
    face_crop = frame[200:330, 900:1010].copy()
    emb = np.random.default_rng(0).normal(size=128)
    emb /= np.linalg.norm(emb)

    sk, pk = generate_keypair()
    sealer = Sealer("bench", parse_public_key(pk))
    ring = KeyRing({"bench": parse_private_key(sk)})
    blur = FaceBlur(FaceDetector(resolve("yunet")[1], 0.5, min_face_px=6, max_input_px=4096, top_k=500))
    jpgs = {
        "face.jpg": encode_jpeg(face_crop, 92),
        "context.jpg": encode_jpeg(frame, 88),
        "violation.jpg": encode_jpeg(frame, 88),
    }
    sealed = {k: sealer.seal(v) for k, v in jpgs.items()} | {"clip.mp4": sealer.seal(clip)}
    emb_sealed = sealer.seal_embedding(emb)

    rows: dict[str, tuple[float, float]] = {}
    rows["blur bystanders, 2 frames (YuNet 1080p + blur)"] = measure(
        lambda: (
            blur.blur_others(frame, (900, 200, 1010, 330)),
            blur.blur_others(frame, (900, 200, 1010, 330)),
        ),
        args.repeat,
    )
    rows["seal 3 JPEGs"] = measure(lambda: [sealer.seal(v) for v in jpgs.values()], args.repeat)
    rows[f"seal clip ({len(clip) / 1e6:.2f} MB)"] = measure(lambda: sealer.seal(clip), args.repeat)
    rows["seal embedding"] = measure(lambda: sealer.seal_embedding(emb), args.repeat)
    rows["central: open all 4 files + embedding"] = measure(
        lambda: ([ring.open(b) for b in sealed.values()], ring.open_embedding(emb_sealed)), args.repeat
    )
    seal_keys = [k for k in rows if k.startswith("seal")]
    device = (
        sum(rows[k][0] for k in seal_keys) + rows["blur bystanders, 2 frames (YuNet 1080p + blur)"][0],
        sum(rows[k][1] for k in seal_keys) + rows["blur bystanders, 2 frames (YuNet 1080p + blur)"][1],
    )
    print(f"{'step (per event)':<48} {'wall ms':>9} {'CPU ms':>9}")
    for k, (w, c) in rows.items():
        print(f"{k:<48} {w:9.1f} {c:9.1f}")
    print(f"{'device total (blur + sealing)':<48} {device[0]:9.1f} {device[1]:9.1f}")
    print(
        f"sealed overhead: {sum(len(v) for v in sealed.values()) - sum(map(len, jpgs.values())) - len(clip)} bytes "
        f"for 4 files; embedding field {len(emb_sealed)} characters"
    )
    out: dict[str, object] = {
        k: {"wall_ms": round(w, 2), "cpu_ms": round(c, 2)} for k, (w, c) in rows.items()
    }
    out["device_total"] = {"wall_ms": round(device[0], 2), "cpu_ms": round(device[1], 2)}
    out["clip_bytes"] = len(clip)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
