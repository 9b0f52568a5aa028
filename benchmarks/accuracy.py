"""Accuracy of the detection path on each data set's written validation split, plus face matching.

    .venv/bin/python benchmarks/accuracy.py [--config CONFIG] [--datasets helmet9-dev thaigate-dev] [--no-face]

For each data set: the validation images (models/train/splits/<ds>.val.txt; helmet9 frames resized
to 1820x1024, their true aspect) go through `anqi-edge detect-images` (the daemon's own single-frame
path); predicted heads are matched to labelled heads per class (IoU >= 0.3, greedy by confidence)
and recall / precision are printed for no_helmet and helmet. The helmet-detector YOLOv12m
baseline runs the same way when `anqi-edge models prepare --baseline` has built it. Face: TAR at
FAR 1e-3 and rank-1 on ../shared/faces/lfw-dev. The last line is one JSON object.
A data set named ``corpus:<source>`` is that public source's val split as models/data/build_corpus.py
wrote it under models/build/corpus/ (e.g. ``--datasets corpus:pavan-rider-helmet``).
``--whole``: every frame of each corpus source (train and val), for a source no model was trained on
(benchmarks/loso.py's left-out rows).
``--darken`` (synthetic dusk) and ``--lift-to`` (a per-frame brightness lift): the low-light proxy of the
anqi-rider-head card.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anqi_contract.paths import shared_dir  # noqa: E402
from edge.detect.geometry import iou_matrix, letterbox, nms  # noqa: E402

HELMET9_SIZE = (1820, 1024)
IOU = 0.3
CLASSES = ("no_helmet", "helmet")
GT_NAMES = {
    "helmet": "helmet",
    "no_helmet": "no_helmet",
    "With-Helmet": "helmet",
    "Without Helmet": "no_helmet",
}


def val_stems(ds: str) -> list[str]:
    f = ROOT / "models" / "train" / "splits" / f"{ds}.val.txt"
    return [s for s in f.read_text().split() if s]


def read_boxes(path: Path, names: list[str] | None = None) -> list[tuple[str, np.ndarray, float]]:
    """(label, normalised xyxy, conf) per line of a YOLO txt (labels as names, or class ids with ``names``)."""
    out: list[tuple[str, np.ndarray, float]] = []
    if not path.exists():
        return out
    for line in path.read_text().split("\n"):
        p = line.split()
        if len(p) < 5:
            continue
        label = names[int(p[0])] if names else p[0]
        cx, cy, w, h = map(float, p[1:5])
        out.append(
            (
                label,
                np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32),
                float(p[5]) if len(p) > 5 else 1.0,
            )
        )
    return out


def _greedy(g: np.ndarray, ps: list[tuple[float, np.ndarray]]) -> tuple[np.ndarray, list[bool]]:
    """Greedy by confidence (``ps`` sorted), IoU >= 0.3: which labelled boxes are matched, which predictions match."""
    used = np.zeros(len(g), bool)
    hit = []
    for _, b in ps:
        ok = False
        if len(g):
            ious = iou_matrix(b[None], g)[0]
            ious[used] = -1
            j = int(np.argmax(ious))
            if ious[j] >= IOU:
                used[j] = ok = True
        hit.append(ok)
    return used, hit


def _split(
    boxes: list[tuple[str, np.ndarray, float]], c: str
) -> tuple[np.ndarray, list[tuple[float, np.ndarray]]]:
    """Boxes of class ``c``: as an (N, 4) array, and as (conf, box) sorted by confidence."""
    sel = [(conf, b) for lab, b, conf in boxes if lab == c]
    return np.array([b for _, b in sel], np.float32).reshape(-1, 4), sorted(sel, key=lambda t: -t[0])


def match(
    gt: dict[str, list[tuple[str, np.ndarray, float]]], pred: dict[str, list[tuple[str, np.ndarray, float]]]
) -> dict[str, dict[str, float]]:
    """Per class: greedy by confidence, IoU >= 0.3, each labelled head matched at most once."""
    res: dict[str, dict[str, float]] = {}
    for c in CLASSES:
        tp = n_gt = n_pred = 0
        for stem in gt:
            g, _ = _split(gt[stem], c)
            _, ps = _split(pred.get(stem, []), c)
            used, _ = _greedy(g, ps)
            n_gt += len(g)
            n_pred += len(ps)
            tp += int(used.sum())
        res[c] = {
            "recall": round(tp / n_gt, 4) if n_gt else float("nan"),
            "precision": round(tp / n_pred, 4) if n_pred else (1.0 if not n_gt else 0.0),
            "labelled": n_gt,
            "predicted": n_pred,
            "matched": tp,
        }
    return res


def error_breakdown(
    gt: dict[str, list[tuple[str, np.ndarray, float]]], pred: dict[str, list[tuple[str, np.ndarray, float]]]
) -> dict[str, dict[str, int]]:
    """Where each class's errors are (same matching as :func:`match`).

    False positives: ``other_class`` (on a labelled head of the other class: a helmet call gone
    wrong), ``duplicate`` (on a head of this class already matched), ``unlabelled`` (on no labelled
    head: an unlabelled head or not a head). Misses: ``called_other`` (found, wrong helmet call),
    ``not_found`` (no prediction of either class on it).
    """
    out: dict[str, dict[str, int]] = {}
    for c in CLASSES:
        other = CLASSES[1 - CLASSES.index(c)]
        n = dict.fromkeys(("other_class", "duplicate", "unlabelled", "called_other", "not_found"), 0)
        for stem in gt:
            g, _ = _split(gt[stem], c)
            go, _ = _split(gt[stem], other)
            _, ps = _split(pred.get(stem, []), c)
            po, _ = _split(pred.get(stem, []), other)
            used, hit = _greedy(g, ps)
            for (_, b), ok in zip(ps, hit, strict=False):
                if ok:
                    continue
                if len(go) and iou_matrix(b[None], go).max() >= IOU:
                    n["other_class"] += 1
                elif len(g) and iou_matrix(b[None], g).max() >= IOU:
                    n["duplicate"] += 1
                else:
                    n["unlabelled"] += 1
            for j in np.flatnonzero(~used):
                called = len(po) and iou_matrix(g[j][None], po).max() >= IOU
                n["called_other" if called else "not_found"] += 1
        out[c] = n
    return out


CORPUS = ROOT / "models" / "build" / "corpus"
CORPUS_CLASSES = ["rider", "helmet", "no_helmet"]


def write_corpus_images(
    source: str, out: Path, splits: tuple[str, ...] = ("val",)
) -> dict[str, list[tuple[str, np.ndarray, float]]]:
    """``corpus:<source>``: the val split that models/data/build_corpus.py wrote (split by file-name
    group), or with ``splits=("train", "val")`` every frame of it (a source no model here was trained on)."""
    d = CORPUS / source
    gt = {}
    for split in splits:
        if not (d / "images" / split).is_dir():
            raise SystemExit(
                f"{d}/images/{split} missing: run models/data/build_corpus.py --only {source} first"
            )
        for f in sorted((d / "images" / split).glob("*.jpg")):
            img = cv2.imread(str(f))
            assert img is not None, f
            stem = f.stem if splits == ("val",) else f"{split}_{f.stem}"
            cv2.imwrite(str(out / f"{stem}.png"), img)
            gt[stem] = [
                (lab, b, c)
                for lab, b, c in read_boxes(d / "labels" / split / f"{f.stem}.txt", CORPUS_CLASSES)
                if lab in CLASSES
            ]
    return gt


def write_images(ds: str, out: Path, whole: bool = False) -> dict[str, list[tuple[str, np.ndarray, float]]]:
    """The validation images (true aspect) into ``out``; returns their labelled heads. ``whole``:
    every frame of a ``corpus:`` source (train and val), for a source left out of all training."""
    if ds.startswith("corpus:"):
        return write_corpus_images(ds.split(":", 1)[1], out, ("train", "val") if whole else ("val",))
    if whole:
        raise SystemExit(f"--whole is for corpus sources only ({ds} trained the shipped detector)")
    d = shared_dir() / "data" / ds
    names = [c.strip() for c in (d / "classes.txt").read_text().splitlines() if c.strip()]
    gt = {}
    for stem in val_stems(ds):
        img = cv2.imread(str(d / "images" / f"{stem}.jpg"))
        assert img is not None
        if ds == "helmet9-dev":
            img = cv2.resize(img, HELMET9_SIZE, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(out / f"{stem}.png"), img)
        gt[stem] = [
            (GT_NAMES[lab], b, c)
            for lab, b, c in read_boxes(d / "labels" / f"{stem}.txt", names)
            if lab in GT_NAMES
        ]
    return gt


#: synthetic dusk: grey level x -> DARK_GAIN * x ** DARK_GAMMA plus sensor-like noise (a proxy for an evening camera)
DARK_GAMMA, DARK_GAIN, DARK_NOISE = 1.8, 0.55, 0.015


def relight(images: Path, darken: bool, lift_to: float | None, seed: int = 0) -> None:
    """Rewrite the written frames: ``darken`` applies the synthetic dusk above (seeded noise);
    ``lift_to`` then raises each frame by a gamma that brings its median grey to that level (a what-if
    for a brightness normalisation before detection; frames already brighter are left alone)."""
    rng = np.random.default_rng(seed)
    for f in sorted(images.glob("*.png")):
        img = cv2.imread(str(f))
        assert img is not None, f
        x = img.astype(np.float32) / 255
        if darken:
            x = np.clip(DARK_GAIN * x**DARK_GAMMA + rng.normal(0, DARK_NOISE, x.shape), 0, 1)
        if lift_to is not None:
            m = float(np.median(x.mean(axis=2)))
            if 0 < m < lift_to:
                x = x ** (np.log(lift_to) / np.log(m))
        cv2.imwrite(str(f), np.round(x * 255).astype(np.uint8))


def run_ours(images: Path, preds: Path, config: Path | None) -> float:
    from click.testing import CliRunner

    from edge.cli import main

    args = ["detect-images", str(images), "--out", str(preds)] + (["--config", str(config)] if config else [])
    t0 = time.perf_counter()
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    if r.exit_code != 0:
        raise SystemExit(f"detect-images failed: {r.output}")
    print(r.output.strip().splitlines()[-1])
    return time.perf_counter() - t0


def run_baseline(images: Path, preds: Path) -> str | None:
    """The helmet-detector YOLOv12m (ONNX, 640 letterbox), same output format; None when not prepared."""
    from anqi_contract.manifest import ModelFileError, resolve
    from edge.detect.session import open_session

    try:
        spec, path = resolve("helmet-detector-yolov12m")
    except (ModelFileError, KeyError) as e:
        return f"baseline skipped: {e} (it needs torch: `anqi-edge models prepare --baseline` with the [train] extra)"
    sess = open_session(path, ["CPUExecutionProvider"], name=spec.name)
    inp = sess.get_inputs()[0].name
    preds.mkdir(parents=True, exist_ok=True)
    for f in sorted(images.glob("*.png")):
        img = cv2.imread(str(f))
        assert img is not None
        x, lb = letterbox(img, spec.input_size)
        out = sess.run(
            None, {inp: np.ascontiguousarray(x[..., ::-1].transpose(2, 0, 1)[None], np.float32) / 255}
        )[0][0]
        sc = out[4:]
        cls = sc.argmax(0)
        conf = sc[cls, np.arange(sc.shape[1])]
        keep = conf >= 0.25
        b = out[:4, keep].T
        boxes = lb.to_image(
            np.stack(
                [b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2],
                1,
            )
        )
        k = nms(boxes, conf[keep], 0.5)
        h, w = img.shape[:2]
        lines = [
            f"{spec.classes[int(c)]} {(bb[0] + bb[2]) / 2 / w:.6f} {(bb[1] + bb[3]) / 2 / h:.6f} {(bb[2] - bb[0]) / w:.6f} {(bb[3] - bb[1]) / h:.6f} {s:.4f}"
            for bb, s, c in zip(boxes[k], conf[keep][k], cls[keep][k], strict=False)
        ]
        (preds / f"{f.stem}.txt").write_text("".join(line + "\n" for line in lines))
    return None


def face_metrics() -> dict[str, float]:
    lfw = shared_dir() / "faces" / "lfw-dev"
    try:
        from central_sync.identity import evaluate_lfw
    except ImportError:
        evaluate_lfw = None  # type: ignore[assignment]  # the central extra is not installed
    if evaluate_lfw is not None:
        r = evaluate_lfw(lfw)
        return {
            "tar_at_far_1e-3": round(r["tar_at_far_1e-3"], 4),
            "rank1": round(r["rank1"], 4),
            "queries": int(r["queries"]),
            "skipped": int(r["skipped"]),
        }
    raise SystemExit("central_sync.identity.evaluate_lfw is missing")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, help="Site config for detect-images (default: built-in defaults).")
    ap.add_argument("--datasets", nargs="+", default=["helmet9-dev", "thaigate-dev"])
    ap.add_argument("--no-face", action="store_true")
    ap.add_argument(
        "--no-baseline",
        action="store_true",
        help="Skip the helmet-detector baseline (slow: ~250 ms per frame).",
    )
    ap.add_argument("--keep", type=Path, help="Keep images and predictions in this folder.")
    ap.add_argument(
        "--whole",
        action="store_true",
        help="corpus:<source> data sets: every frame (train and val), for a source left out of training "
        "(benchmarks/loso.py).",
    )
    ap.add_argument(
        "--darken",
        action="store_true",
        help=f"Synthetic dusk on every frame (grey x -> {DARK_GAIN} x^{DARK_GAMMA} + noise): a proxy for evening light.",
    )
    ap.add_argument(
        "--lift-to",
        type=float,
        help="Then raise each frame darker than this median grey (0-1) to it by a gamma (what-if for a brightness step).",
    )
    a = ap.parse_args()
    result: dict[str, object] = {}
    baseline: dict[str, object] = {}
    rows = []
    errors: dict[str, dict[str, dict[str, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = a.keep or Path(tmp_)
        for ds in a.datasets:
            sub = ds.replace(":", "_")
            images, preds, bpreds = tmp / sub / "images", tmp / sub / "pred", tmp / sub / "baseline"
            images.mkdir(parents=True, exist_ok=True)
            gt = write_images(ds, images, a.whole)
            if a.darken or a.lift_to is not None:
                relight(images, a.darken, a.lift_to)
            seconds = run_ours(images, preds, a.config)
            pred = {s: read_boxes(preds / f"{s}.txt") for s in gt}
            m = match(gt, pred)
            result[ds] = m
            rows.append((ds, "anqi", m, f"{1e3 * seconds / max(1, len(gt)):.0f} ms/img incl. I/O"))
            errors[ds] = error_breakdown(gt, pred)
            skip = "baseline skipped: --no-baseline" if a.no_baseline else run_baseline(images, bpreds)
            if skip:
                baseline = {"skipped": skip}
            else:
                bm = match(gt, {s: read_boxes(bpreds / f"{s}.txt") for s in gt})
                baseline[ds] = bm
                rows.append((ds, "baseline", bm, ""))
    print(
        f"\n{'dataset':<14} {'model':<9} {'no_helmet R':>11} {'no_helmet P':>11} {'helmet R':>9} {'helmet P':>9}  labelled nh/h"
    )
    for ds, model, m, note in rows:
        print(
            f"{ds:<14} {model:<9} {m['no_helmet']['recall']:>11.3f} {m['no_helmet']['precision']:>11.3f} {m['helmet']['recall']:>9.3f} {m['helmet']['precision']:>9.3f}  {m['no_helmet']['labelled']}/{m['helmet']['labelled']}  {note}"
        )
    if "skipped" in baseline:
        print(baseline["skipped"])
    print(
        "\nwhere anqi's errors are (false positives: on a head of the other class / a duplicate / on no labelled head;"
        " misses: found with the other label / not found)"
    )
    for ds, e in errors.items():
        for c in CLASSES:
            x = e[c]
            print(
                f"{ds:<14} {c:<9}  FP {x['other_class']:>3} / {x['duplicate']:>2} / {x['unlabelled']:>3}   missed {x['called_other']:>3} / {x['not_found']:>3}"
            )
    result["baseline"] = baseline
    if not a.no_face:
        face = face_metrics()
        result["face"] = face
        print(f"face (lfw-dev): TAR@FAR1e-3 {face['tar_at_far_1e-3']:.3f}  rank-1 {face['rank1']:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
