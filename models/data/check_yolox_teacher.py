"""How far a COCO YOLOX-nano ONNX gets as a rider teacher on ../shared's labelled frames (issue 16 point 2).

It decodes the model's raw (1, 3549, 85) output (strides 8/16/32, letterbox pad 114, BGR, no
normalisation: the YOLOX ONNX demo's convention), keeps COCO person / bicycle / motorcycle, and counts
how many labelled rider / bike boxes a teacher box of the matching kind covers at IoU >= 0.3, and how
long one frame takes on this CPU. The model file is third-party: pass its path (it is never committed),
e.g. `git -C /work/.mirror/Bigisland1729+object-detection-models/repo show HEAD:yolox_nano.onnx > /tmp/yolox_nano.onnx`.

    .venv/bin/python models/data/check_yolox_teacher.py /tmp/yolox_nano.onnx ../shared/data/helmet9-dev
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

SIZE = 416
COCO = {0: "person", 1: "bicycle", 3: "motorcycle"}


def decode(out: np.ndarray, ratio: float, conf: float) -> list[tuple[str, np.ndarray, float]]:
    grids, strides = [], []
    for s in (8, 16, 32):
        n = SIZE // s
        yv, xv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((n * n, 1), s))
    g, st = np.concatenate(grids), np.concatenate(strides)
    xy = (out[:, :2] + g) * st
    wh = np.exp(out[:, 2:4]) * st
    scores = out[:, 4:5] * out[:, 5:]
    found = []
    for cls, name in COCO.items():
        keep = scores[:, cls] >= conf
        if not keep.any():
            continue
        b = np.concatenate((xy[keep] - wh[keep] / 2, wh[keep]), 1) / ratio
        sc = scores[keep, cls]
        for i in cv2.dnn.NMSBoxes(b.tolist(), sc.tolist(), conf, 0.45):
            x, y, w, h = b[int(i)]
            found.append((name, np.array([x, y, x + w, y + h]), float(sc[int(i)])))
    return found


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path, help="a ../shared data folder with images/, labels/, classes.txt")
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--limit", type=int, default=0, help="first N frames only (0: all)")
    args = ap.parse_args()
    classes = (args.data / "classes.txt").read_text().split()
    want = {"rider": {"person"}, "bike": {"bicycle", "motorcycle"}}
    sess = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    hit = {k: 0 for k in want}
    total = {k: 0 for k in want}
    ms: list[float] = []
    images = sorted((args.data / "images").glob("*.jpg"))
    if args.limit:
        images = images[: args.limit]
    for path in images:
        img = cv2.imread(str(path))
        if img is None:
            raise SystemExit(f"error: cannot read image {path}")
        h, w = img.shape[:2]
        r = min(SIZE / h, SIZE / w)
        pad = np.full((SIZE, SIZE, 3), 114, np.uint8)
        pad[: int(h * r), : int(w * r)] = cv2.resize(img, (int(w * r), int(h * r)))
        x = pad.transpose(2, 0, 1)[None].astype(np.float32)
        t0 = time.perf_counter()
        out = sess.run(None, {"images": x})[0][0]
        ms.append((time.perf_counter() - t0) * 1000)
        found = decode(out, r, args.conf)
        label = args.data / "labels" / (path.stem + ".txt")
        for line in label.read_text().splitlines() if label.exists() else []:
            c, cx, cy, bw, bh = line.split()
            name = classes[int(c)]
            if name not in want:
                continue
            box = np.array(
                [
                    (float(cx) - float(bw) / 2) * w,
                    (float(cy) - float(bh) / 2) * h,
                    (float(cx) + float(bw) / 2) * w,
                    (float(cy) + float(bh) / 2) * h,
                ]
            )
            total[name] += 1
            if any(k in want[name] and iou(box, b) >= 0.3 for k, b, _ in found):
                hit[name] += 1
    for name in want:
        n = total[name]
        print(f"{name}: {hit[name]}/{n} labelled boxes covered at IoU>=0.3 ({hit[name] / max(n, 1):.3f})")
    print(f"frames {len(images)}, inference median {statistics.median(ms):.1f} ms at {SIZE}x{SIZE}")


if __name__ == "__main__":
    main()
