"""Train the rider/head detector ``anqi-rider-head`` from scratch (no pretrained weights install offline).

    .train/bin/python models/train/prepare_data.py                     # models/build/datasets/det/
    .train/bin/python models/train/train_detector.py --device 0 --minutes 7      # GPU (the committed model)
    .train/bin/python models/train/train_detector.py --device cpu --minutes 240  # same recipe on a CPU, slowly
    .train/bin/python models/train/export_detector.py                  # -> models/onnx/anqi-rider-head.onnx

Classes rider, helmet, no_helmet (models/train/prepare_data.py). ``--model`` picks the layout:
``anqi-det-n.yaml`` (YOLOv8 at half the n width, ~0.9 M parameters) or ultralytics' own
``yolov8n.yaml`` (~3 M). Whole 1024-px-wide frames, 1024 px mosaics, seed 0, deterministic;
``--minutes`` time-boxes the run (ultralytics re-plans the epoch count and the learning-rate
schedule after each epoch to end on time). Weights land in models/build/runs/<name>/weights/.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BUILD  # noqa: E402

HERE = Path(__file__).resolve().parent


def _offline_patches() -> None:
    """Two ultralytics habits that need the network or a package the GPU image lacks.

    - ``check_amp`` downloads a reference model to compare fp16 and fp32 outputs: skipped (AMP on).
    - ``read_results_csv`` (called at every checkpoint) imports polars: read the CSV with the
      standard library when polars is missing.
    """
    import csv

    from ultralytics.engine import trainer as trainer_mod

    trainer_mod.check_amp = lambda model: True
    try:
        import polars  # noqa: F401
    except ImportError:

        def read_results_csv(self):  # noqa: ANN001, ANN202
            try:
                with open(self.csv, newline="") as f:
                    rows = list(csv.DictReader(f))
            except OSError:
                return {}
            return {k.strip(): [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}

        trainer_mod.BaseTrainer.read_results_csv = read_results_csv


def _resolved_data(yaml_path: Path) -> Path:
    """The data yaml with its ``path`` made absolute (prepare_data.py writes ``path: .`` so the folder can move)."""
    import yaml

    yaml_path = yaml_path.resolve()
    d = yaml.safe_load(yaml_path.read_text())
    root = Path(d.get("path", "."))
    if root.is_absolute():
        return yaml_path
    d["path"] = str((yaml_path.parent / root).resolve())
    out = yaml_path.with_name(yaml_path.stem + ".resolved.yaml")
    out.write_text(yaml.safe_dump(d, sort_keys=False))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=BUILD / "datasets" / "det" / "det.yaml")
    ap.add_argument(
        "--model", default=str(HERE / "anqi-det-n.yaml"), help="layout yaml (or weights .pt to continue from)"
    )
    ap.add_argument("--device", default="cpu", help="cpu, or a CUDA index such as 0")
    ap.add_argument(
        "--epochs", type=int, default=300, help="upper bound; --minutes usually ends the run first"
    )
    ap.add_argument("--minutes", type=float, default=0.0, help="time box (0 = run all --epochs)")
    ap.add_argument("--imgsz", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--cache", default="ram", help="ram, disk or none")
    ap.add_argument(
        "--fraction", type=float, default=1.0, help="use this fraction of the training images (smoke tests)"
    )
    ap.add_argument("--project", type=Path, default=BUILD / "runs")
    ap.add_argument("--name", default="det")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0 = leave ultralytics' choice)"
    )
    ap.add_argument("--resume", action="store_true", help="resume PROJECT/NAME/weights/last.pt")
    a = ap.parse_args()
    from ultralytics import YOLO

    _offline_patches()
    if a.resume:
        YOLO(str(a.project / a.name / "weights" / "last.pt")).train(resume=True)
        return
    import torch

    model = YOLO(a.model)
    if a.threads:
        model.add_callback("on_train_start", lambda trainer: torch.set_num_threads(a.threads))
    gpu = a.device != "cpu"
    model.train(
        data=str(_resolved_data(a.data)),
        epochs=a.epochs,
        time=(a.minutes / 60) or None,
        imgsz=a.imgsz,
        batch=a.batch,
        device=a.device,
        workers=a.workers if gpu else 0,
        cache=False if a.cache == "none" else a.cache,
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
        mosaic=1.0,
        close_mosaic=10,
        scale=0.5,
        fliplr=0.5,
        hsv_v=0.4,
        translate=0.1,
        verbose=True,
    )


if __name__ == "__main__":
    main()
