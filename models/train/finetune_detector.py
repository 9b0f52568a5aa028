"""Fine-tune the committed detector (rebuilt from its ONNX file) instead of training from scratch.

    .train/bin/python models/train/prepare_data.py --oversample thaigate-dev=4
    .train/bin/python models/train/from_onnx.py                       # -> models/build/anqi-rider-head.fused.pt
    .train/bin/python models/train/finetune_detector.py --epochs 4    # CPU works (minutes per epoch); --device 0 on a GPU
    .train/bin/python models/train/export_detector.py --weights models/build/runs/ft/weights/last.pt --out models/build/det-ft.onnx

CPU recipe with the public corpus (issue 16 point 7; 640-px windows at the runtime's scale,
models/train/prepare_finetune.py; backbone frozen):
    .train/bin/python models/train/prepare_finetune.py            # -> models/build/datasets/det-ft/
    OMP_NUM_THREADS=2 .train/bin/python models/train/finetune_detector.py --data models/build/datasets/det-ft/det.yaml \
        --imgsz 640 --freeze 10 --lr 2e-4 --hsv-v 0.6 --minutes 65 --epochs 6 --threads 2 --name ft640

The rebuilt model is BatchNorm-free (the export folded it into the convolutions), so ultralytics'
usual start-up would break it: its warm-up raises the bias learning rate to 0.1 and its checkpoint
loader matches parameters by name into a fresh, unfused layout. This script hands the fused model
to the trainer as it is and trains at a low, constant-then-decaying learning rate with no warm-up.
Same data yaml, augmentation and seed as ``train_detector.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import BUILD  # noqa: E402
from train_detector import _offline_patches, _resolved_data  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--weights", type=Path, default=BUILD / "anqi-rider-head.fused.pt", help="from_onnx.py's checkpoint"
    )
    ap.add_argument("--data", type=Path, default=BUILD / "datasets" / "det" / "det.yaml")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=0.0, help="time box (0 = run all --epochs)")
    ap.add_argument("--imgsz", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument(
        "--lr", type=float, default=1e-4, help="AdamW learning rate (the from-scratch run ended near 1.4e-5)"
    )
    ap.add_argument("--mosaic", type=float, default=0.5)
    ap.add_argument(
        "--close-mosaic", type=int, default=0, help="last N epochs without mosaic (0 = half of --epochs)"
    )
    ap.add_argument(
        "--freeze", type=int, default=0, help="freeze the first N layers (10 = the whole backbone)"
    )
    ap.add_argument("--hsv-v", type=float, default=0.4, help="brightness jitter (fraction)")
    ap.add_argument("--hsv-s", type=float, default=0.7, help="saturation jitter (fraction)")
    ap.add_argument("--scale", type=float, default=0.5, help="random scale jitter (+- fraction)")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0 = leave ultralytics' choice)"
    )
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--project", type=Path, default=BUILD / "runs")
    ap.add_argument("--name", default="ft")
    a = ap.parse_args()
    import torch
    from ultralytics.models.yolo.detect import DetectionTrainer

    _offline_patches()
    fused = torch.load(a.weights, map_location="cpu", weights_only=False)["model"].float()
    if any(hasattr(m, "bn") for m in fused.modules()):
        raise SystemExit(f"{a.weights}: not a fused model (run models/train/from_onnx.py)")

    class FusedTrainer(DetectionTrainer):
        def get_model(self, cfg=None, weights=None, verbose=True):  # noqa: ANN001, ANN201
            for p in fused.parameters():
                p.requires_grad_(True)
            return fused

    gpu = a.device != "cpu"
    args = dict(
        model=str(a.weights),
        data=str(_resolved_data(a.data)),
        epochs=a.epochs,
        time=(a.minutes / 60) or None,
        imgsz=a.imgsz,
        batch=a.batch,
        device=a.device,
        workers=a.workers if gpu else 0,
        cache="ram",
        fraction=a.fraction,
        seed=0,
        deterministic=True,
        amp=gpu,
        plots=False,
        pretrained=False,
        project=str(a.project.resolve()),
        name=a.name,
        exist_ok=True,
        val=False,
        patience=1000,
        optimizer="AdamW",
        lr0=a.lr,
        lrf=0.1,
        cos_lr=True,
        warmup_epochs=0,
        weight_decay=0.0005,
        mosaic=a.mosaic,
        close_mosaic=a.close_mosaic or max(1, a.epochs // 2),
        freeze=a.freeze or None,
        scale=a.scale,
        fliplr=0.5,
        hsv_v=a.hsv_v,
        hsv_s=a.hsv_s,
        translate=0.1,
        verbose=True,
    )
    trainer = FusedTrainer(overrides=args)
    if a.threads:
        trainer.add_callback("on_train_start", lambda t: torch.set_num_threads(a.threads))
    trainer.train()


if __name__ == "__main__":
    main()
