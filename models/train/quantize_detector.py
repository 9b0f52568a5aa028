"""Quantize the committed detector to int8 (onnxruntime static quantization, QDQ) for slow CPUs.

    .venv/bin/python models/train/quantize_detector.py [--method percentile] [--images 48] [--frames DIR]
                                                       [--out models/build/anqi-rider-head-int8.onnx]

Weights int8 per channel, activations uint8, calibrated on ``--images`` training frames of
../shared/data (never the validation split) prepared as the runtime prepares them (scaled to
``--width``, padded to a multiple of 32: ``edge.detect.rider.scale_and_pad``), or on a site's own frames (``--frames DIR``: any
JPEG/PNG files). The head's last convolutions (box distribution, class logits) and the box
decoding after them stay float. ``percentile`` keeps every calibration activation in memory
(48 frames at 1024 px: about 20 GB; ``minmax`` needs little).

Tried 2026-11-26, not shipped (see models/cards/anqi-rider-head.md): about 1.45 times faster on
this CPU, one or two of thaigate-dev's 17 no-helmet heads fewer.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))
from common import BUILD, DATASETS, MODELS, load_image, stems, val_stems  # noqa: E402

from edge.detect.geometry import bgr_to_nchw  # noqa: E402
from edge.detect.rider import scale_and_pad  # noqa: E402


def calibration_frames(n: int, frames: Path | None) -> list:  # type: ignore[type-arg]
    """Loaders of ``n`` frames: a site's own files, or training frames of both data sets (seed 0)."""
    rng = random.Random(0)
    if frames is not None:
        files = sorted(p for p in frames.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not files:
            raise SystemExit(f"--frames {frames}: no .jpg / .png files")
        return [lambda p=p: cv2.imread(str(p)) for p in rng.sample(files, min(n, len(files)))]
    out = []
    for ds in DATASETS:
        val = set(val_stems(ds))
        train = [s for s in stems(ds) if s not in val]
        out += [lambda ds=ds, s=s: load_image(ds, s) for s in rng.sample(train, n // len(DATASETS))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, default=MODELS / "onnx" / "anqi-rider-head.onnx")
    ap.add_argument("--out", type=Path, default=BUILD / "anqi-rider-head-int8.onnx")
    ap.add_argument("--method", choices=("percentile", "minmax", "entropy"), default="percentile")
    ap.add_argument("--images", type=int, default=48, help="calibration frames")
    ap.add_argument(
        "--frames", type=Path, help="calibrate on these frames (a site's own) instead of the training split"
    )
    ap.add_argument("--width", type=int, default=1024, help="the runtime's detect.input_width")
    a = ap.parse_args()
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    loaders = iter(calibration_frames(a.images, a.frames))

    class Frames(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            load = next(loaders, None)
            # the runtime's own input: scaled as YoloDetector.prepare scales a frame, then NCHW
            return None if load is None else {"images": bgr_to_nchw(scale_and_pad(load(), a.width)[0])}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(a.src), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        head_float = [
            n.name
            for n in graph.node
            if n.name.startswith("/model.22/")
            and (n.op_type != "Conv" or n.name.endswith(".2/Conv") or "/dfl/" in n.name)
        ]
        a.out.parent.mkdir(parents=True, exist_ok=True)
        quantize_static(
            str(pre),
            str(a.out),
            Frames(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "Mul", "Add", "Concat", "MaxPool", "Resize", "Sigmoid", "Split"],
            nodes_to_exclude=head_float,
            calibrate_method={
                "percentile": CalibrationMethod.Percentile,
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
            }[a.method],
        )
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.1f} MB), {a.method} calibration")


if __name__ == "__main__":
    main()
