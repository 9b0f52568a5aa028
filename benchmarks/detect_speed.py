"""Cost of the daemon's detection path per 1080p frame (prints figures; no asserts).

    .venv/bin/python benchmarks/detect_speed.py [--config CONFIG] [--frames 20]

Frames: thaigate-dev 1080p validation images and helmet9-dev frames resized to 1920x1080 (up to
~10 riders each). Reports the whole frame and a capture-zone region (the lower 60 % of the frame,
full width: what `crop_to_zone` hands the detector for a typical 15-25 m band), plus
`classify_heads` on 10 head boxes (the per-track re-scoring), as median / p90 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anqi_contract.paths import shared_dir  # noqa: E402
from edge.config import load_config, parse_config  # noqa: E402
from edge.detect import RiderDetector  # noqa: E402


def frames(n: int) -> list[np.ndarray]:
    out = []
    for ds in ("helmet9-dev", "thaigate-dev"):
        stems = (ROOT / "models" / "train" / "splits" / f"{ds}.val.txt").read_text().split()
        for stem in stems[: n // 2]:
            img = cv2.imread(str(shared_dir() / "data" / ds / "images" / f"{stem}.jpg"))
            assert img is not None
            out.append(cv2.resize(img, (1920, 1080), interpolation=cv2.INTER_AREA))
    return out


def stats(ms: list[float]) -> str:
    return f"median {np.median(ms):6.1f} ms  p90 {np.percentile(ms, 90):6.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=Path)
    ap.add_argument("--frames", type=int, default=20)
    a = ap.parse_args()
    cfg = load_config(a.config) if a.config else parse_config({})
    det = RiderDetector.from_config(cfg.detect, cfg.face)
    imgs = frames(a.frames)
    det.detect(imgs[0])  # warm-up
    res: dict[str, dict[str, float]] = {}
    for name, roi in (("full_frame", None), ("zone_lower_60pct", (0, 432, 1920, 1080))):
        ms, parts, heads = [], [], []
        for img in imgs:
            t0 = time.perf_counter()
            d = det.detect(img, roi=roi)
            ms.append((time.perf_counter() - t0) * 1e3)
            parts.append(det.last_timing_ms)
            heads.append(len(d.heads))
        breakdown = {k: float(np.median([p[k] for p in parts])) for k in parts[0]}
        print(
            f"{name:<18} {stats(ms)}  heads/frame {np.mean(heads):.1f}  breakdown(median ms) "
            + " ".join(f"{k}={v:.1f}" for k, v in breakdown.items())
        )
        res[name] = {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90))}
    boxes = np.array([[100 + 150 * i, 300, 140 + 150 * i, 345] for i in range(10)], np.float32)
    ms = []
    for img in imgs:
        t0 = time.perf_counter()
        det.classify_heads(img, boxes)
        ms.append((time.perf_counter() - t0) * 1e3)
    print(f"{'classify 10 heads':<18} {stats(ms)}")
    res["classify_10_heads"] = {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90))}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
