"""onnxruntime execution providers on this machine: ms per inference of each model the appliance
runs, per provider available in the installed onnxruntime build (prints figures; no asserts).

    .venv/bin/python benchmarks/providers.py [--runs 15] [--threads 2]

With the stock ``onnxruntime`` wheel only CPUExecutionProvider exists. To measure OpenVINO on an
x86 CPU, run this script from a separate venv with the OpenVINO build (the two wheels provide the
same ``onnxruntime`` module and must not share a venv)::

    python3 -m venv /tmp/ov && /tmp/ov/bin/pip install onnxruntime-openvino numpy opencv-python-headless pyyaml
    /tmp/ov/bin/python benchmarks/providers.py

On a GPU machine the same with ``onnxruntime-gpu`` lists CUDA / TensorRT. Inputs are real frames
(../shared helmet9-dev, scaled like the runtime does: 1024 px wide, padded to a multiple of 32);
the head classifier gets a batch of 16 real 64x64 crops' worth of pixels. Median and p90 of
``--runs`` after two warm-up runs. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def frame_tensor(h: int, w: int) -> np.ndarray:
    """A real traffic frame as the detector's (1, 3, h, w) float input."""
    import cv2

    imgs = sorted((SHARED / "data" / "helmet9-dev" / "images").glob("*.jpg"))
    img = cv2.imread(str(imgs[len(imgs) // 2])) if imgs else None
    if img is None:
        img = np.full((h, w, 3), 114, np.uint8)
    scale = w / img.shape[1]
    img = cv2.resize(img, (w, min(h, round(img.shape[0] * scale))))
    canvas = np.full((h, w, 3), 114, np.uint8)
    canvas[: img.shape[0]] = img
    return np.ascontiguousarray(canvas[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def models() -> list[tuple[str, Path, np.ndarray]]:
    det = frame_tensor(576, 1024)
    band = det[:, :, 256:, :]  # a capture-zone band: the lower 320 rows
    crops = np.ascontiguousarray(
        np.stack([det[0, :, 300 + 8 * i : 364 + 8 * i, 400:464] for i in range(16)]), dtype=np.float32
    )
    out = [
        ("anqi-rider-head 576x1024", ROOT / "models/onnx/anqi-rider-head.onnx", det),
        ("anqi-rider-head 320x1024 (zone band)", ROOT / "models/onnx/anqi-rider-head.onnx", band),
        ("anqi-head-cls 16x64x64", ROOT / "models/onnx/anqi-head-cls.onnx", crops),
    ]
    return [m for m in out if m[1].is_file()]


def time_session(path: Path, provider: str, x: np.ndarray, runs: int, threads: int) -> list[float]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    sess = ort.InferenceSession(str(path), opts, providers=providers)
    name = sess.get_inputs()[0].name
    for _ in range(2):
        sess.run(None, {name: x})
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    wanted = [
        p
        for p in (
            "CPUExecutionProvider",
            "OpenVINOExecutionProvider",
            "CUDAExecutionProvider",
            "TensorrtExecutionProvider",
        )
        if p in ort.get_available_providers()
    ]
    print(f"onnxruntime {ort.__version__}; providers here: {', '.join(ort.get_available_providers())}")
    result: dict[str, dict[str, dict[str, float]]] = {}
    for label, path, x in models():
        for p in wanted:
            try:
                ms = time_session(path, p, x, a.runs, a.threads)
            except Exception as e:  # a provider that cannot take this graph: say so, go on
                print(f"{label:40s} {p:28s} failed: {str(e).splitlines()[0][:120]}")
                continue
            med, p90 = statistics.median(ms), float(np.percentile(ms, 90))
            result.setdefault(label, {})[p] = {"median_ms": round(med, 1), "p90_ms": round(p90, 1)}
            print(f"{label:40s} {p:28s} median {med:7.1f} ms  p90 {p90:7.1f} ms")
    print(json.dumps({"onnxruntime": ort.__version__, "threads": a.threads, "ms": result}))


if __name__ == "__main__":
    main()
