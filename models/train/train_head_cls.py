"""Train the helmet classifier ``anqi-head-cls`` (helmet / no_helmet / not_head on 64x64 head crops).

    .train/bin/python models/train/train_head_cls.py --epochs 20 --width 2 --threads 2 --detector-crops   # the committed model
                                                     # -> models/onnx/anqi-head-cls.onnx

Plain PyTorch, fixed seed (results depend on --threads: the committed model used 2). Crops come from edge.detect.heads.head_crops (the runtime's
own recipe), with box jitter so the classifier tolerates the detector's box errors; not_head
examples are boxes of head size elsewhere in the frame (half of them inside rider boxes: torso,
bike, other body parts). Validation = the written split (models/train/splits/), true head boxes.

``--members K`` trains K models (seeds seed .. seed+K-1) on the same crops and exports the mean of
their logits as one ONNX file (tried, not shipped: see the model card).

``--detector-crops`` adds, on the training frames of every trained data set (../shared's and the
``--corpus`` sources), crops of the boxes the committed detector
(``anqi-rider-head``, the runtime's own path without the classifier) finds on labelled heads
(IoU >= 0.3, with that head's label): the boxes the classifier is given at run time, misaligned as
the detector misaligns them, rather than only jittered true boxes.

``--near-negatives K`` adds K not_head boxes per training frame right beside a labelled head
(:func:`near_negatives`): the background behind a side-on rider's head, where a pillion's would be.

``--dusk P`` turns a fraction P of the training crops into evening crops as the runtime lifts them
(:func:`dusk`); its random curve is not ``benchmarks/accuracy.py --darken``'s fixed one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))
from common import (  # noqa: E402
    DATASETS,
    DUSK_GAIN,
    DUSK_GAMMA,
    DUSK_NOISE,
    MODELS,
    load_image,
    read_labels,
    record_sha256,
    stems,
    val_stems,
)

from edge.config.detect import DetectConfig  # noqa: E402
from edge.detect.geometry import iou_matrix  # noqa: E402
from edge.detect.heads import CROP_SIZE, HEAD_CLASSES, crops_to_tensor, head_crops  # noqa: E402

SEED = 0


def collect(
    ds: str, names: list[str], rng: np.random.Generator, jitter: int, negatives: int, near: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for stem in names:
        img = load_image(ds, stem)
        H, W = img.shape[:2]
        labels = read_labels(ds, stem)
        heads = [b for b in labels if b.label in ("helmet", "no_helmet")]
        riders = [b for b in labels if b.label == "rider"]
        if not heads:
            continue
        hb = np.array(
            [
                [(b.cx - b.w / 2) * W, (b.cy - b.h / 2) * H, (b.cx + b.w / 2) * W, (b.cy + b.h / 2) * H]
                for b in heads
            ],
            np.float32,
        )
        hy = [HEAD_CLASSES.index(b.label) for b in heads]
        for k in range(jitter):
            b = hb.copy()
            if k:
                wh = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
                shift = rng.uniform(-0.15, 0.15, (len(b), 2)) * wh
                scale = rng.uniform(0.8, 1.25, (len(b), 1))
                c = (b[:, :2] + b[:, 2:]) / 2 + shift
                half = wh * scale / 2
                b = np.concatenate([c - half, c + half], 1)
            xs.append(head_crops(img, b))
            ys += hy
        # not_head: boxes of head size that do not overlap a head
        sizes = np.maximum(hb[:, 2] - hb[:, 0], hb[:, 3] - hb[:, 1])
        negs = []
        tries = 0
        while len(negs) < negatives and tries < negatives * 20:
            tries += 1
            s = float(rng.choice(sizes)) * rng.uniform(0.7, 1.6)
            if riders and rng.random() < 0.5:
                r = riders[int(rng.integers(len(riders)))]
                cx = rng.uniform(r.cx - r.w / 2, r.cx + r.w / 2) * W
                cy = rng.uniform(r.cy - r.h / 2, r.cy + r.h / 2) * H
            else:
                cx, cy = rng.uniform(0, W), rng.uniform(0, H)
            nb = np.array([[cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2]], np.float32)
            if iou_matrix(nb, hb).max() < 0.1:
                negs.append(nb[0])
        # drawn after the others: near=0 leaves the random stream (and the committed model) as it was
        if near:
            negs += near_negatives(hb, near, rng)
        if negs:
            xs.append(head_crops(img, np.array(negs, np.float32)))
            ys += [2] * len(negs)
    return np.concatenate(xs), np.array(ys, np.int64)


def near_negatives(hb: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to ``n`` not_head boxes right beside a labelled head: the head's box moved 0.8-1.4 of its width
    sideways (or of its height up, or both), resized 0.8-1.2x, overlapping no labelled head (IoU < 0.15) and
    no nearer than 0.7 of a head's size to any labelled head's centre. The detector proposes such boxes on the
    background behind a side-on rider's head (foliage, a backpack: jk-motor-thai-track), where a pillion's head
    would be; the crop (1.5x the box) holds the edge of the real head, and a classifier that never saw such crops
    as not_head called them bare heads (p_head ~0.85, p_no_helmet ~0.9)."""
    out: list[np.ndarray] = []
    if not len(hb):
        return out
    wh = np.stack([hb[:, 2] - hb[:, 0], hb[:, 3] - hb[:, 1]], 1)
    centres = (hb[:, :2] + hb[:, 2:]) / 2
    for _ in range(n * 10):
        if len(out) >= n:
            break
        k = int(rng.integers(len(hb)))
        side = rng.choice([-1.0, 1.0])
        kind = rng.random()
        dx = (
            side * rng.uniform(0.8, 1.4)
            if kind < 0.7
            else (side * rng.uniform(0.5, 1.0) if kind < 0.85 else 0.0)
        )
        dy = 0.0 if kind < 0.7 else -rng.uniform(0.8, 1.3)
        c = centres[k] + np.array([dx, dy]) * wh[k]
        half = wh[k] * rng.uniform(0.8, 1.2) / 2
        nb = np.concatenate([c - half, c + half])[None].astype(np.float32)
        far = (np.abs(centres - c) >= 0.7 * wh).any(axis=1).all()
        if far and iou_matrix(nb, hb).max() < 0.15:
            out.append(nb[0])
    return out


def detector_crops(ds: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_detector_crops`, cached in models/build/cls-cache/ by data set, frame list and the
    committed detector's hash (the leave-one-source-out folds reuse them)."""
    import hashlib

    det = MODELS / "onnx" / "anqi-rider-head.onnx"
    key = hashlib.sha256(det.read_bytes() + "\n".join([ds, *names]).encode()).hexdigest()[:16]
    cache = MODELS / "build" / "cls-cache" / f"detcrops-{ds.replace(':', '_')}-{key}.npz"
    if cache.exists():
        z = np.load(cache)
        return z["x"], z["y"]
    x, y = _detector_crops(ds, names)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=x, y=y)
    return x, y


def _detector_crops(ds: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Crops of the committed detector's head boxes that match a labelled head (IoU >= 0.3), with its label."""
    from edge.config import parse_config
    from edge.detect.rider import RiderDetector

    site = parse_config({"detect": {"head_model": "", "head_conf": 0.2}})
    det = RiderDetector.from_config(site.detect, site.face)
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for stem in names:
        img = load_image(ds, stem)
        H, W = img.shape[:2]
        heads = [b for b in read_labels(ds, stem) if b.label in ("helmet", "no_helmet")]
        if not heads:
            continue
        hb = np.array(
            [
                [(b.cx - b.w / 2) * W, (b.cy - b.h / 2) * H, (b.cx + b.w / 2) * W, (b.cy + b.h / 2) * H]
                for b in heads
            ],
            np.float32,
        )
        found = det.detect(img).heads
        if not len(found):
            continue
        m = iou_matrix(found, hb)
        keep = m.max(axis=1) >= 0.3
        if keep.any():
            xs.append(head_crops(img, found[keep]))
            ys += [HEAD_CLASSES.index(heads[int(j)].label) for j in m[keep].argmax(axis=1)]
    if not xs:
        return np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8), np.zeros(0, np.int64)
    return np.concatenate(xs), np.array(ys, np.int64)


def build_model(width: int = 1):  # type: ignore[no-untyped-def]
    """``width`` multiplies every layer's channels (1: the committed ~0.15 M-parameter model)."""
    import torch.nn as nn

    def block(i: int, o: int, s: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    # Downsample early: ~9 M multiply-adds per crop, so training fits a shared 2-core CPU.
    c = [16 * width, 32 * width, 64 * width, 128 * width]
    return nn.Sequential(
        *block(3, c[0], 2),
        *block(c[0], c[1], 2),
        *block(c[1], c[1], 1),
        *block(c[1], c[2], 2),
        *block(c[2], c[2], 1),
        *block(c[2], c[3], 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(c[3], len(HEAD_CLASSES)),
    )


def dusk(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """NCHW crops in [0, 1] as an evening camera gives them after the runtime's low-light lift: darkened by a
    random curve (gain * x ** gamma, gamma 1.4-2.6, gain 0.3-0.8) with sensor noise, then lifted back by one
    gamma that brings each crop's median to the ``detect.low_light_lift`` default (``lift_low_light`` works on the whole frame; a crop's median is
    the nearest thing a crop has). Flat contrast, noise and crushed shadows: what a dusk head looks like."""
    n = len(x)
    gamma = rng.uniform(*DUSK_GAMMA, (n, 1, 1, 1)).astype(np.float32)
    gain = rng.uniform(*DUSK_GAIN, (n, 1, 1, 1)).astype(np.float32)
    sd = rng.uniform(*DUSK_NOISE, (n, 1, 1, 1)).astype(np.float32)
    d = np.clip(gain * x**gamma + rng.normal(0.0, 1.0, x.shape).astype(np.float32) * sd, 1e-3, 1)
    d = np.round(d * 255) / 255  # the 8-bit frame the camera delivers
    target = DetectConfig().low_light_lift
    m = np.clip(np.median(d.reshape(n, -1), axis=1), 1e-3, 0.999).reshape(n, 1, 1, 1)
    lift = np.where(m < target, np.log(target) / np.log(m), 1.0).astype(np.float32)
    return np.clip(d**lift, 0, 1).astype(np.float32)


def augment(x: np.ndarray, rng: np.random.Generator, dusk_p: float = 0.0) -> np.ndarray:
    """Flip, brightness/contrast, blur-ish downscale, and (``dusk_p``) :func:`dusk`: on NCHW float batches."""
    x = x.copy()
    if dusk_p > 0:
        night = np.flatnonzero(rng.random(len(x)) < dusk_p)
        if len(night):
            x[night] = dusk(x[night], rng)
    flip = rng.random(len(x)) < 0.5
    x[flip] = x[flip][..., ::-1]
    a = rng.uniform(0.6, 1.4, (len(x), 1, 1, 1)).astype(np.float32)
    b = rng.uniform(-0.15, 0.15, (len(x), 1, 1, 1)).astype(np.float32)
    x = np.clip(x * a + b, 0, 1)
    gray = rng.random(len(x)) < 0.1
    x[gray] = x[gray].mean(axis=1, keepdims=True)
    # small-head simulation: down to 16-40 px and back up (far riders, CCTV heads of ~20 px)
    small = np.flatnonzero(rng.random(len(x)) < 0.3)
    if len(small):
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.ascontiguousarray(x[small]))
        side = int(rng.integers(16, 41))
        t = F.interpolate(
            F.interpolate(t, size=(side, side), mode="area"),
            size=x.shape[-2:],
            mode="bilinear",
            align_corners=False,
        )
        x[small] = t.numpy()
    return x


def train_member(
    X: np.ndarray,
    Y: np.ndarray,
    p_sample: np.ndarray,
    va: dict,
    rng: np.random.Generator,
    width: int,
    epochs: int,
    dusk_p: float = 0.0,
):  # type: ignore[no-untyped-def]
    """One classifier: AdamW + one-cycle, balanced sampling (``p_sample``), augmentation from ``rng``."""
    import torch
    import torch.nn as nn

    per_epoch = len(X)
    model = build_model(width)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((len(X) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    weights = torch.tensor([1.0, 1.0, 0.7])
    loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=0.05)
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        order = rng.choice(len(X), size=per_epoch, replace=True, p=p_sample)
        total = 0.0
        for i in range(0, len(X), 128):
            idx = order[i : i + 128]
            xb = torch.from_numpy(augment(X[idx], rng, dusk_p))
            yb = torch.from_numpy(Y[idx])
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if ep % 5 == 4 or ep == epochs - 1:
            model.eval()
            msgs = val_report(model, va)
            print(
                f"epoch {ep + 1} loss {total / len(X):.4f} {time.time() - t0:.0f}s | " + " | ".join(msgs),
                flush=True,
            )
    model.eval()
    return model


def mean_logits_class():  # type: ignore[no-untyped-def]
    import torch
    import torch.nn as nn

    class MeanLogits(nn.Module):
        """Several members, one ONNX file: the mean of their logits (seed ensembles vary less from one
        training run to the next than any single member)."""

        def __init__(self, members: list) -> None:  # type: ignore[type-arg]
            super().__init__()
            self.members = nn.ModuleList(members)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return torch.stack([m(x) for m in self.members]).mean(0)

    return MeanLogits


def val_report(model, va: dict) -> list[str]:  # type: ignore[no-untyped-def]
    """:func:`report` of ``model`` (in eval mode) on each data set's validation crops."""
    import torch

    with torch.no_grad():
        return [
            report(ds, vy, torch.softmax(model(torch.from_numpy(crops_to_tensor(vx))), 1).numpy())
            for ds, (vx, vy) in va.items()
        ]


def report(name: str, y: np.ndarray, p: np.ndarray) -> str:
    pred = p.argmax(1)
    parts = []
    for c in (0, 1):
        tp = int(((pred == c) & (y == c)).sum())
        parts.append(
            f"{HEAD_CLASSES[c]} recall {tp / max(1, (y == c).sum()):.3f} precision {tp / max(1, (pred == c).sum()):.3f}"
        )
    return f"{name}: " + "; ".join(parts) + f" (n={len(y)}, heads={(y < 2).sum()})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--width", type=int, default=1, help="channel multiplier (1 = the committed layout)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=MODELS / "onnx" / "anqi-head-cls.onnx")
    ap.add_argument(
        "--detector-crops",
        action="store_true",
        help="Also train on the committed detector's boxes of labelled heads.",
    )
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument(
        "--members",
        type=int,
        default=1,
        help="Train this many members (seeds seed, seed+1, ...) and export the mean of their logits.",
    )
    ap.add_argument(
        "--corpus",
        nargs="*",
        default=[],
        help="Public sources (models/build/corpus/<source>, see models/data/build_corpus.py) added to "
        "../shared's two sets: their train split is trained on, their val split reported.",
    )
    ap.add_argument(
        "--without",
        nargs="*",
        default=[],
        help="Data sets left out of training (leave-one-source-out): ../shared names or corpus sources; "
        "their val split is still reported.",
    )
    ap.add_argument(
        "--dusk",
        type=float,
        default=0.0,
        help="fraction of training crops turned into a lifted dusk crop (see dusk()); 0 = the committed recipe",
    )
    ap.add_argument(
        "--negatives",
        type=int,
        default=4,
        help="not_head boxes per training frame anywhere in the frame (half inside rider boxes); 4 = the committed recipe",
    )
    ap.add_argument(
        "--near-negatives",
        type=int,
        default=0,
        help="not_head boxes per training frame right beside a labelled head (near_negatives); 0 = the committed recipe",
    )
    a = ap.parse_args()
    import torch

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    tr_x, tr_y, tr_g, va = [], [], [], {}
    datasets = list(DATASETS) + [f"corpus:{c}" for c in a.corpus]
    left_out = {w if w in DATASETS else f"corpus:{w}" for w in a.without}
    for ds in datasets:
        val = set(val_stems(ds))
        if ds in left_out:  # leave-one-source-out: every frame of it is unseen, all of it is evaluated
            va[ds] = collect(ds, stems(ds), rng, jitter=1, negatives=3)
            print(f"{ds}: left out of training, all {len(va[ds][0])} crops evaluated", flush=True)
            continue
        train_names = [s for s in stems(ds) if s not in val]
        x, y = collect(ds, train_names, rng, jitter=3, negatives=a.negatives, near=a.near_negatives)
        if a.detector_crops:
            dx, dy = detector_crops(ds, train_names)
            print(f"{ds}: detector crops {len(dx)} {np.bincount(dy, minlength=3).tolist()}", flush=True)
            x, y = np.concatenate([x, dx]), np.concatenate([y, dy])
        tr_x.append(x)
        tr_y.append(y)
        tr_g.append(y + 10 * datasets.index(ds))
        va[ds] = collect(ds, sorted(val), rng, jitter=1, negatives=3)
        print(f"{ds}: train crops {len(x)} {np.bincount(y).tolist()}, val crops {len(va[ds][0])}", flush=True)
    X = crops_to_tensor(np.concatenate(tr_x))
    Y = np.concatenate(tr_y)
    G = np.concatenate(tr_g)
    # balanced sampling: every (data set, class) group weighs the same, so the few no-helmet heads
    # of the small-heads CCTV set are not drowned by the traffic camera's crops
    groups, counts = np.unique(G, return_counts=True)
    p_sample = (1.0 / counts)[np.searchsorted(groups, G)]
    p_sample /= p_sample.sum()
    members = []
    for k in range(a.members):
        if k:  # member 0 continues the data's random stream (a single model is reproduced exactly)
            torch.manual_seed(a.seed + k)
            rng = np.random.default_rng(a.seed + k)
        print(f"member {k + 1}/{a.members} (seed {a.seed + k})", flush=True)
        members.append(train_member(X, Y, p_sample, va, rng, a.width, a.epochs, a.dusk))
    model = members[0] if a.members == 1 else mean_logits_class()(members).eval()
    if a.members > 1:
        msgs = val_report(model, va)
        print("ensemble | " + " | ".join(msgs), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, CROP_SIZE, CROP_SIZE)
    torch.onnx.export(
        model,
        dummy,
        str(a.out),
        input_names=["crops"],
        output_names=["logits"],
        dynamic_axes={"crops": {0: "n"}, "logits": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    default = MODELS / "onnx" / "anqi-head-cls.onnx"
    # only the committed file's hash goes into the manifest (a trial written elsewhere must not break it)
    print(
        f"wrote {a.out}"
        + (f" sha256 {record_sha256('anqi-head-cls', a.out)}" if a.out.resolve() == default.resolve() else "")
    )


if __name__ == "__main__":
    main()
