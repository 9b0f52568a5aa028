"""Write the YOLO data set for the rider/head detector from ../shared/data (train / val by the written split).

    python models/train/prepare_data.py        # -> models/build/datasets/det/

Classes: 0 rider, 1 head (helmet or not: the head classifier decides). Images are scaled to
1024 px wide at their true aspect (helmet9 un-stretched to 16:9); training images are cut into
one of four overlapping 512x512 tiles (seeded) so the detector learns heads at the 1024-px scale while each step
costs a 512-px step (the runtime runs the whole region at ``detect.input_width`` in one pass).
Validation images stay whole.
"""

from __future__ import annotations

import shutil
import sys

import cv2
import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import BUILD, DATASETS, load_image, read_labels, stems, val_stems  # noqa: E402

CLASSES = ["rider", "head"]
TILE = 512
WIDTH = 1024
#: one seeded random tile per image keeps an epoch short (a checkpoint every ~80 steps on a shared CPU)
TILES_PER_IMAGE = 1
LABEL = {"rider": 0, "helmet": 1, "no_helmet": 1}
OUT = BUILD / "datasets" / "det"


def main() -> None:
    rng = np.random.default_rng(0)
    if OUT.exists():
        shutil.rmtree(OUT)
    n = {"train": 0, "val": 0}
    for ds in DATASETS:
        val = set(val_stems(ds))
        for stem in stems(ds):
            split = "val" if stem in val else "train"
            img = load_image(ds, stem)
            h, w = img.shape[:2]
            img = cv2.resize(img, (WIDTH, round(WIDTH * h / w)), interpolation=cv2.INTER_AREA)
            (OUT / "images" / split).mkdir(parents=True, exist_ok=True)
            (OUT / "labels" / split).mkdir(parents=True, exist_ok=True)
            boxes = read_labels(ds, stem)
            if split == "val":
                cv2.imwrite(str(OUT / "images" / split / f"{ds}_{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
                lines = [f"{LABEL[b.label]} {b.cx:.6f} {b.cy:.6f} {b.w:.6f} {b.h:.6f}" for b in boxes]
                (OUT / "labels" / split / f"{ds}_{stem}.txt").write_text("\n".join(lines) + "\n")
                n[split] += 1
                continue
            H, W = img.shape[:2]
            xs = sorted({0, max(0, W - TILE)})
            ys = sorted({0, max(0, H - TILE)})
            positions = [(tx, ty) for ty in ys for tx in xs]
            for tx, ty in [positions[int(rng.integers(len(positions)))]] if TILES_PER_IMAGE == 1 else positions:
                if True:
                    tile = img[ty:ty + TILE, tx:tx + TILE]
                    th, tw = tile.shape[:2]
                    lines = []
                    for b in boxes:
                        x0, y0 = b.cx * W - b.w * W / 2 - tx, b.cy * H - b.h * H / 2 - ty
                        x1, y1 = x0 + b.w * W, y0 + b.h * H
                        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, tw), min(y1, th)
                        if cx1 <= cx0 or cy1 <= cy0 or (cx1 - cx0) * (cy1 - cy0) < 0.5 * (x1 - x0) * (y1 - y0):
                            continue
                        lines.append(f"{LABEL[b.label]} {(cx0 + cx1) / 2 / tw:.6f} {(cy0 + cy1) / 2 / th:.6f} {(cx1 - cx0) / tw:.6f} {(cy1 - cy0) / th:.6f}")
                    name = f"{ds}_{stem}_{tx}_{ty}"
                    cv2.imwrite(str(OUT / "images" / split / f"{name}.jpg"), tile, [cv2.IMWRITE_JPEG_QUALITY, 95])
                    (OUT / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + "\n")
                    n[split] += 1
            continue
            n[split] += 1
    (OUT / "det.yaml").write_text(f"path: {OUT}\ntrain: images/train\nval: images/val\nnames:\n" + "".join(f"  {i}: {c}\n" for i, c in enumerate(CLASSES)))
    print(f"wrote {OUT}: {n}")


if __name__ == "__main__":
    main()
