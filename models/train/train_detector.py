"""Train the rider/head detector ``anqi-rider-head`` (YOLOv8 layout at half the n width, from models/train/anqi-det-n.yaml: no pretrained weights exist offline).

    .train/bin/python models/train/prepare_data.py
    .train/bin/python models/train/train_detector.py [--epochs 8] [--imgsz 512] [--threads 1]
    .train/bin/python models/train/export_detector.py      # -> models/onnx/anqi-rider-head.onnx

Fixed seed, deterministic; checkpoints every epoch under models/build/runs/det/ (resume with --resume).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BUILD  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--imgsz", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", type=Path, help="Start from these weights (a second, continued run) instead of from scratch.")
    ap.add_argument("--name", default="det", help="Run folder under models/build/runs/.")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (ultralytics would pick cpu_count - 1)")
    a = ap.parse_args()
    from ultralytics import YOLO

    runs = BUILD / "runs"
    if a.resume:
        YOLO(str(runs / "det" / "weights" / "last.pt")).train(resume=True)
        return
    import torch

    model = YOLO(str(a.init) if a.init else str(Path(__file__).resolve().parent / "anqi-det-n.yaml"))
    model.add_callback("on_train_start", lambda trainer: torch.set_num_threads(a.threads))
    model.train(
        data=str(BUILD / "datasets" / "det" / "det.yaml"), epochs=a.epochs, imgsz=a.imgsz, batch=a.batch,
        device="cpu", workers=0, seed=0, deterministic=True, amp=False, plots=False, pretrained=False, lr0=0.01 if not a.init else 0.005,
        project=str(runs), name=a.name, exist_ok=True, save_period=1, val=False, warmup_epochs=0.3,
        close_mosaic=1, mosaic=1.0, scale=0.5, fliplr=0.5, hsv_v=0.4, patience=100, verbose=True,
    )


if __name__ == "__main__":
    main()
