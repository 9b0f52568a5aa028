"""Write the CPU fine-tuning data set: ../shared training frames plus the public corpus's training frames,
cut into windows of at most --tile px at the scale the runtime feeds the detector.

    .train/bin/python models/train/prepare_finetune.py [--tile 640] [--corpus-dir models/build/corpus]
                                                       [--rider-conf 0.4] [--oversample thaigate-dev=2]
                                                       [--oversample corpus:kaggle-bikeshelmets=0]  # 0 = leave out
                                                       [--dusk 0.35]  # + dusk copies of 35 % of the frames
                                                       # -> models/build/datasets/det-ft/ (det.yaml, train.txt)

Why windows: training at imgsz 640 is what makes a CPU run fit (2.5x fewer pixels than 1024), but
ultralytics scales every image so its long side is ``imgsz``: a 1024-px frame would be shrunk to
640 and its 10-25 px thaigate heads to 6-16 px, a size the runtime never shows the model (it feeds
frames 1024 px wide, ``detect.input_width``, and never enlarges a smaller one, ``detect.max_upscale``).
So each frame is first scaled the way the runtime scales it (to min(width, 1024) px wide; helmet9
un-stretched first), then cut into overlapping windows of at most --tile x --tile px; a window
smaller than --tile on both sides is padded (grey 114, bottom/right) to --tile so it is not enlarged.
A box keeps its clipped part when at least half of it lies in the window, else it is left out.

Corpus frames label heads only. So that their riders are not taught as background, each corpus
training frame gets rider boxes from the shipped detector's own predictions (``anqi-rider-head``,
run on the frame as the runtime feeds it, rider score >= --rider-conf, NMS 0.5): pseudo-labels from
our own model, no third-party weight involved. thaigate-dev is written as before (no rider
labels, as the shipped model was trained). Only training splits are written; the validation frames
(``models/train/splits/*.val.txt``, the corpus's ``val/``) are never read here, except that
det.yaml's ``val`` points at a folder of two shared validation frames that ultralytics requires
to exist (the trainer runs with val=False and never reads it for training).

``--dusk F``: an evening camera, as the runtime hands it to the detector. For a fraction F of the training
frames (seeded) one more copy is written: the frame darkened by a random dusk (grey level x -> gain * x **
gamma, gamma 1.4-2.6, gain 0.3-0.8, a colour cast, sensor noise, in a third of them grey like an IR-cut
camera), then lifted back by the runtime's own ``lift_low_light`` at the default
``detect.low_light_lift``, which is what the detector sees of such a camera at run time: flat contrast,
noise and crushed shadows. Its parameters are drawn at random, unlike ``benchmarks/accuracy.py --darken``'s
fixed curve (gamma 1.8, gain 0.55, noise 0.015), so that benchmark is not the training recipe.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BUILD,
    DATASETS,
    DUSK_GAIN,
    DUSK_GAMMA,
    DUSK_NOISE,
    MODELS,
    load_image,
    read_labels,
    stems,
    val_stems,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from edge.config.detect import DetectConfig  # noqa: E402
from edge.detect.rider import lift_low_light  # noqa: E402

CLASSES = ["rider", "helmet", "no_helmet"]
LABEL = {name: i for i, name in enumerate(CLASSES)}
RUNTIME_WIDTH = 1024
#: helmet9-dev's frames hold only 1024 px of horizontal detail (squeezed at source)
MAX_WIDTH = {"helmet9-dev": 1024}


def windows(length: int, tile: int) -> list[int]:
    """Start offsets of windows of ``tile`` px covering ``length`` px (evenly spread, overlapping)."""
    if length <= tile:
        return [0]
    n = -(-length // tile)
    if n == 1:
        return [0]
    step = (length - tile) / (n - 1)
    return [round(i * step) for i in range(n)]


def cut(img: np.ndarray, boxes: list[tuple[int, float, float, float, float]], tile: int):  # type: ignore[no-untyped-def]
    """Windows of ``img`` (pixel boxes ``(cls, x1, y1, x2, y2)``) with their YOLO label lines."""
    h, w = img.shape[:2]
    for y0 in windows(h, tile):
        for x0 in windows(w, tile):
            crop = img[y0 : y0 + tile, x0 : x0 + tile]
            ch, cw = crop.shape[:2]
            if ch < tile and cw < tile:  # pad so the loader does not enlarge it
                canvas = np.full((tile, tile, 3), 114, np.uint8)
                canvas[:ch, :cw] = crop
                crop = canvas
            oh, ow = crop.shape[:2]
            lines = []
            for c, x1, y1, x2, y2 in boxes:
                area = max(x2 - x1, 0) * max(y2 - y1, 0)
                cx1, cy1 = max(x1, x0), max(y1, y0)
                cx2, cy2 = min(x2, x0 + cw), min(y2, y0 + ch)
                if area <= 0 or cx2 <= cx1 or cy2 <= cy1 or (cx2 - cx1) * (cy2 - cy1) < 0.5 * area:
                    continue
                lines.append(
                    f"{c} {((cx1 + cx2) / 2 - x0) / ow:.6f} {((cy1 + cy2) / 2 - y0) / oh:.6f} "
                    f"{(cx2 - cx1) / ow:.6f} {(cy2 - cy1) / oh:.6f}"
                )
            yield f"{x0}_{y0}", crop, lines


def dusk(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``img`` (BGR uint8) as an evening camera would give it, then lifted as the runtime lifts it (``--dusk``)."""
    x = img.astype(np.float32) / 255.0
    if rng.random() < 1 / 3:  # IR-cut / night mode: grey
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    gamma, gain = rng.uniform(*DUSK_GAMMA), rng.uniform(*DUSK_GAIN)
    cast = rng.uniform(0.85, 1.15, size=3).astype(np.float32)  # sodium / LED / twilight tint
    x = gain * cast * x**gamma
    x = x + rng.normal(0.0, rng.uniform(*DUSK_NOISE), x.shape).astype(np.float32)
    dark = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    return lift_low_light(dark, DetectConfig().low_light_lift)


class RiderTeacher:
    """The shipped detector's rider boxes on a frame scaled as the runtime scales it."""

    def __init__(self, onnx_path: Path, conf: float):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        self.sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        self.conf = conf

    def riders(self, img: np.ndarray) -> list[tuple[int, float, float, float, float]]:
        h, w = img.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        x = np.full((ph, pw, 3), 114, np.uint8)
        x[:h, :w] = img
        x = np.ascontiguousarray(x[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        out = self.sess.run(None, {self.sess.get_inputs()[0].name: x})[0][0]  # (7, N)
        keep = out[4] >= self.conf
        cx, cy, bw, bh, s = out[0][keep], out[1][keep], out[2][keep], out[3][keep], out[4][keep]
        rects = [
            [float(a - c / 2), float(b - d / 2), float(c), float(d)]
            for a, b, c, d in zip(cx, cy, bw, bh, strict=True)
        ]
        idx = cv2.dnn.NMSBoxes(rects, [float(v) for v in s], self.conf, 0.5) if rects else []
        return [
            (0, rects[i][0], rects[i][1], rects[i][0] + rects[i][2], rects[i][1] + rects[i][3])
            for i in np.array(idx).flatten()
        ]


def carries_head(rider: tuple[int, float, float, float, float], boxes) -> bool:  # type: ignore[no-untyped-def]
    """A pseudo rider is kept only when a labelled head's centre lies in the upper half of it
    (the rider box the runtime expects around a head; a rider box on a hand or a bag is dropped)."""
    _, x1, y1, x2, y2 = rider
    for c, hx1, hy1, hx2, hy2 in boxes:
        cx, cy = (hx1 + hx2) / 2, (hy1 + hy2) / 2
        if c != 0 and x1 <= cx <= x2 and y1 - 0.25 * (hy2 - hy1) <= cy <= (y1 + y2) / 2:
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=BUILD / "datasets" / "det-ft")
    ap.add_argument("--tile", type=int, default=640)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--corpus-dir", type=Path, default=BUILD / "corpus")
    ap.add_argument("--no-corpus", action="store_true")
    ap.add_argument("--teacher", type=Path, default=MODELS / "onnx" / "anqi-rider-head.onnx")
    ap.add_argument("--rider-conf", type=float, default=0.4)
    ap.add_argument(
        "--oversample",
        action="append",
        default=["thaigate-dev=2"],
        metavar="DATASET=N",
        help="list DATASET's training frames N times; N = 0 leaves the data set out",
    )
    ap.add_argument(
        "--dusk",
        type=float,
        default=0.0,
        help="fraction of training frames that get one more, dusk-then-lifted copy (see above)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the --dusk draws")
    a = ap.parse_args()
    repeat = {k: int(v) for k, v in (s.split("=", 1) for s in a.oversample)}
    out = a.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    for sub in ("images/train", "labels/train", "images/val", "labels/val"):
        (out / sub).mkdir(parents=True)
    train_list: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    n_dusk = 0
    teacher = None if a.no_corpus else RiderTeacher(a.teacher, a.rider_conf)
    rng = np.random.default_rng(a.seed)
    sets = list(DATASETS)
    if not a.no_corpus:
        sets += [
            f"corpus:{p.name}" for p in sorted(a.corpus_dir.iterdir()) if (p / "images" / "train").is_dir()
        ]

    def write(name: str, img: np.ndarray, boxes, n: int, split: str = "train") -> None:  # type: ignore[no-untyped-def]
        for tag, crop, lines in cut(img, boxes, a.tile):
            f = f"{name}_{tag}"
            cv2.imwrite(str(out / "images" / split / f"{f}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, a.quality])
            (out / "labels" / split / f"{f}.txt").write_text("".join(x + "\n" for x in lines))
            if split == "train":
                train_list.extend([f"./images/train/{f}.jpg"] * n)

    for ds in sets:
        if repeat.get(ds, 1) == 0:
            print(f"{ds:32s} left out (--oversample {ds}=0)")
            continue
        val = set(val_stems(ds))
        c = counts.setdefault(ds, {"frames": 0, "windows": 0, "pseudo_riders": 0, "heads": 0})
        for stem in stems(ds):
            if stem in val:
                continue
            img = load_image(ds, stem)
            h, w = img.shape[:2]
            width = min(RUNTIME_WIDTH, w, MAX_WIDTH.get(ds, w))
            if width != w:
                img = cv2.resize(img, (width, round(width * h / w)), interpolation=cv2.INTER_AREA)
            H, W = img.shape[:2]
            boxes = [
                (
                    LABEL[b.label],
                    (b.cx - b.w / 2) * W,
                    (b.cy - b.h / 2) * H,
                    (b.cx + b.w / 2) * W,
                    (b.cy + b.h / 2) * H,
                )
                for b in read_labels(ds, stem)
            ]
            c["heads"] += sum(1 for b in boxes if b[0] != 0)
            if teacher is not None and ds.startswith("corpus:") and not any(b[0] == 0 for b in boxes):
                # a source that labels riders itself (nckh, jk-motor) keeps its own boxes
                riders = [r for r in teacher.riders(img) if carries_head(r, boxes)]
                c["pseudo_riders"] += len(riders)
                boxes += riders
            before = len(train_list)
            name = ds.replace(":", "_") + "_" + stem.replace("/", "_")
            write(name, img, boxes, repeat.get(ds, 1))
            if a.dusk > 0 and rng.random() < a.dusk:
                write(name + "_dusk", dusk(img, rng), boxes, repeat.get(ds, 1))
                n_dusk += 1
            c["frames"] += 1
            c["windows"] += len(train_list) - before
    # ultralytics insists that a val folder exists; val=False in training, so it is never read
    for ds in DATASETS:
        stem = sorted(val_stems(ds))[0]
        write(f"valonly_{ds}_{stem}", load_image(ds, stem), [], 0, split="val")
    (out / "train.txt").write_text("".join(p + "\n" for p in train_list))
    (out / "det.yaml").write_text(
        "path: .\ntrain: train.txt\nval: images/val\nnames:\n"
        + "".join(f"  {i}: {c}\n" for i, c in enumerate(CLASSES))
    )
    for ds, c in counts.items():
        print(
            f"{ds:32s} frames {c['frames']:5d}  train entries {c['windows']:5d}  heads {c['heads']:5d}  pseudo riders {c['pseudo_riders']}"
        )
    print(f"wrote {out}: {len(train_list)} training entries ({n_dusk} frames with a dusk copy)")


if __name__ == "__main__":
    main()
