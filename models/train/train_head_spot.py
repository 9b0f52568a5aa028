"""Train ``anqi-head-spot``: a small CenterNet-style head-centre heatmap (stride 4) + box size.

    .train/bin/python models/train/train_head_spot.py [--minutes 25]   # -> models/onnx/anqi-head-spot.onnx

Why next to the YOLO detector: dense per-pixel supervision converges in far fewer CPU steps than a
from-scratch YOLO, and heads are the small objects the detector misses. Images at the 1024-px
scale (as the runtime sees them), 256x256 crops (70 % centred near a labelled head), scale
jitter 0.7-1.4, flip, brightness/contrast. Focal loss on the heatmap (CenterNet), L1 on
log(box size / 4) at head centres. Seed 0, 1 thread, time-boxed (checkpoint each minute).
Output: ``(1, 3, H/4, W/4)``: heatmap logit, log(w/4), log(h/4).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import BUILD, DATASETS, MODELS, load_image, read_labels, record_sha256, stems, val_stems  # noqa: E402

WIDTH = 1024
CROP = 256
STRIDE = 4
SEED = 0


def build_model():  # type: ignore[no-untyped-def]
    import torch
    import torch.nn as nn

    def cbr(i: int, o: int, s: int = 1, d: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(i, o, 3, s, d, dilation=d, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)
        )

    class HeadSpot(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = cbr(3, 16, 2)
            self.c2 = cbr(16, 24, 2)
            self.c3 = cbr(24, 24)
            self.c4 = cbr(24, 48, 2)
            self.c5 = cbr(48, 48)
            self.c6 = cbr(48, 48, d=2)
            self.fuse = cbr(48 + 24, 32)
            self.out = nn.Conv2d(32, 3, 1)
            nn.init.constant_(self.out.bias, 0.0)
            with torch.no_grad():
                self.out.bias[0] = -4.0  # rare positives: start near p = 0.02

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s4 = self.c3(self.c2(self.c1(x)))
            s8 = self.c6(self.c5(self.c4(s4)))
            up = nn.functional.interpolate(s8, scale_factor=2.0, mode="nearest")
            return self.out(self.fuse(torch.cat([up, s4], 1)))

    return HeadSpot()


def load_set(names: list[tuple[str, str]]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for ds, stem in names:
        img = load_image(ds, stem)
        h, w = img.shape[:2]
        s = WIDTH / w
        img = cv2.resize(img, (WIDTH, round(h * s)), interpolation=cv2.INTER_AREA)
        H, W = img.shape[:2]
        heads = [b for b in read_labels(ds, stem) if b.label in ("helmet", "no_helmet")]
        boxes = np.array(
            [
                [(b.cx - b.w / 2) * W, (b.cy - b.h / 2) * H, (b.cx + b.w / 2) * W, (b.cy + b.h / 2) * H]
                for b in heads
            ],
            np.float32,
        ).reshape(-1, 4)
        out.append((img, boxes))
    return out


def sample(item: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    img, boxes = item
    H, W = img.shape[:2]
    scale = float(rng.uniform(0.7, 1.4))
    src = CROP / scale
    if len(boxes) and rng.random() < 0.7:
        b = boxes[int(rng.integers(len(boxes)))]
        cx = (b[0] + b[2]) / 2 + rng.uniform(-0.4, 0.4) * src
        cy = (b[1] + b[3]) / 2 + rng.uniform(-0.4, 0.4) * src
    else:
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
    x0, y0 = cx - src / 2, cy - src / 2
    M = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float32)
    crop = cv2.warpAffine(
        img,
        M,
        (CROP, CROP),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(114, 114, 114),
    )
    bb = boxes.copy()
    bb[:, [0, 2]] = (bb[:, [0, 2]] - x0) * scale
    bb[:, [1, 3]] = (bb[:, [1, 3]] - y0) * scale
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
        bb[:, [0, 2]] = CROP - bb[:, [2, 0]]
    return np.ascontiguousarray(crop), bb


def targets(bb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = CROP // STRIDE
    hm = np.zeros((g, g), np.float32)
    size = np.zeros((2, g, g), np.float32)
    mask = np.zeros((g, g), np.float32)
    ys, xs = np.mgrid[0:g, 0:g]
    for x0, y0, x1, y1 in bb:
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        if not (0 <= cx < g and 0 <= cy < g):
            continue
        w, h = max(x1 - x0, 2), max(y1 - y0, 2)
        sigma = max(0.7, min(w, h) / STRIDE / 4)
        hm = np.maximum(hm, np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2)))
        ix, iy = int(cx), int(cy)
        hm[iy, ix] = 1.0
        size[:, iy, ix] = np.log([w / STRIDE, h / STRIDE])
        mask[iy, ix] = 1.0
    return hm, size, mask


def to_tensor(crops: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=25)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument(
        "--init", type=Path, help="Continue from this state dict (a second run) instead of from scratch."
    )
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--out", type=Path, default=MODELS / "onnx" / "anqi-head-spot.onnx")
    a = ap.parse_args()
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    train = []
    for ds in DATASETS:
        val = set(val_stems(ds))
        names = [(ds, s) for s in stems(ds) if s not in val]
        items = load_set(names)
        train += items * (1 if ds == "helmet9-dev" else 2)
    print(f"train images {len(train)}", flush=True)
    model = build_model()
    if a.init:
        model.load_state_dict(torch.load(a.init))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    t0 = time.time()
    step = 0
    ckpt = BUILD / ("head_spot2.pt" if a.init else "head_spot.pt")
    last_save = t0
    while time.time() - t0 < a.minutes * 60:
        frac = (time.time() - t0) / (a.minutes * 60)
        for g in opt.param_groups:
            g["lr"] = a.lr * (0.5 * (1 + np.cos(np.pi * frac))) + 1e-5
        batch = [sample(train[int(rng.integers(len(train)))], rng) for _ in range(a.batch)]
        x = to_tensor(np.stack([c for c, _ in batch]))
        alpha = rng.uniform(0.7, 1.3, (len(x), 1, 1, 1)).astype(np.float32)
        beta = rng.uniform(-0.1, 0.1, (len(x), 1, 1, 1)).astype(np.float32)
        x = np.clip(x * alpha + beta, 0, 1)
        tg = [targets(bb) for _, bb in batch]
        hm = torch.from_numpy(np.stack([t[0] for t in tg]))
        size = torch.from_numpy(np.stack([t[1] for t in tg]))
        mask = torch.from_numpy(np.stack([t[2] for t in tg]))
        out = model(torch.from_numpy(x))
        p = torch.sigmoid(out[:, 0]).clamp(1e-4, 1 - 1e-4)
        pos = hm.eq(1).float()
        neg = 1 - pos
        pos_loss = -(torch.log(p) * (1 - p) ** 2 * pos).sum()
        neg_loss = -(torch.log(1 - p) * p**2 * (1 - hm) ** 4 * neg).sum()
        npos = pos.sum().clamp(min=1)
        size_loss = (torch.abs(out[:, 1:] - size) * mask[:, None]).sum() / npos
        loss = (pos_loss + neg_loss) / npos + 0.5 * size_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            print(
                f"step {step} {time.time() - t0:.0f}s loss {float(loss.detach()):.3f} size {float(size_loss.detach()):.3f}",
                flush=True,
            )
        if time.time() - last_save > 60:
            torch.save(model.state_dict(), ckpt)
            last_save = time.time()
    torch.save(model.state_dict(), ckpt)
    model.eval()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        torch.zeros(1, 3, 576, 1024),
        str(a.out),
        input_names=["images"],
        output_names=["maps"],
        dynamic_axes={"images": {2: "h", 3: "w"}, "maps": {2: "h4", 3: "w4"}},
        opset_version=17,
        dynamo=False,
    )
    default = MODELS / "onnx" / "anqi-head-spot.onnx"
    print(
        f"wrote {a.out} after {step} steps"
        + (
            f" sha256 {record_sha256('anqi-head-spot', a.out)}"
            if a.out.resolve() == default.resolve()
            else ""
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
