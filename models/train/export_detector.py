"""Export the trained detector to ONNX (dynamic height/width) and record its hash in the manifest.

.train/bin/python models/train/export_detector.py [--weights models/build/runs/det/weights/last.pt]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BUILD, MODELS, record_sha256  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=Path, default=BUILD / "runs" / "det" / "weights" / "last.pt")
    ap.add_argument("--out", type=Path, default=MODELS / "onnx" / "anqi-rider-head.onnx")
    a = ap.parse_args()
    from ultralytics import YOLO

    model = YOLO(str(a.weights))
    onnx_path = Path(
        model.export(
            format="onnx", imgsz=[576, 1024], dynamic=True, simplify=False, opset=17, half=False, device="cpu"
        )
    )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if onnx_path.resolve() != a.out.resolve():
        shutil.copyfile(onnx_path, a.out)
    default = MODELS / "onnx" / "anqi-rider-head.onnx"
    # only the committed file's hash goes into the manifest (a trial written elsewhere must not break it)
    note = (
        f" sha256 {record_sha256('anqi-rider-head', a.out)}" if a.out.resolve() == default.resolve() else ""
    )
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.1f} MB){note}")


if __name__ == "__main__":
    main()
