"""Write the YOLO data set for the rider/head detector from ../shared/data (train / val by the written split).

    python models/train/prepare_data.py [--out DIR] [--quality 90] [--oversample thaigate-dev=2] [--width 1024]
                                        [--format jpg|webp] [--val-keep N]
                                        # -> models/build/datasets/det/ (det.yaml, train.txt)

Classes: 0 rider, 1 helmet, 2 no_helmet (heads; helmet or not is the detector's own decision,
the head classifier can re-score it). Whole images, scaled to 1024 px wide at their true aspect
(helmet9 un-stretched to 16:9 first), so the detector learns heads at the scale the runtime feeds
it (``detect.input_width``). ``--oversample`` repeats a data set's training images in train.txt
(thaigate-dev has a third of helmet9's frames and most of the frontal no-helmet heads).
thaigate-dev has no rider labels: its riders are learnt as background, which is why the runtime
estimates a rider box under heads that sit outside any rider (``detect.riders_from_heads``).

helmet9-dev's frames were stored squeezed to 1024x1024: 1024 px is all the horizontal detail they
hold, so they are never written wider than that (ultralytics scales every image to ``imgsz``
when it loads it, as the runtime scales a frame to ``detect.input_width``). For the copy that
travels to a GPU machine (64 MiB in all), ``--format webp`` is about 40 % smaller than JPEG at a
like quality, and ``--val-keep`` keeps only a few validation images for ultralytics' own end check
(the project's validation is ``benchmarks/accuracy.py``, run where the data lives).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BUILD, DATASETS, load_image, read_labels, stems, val_stems  # noqa: E402

CLASSES = ["rider", "helmet", "no_helmet"]
WIDTH = 1024
#: the widest a data set's frames are written: helmet9-dev was squeezed to 1024 px wide at source
MAX_WIDTH = {"helmet9-dev": 1024}
LABEL = {name: i for i, name in enumerate(CLASSES)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=BUILD / "datasets" / "det")
    ap.add_argument("--quality", type=int, default=90, help="JPEG / WebP quality of the written images")
    ap.add_argument(
        "--width", type=int, default=WIDTH, help="width the frames are scaled to (never past their detail)"
    )
    ap.add_argument("--format", choices=("jpg", "webp"), default="jpg", help="image format written")
    ap.add_argument(
        "--val-keep",
        type=int,
        default=0,
        help="write only the first N validation images of each data set (0 = all)",
    )
    ap.add_argument(
        "--oversample",
        action="append",
        default=["thaigate-dev=2"],
        metavar="DATASET=N",
        help="list a data set's training images N times in train.txt",
    )
    a = ap.parse_args()
    repeat = {k: int(v) for k, v in (s.split("=", 1) for s in a.oversample)}
    out = a.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    n = {"train": 0, "val": 0}
    train_list: list[str] = []
    for ds in DATASETS:
        val = set(val_stems(ds))
        kept_val = set(sorted(val)[: a.val_keep]) if a.val_keep else val
        for stem in stems(ds):
            split = "val" if stem in val else "train"
            if split == "val" and stem not in kept_val:
                continue
            img = load_image(ds, stem)
            h, w = img.shape[:2]
            width = min(a.width, w, MAX_WIDTH.get(ds, w))
            img = cv2.resize(img, (width, round(width * h / w)), interpolation=cv2.INTER_AREA)
            (out / "images" / split).mkdir(parents=True, exist_ok=True)
            (out / "labels" / split).mkdir(parents=True, exist_ok=True)
            name = f"{ds}_{stem}"
            quality = cv2.IMWRITE_WEBP_QUALITY if a.format == "webp" else cv2.IMWRITE_JPEG_QUALITY
            if not cv2.imwrite(str(out / "images" / split / f"{name}.{a.format}"), img, [quality, a.quality]):
                raise SystemExit(f"could not write {out / 'images' / split / name}.{a.format}")
            lines = [
                f"{LABEL[b.label]} {b.cx:.6f} {b.cy:.6f} {b.w:.6f} {b.h:.6f}" for b in read_labels(ds, stem)
            ]
            (out / "labels" / split / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
            n[split] += 1
            if split == "train":
                train_list += [f"./images/train/{name}.{a.format}"] * repeat.get(ds, 1)
    (out / "train.txt").write_text("".join(p + "\n" for p in train_list))
    # a relative path: the folder can be moved (the GPU machine gets a copy); the trainer resolves it
    (out / "det.yaml").write_text(
        "path: .\ntrain: train.txt\nval: images/val\nnames:\n"
        + "".join(f"  {i}: {c}\n" for i, c in enumerate(CLASSES))
    )
    print(f"wrote {out}: {n} images, {len(train_list)} training entries")


if __name__ == "__main__":
    main()
