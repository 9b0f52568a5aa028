"""Rebuild a trainable ultralytics checkpoint from the committed detector ONNX file.

    .train/bin/python models/train/from_onnx.py [--onnx models/onnx/anqi-rider-head.onnx] [--out models/build/anqi-rider-head.fused.pt]

Only the ONNX file is committed (no third-party or training checkpoint goes into git). ultralytics
exports a *fused* model: every Conv + BatchNorm pair is folded into one convolution with a bias,
and the initializers keep their module names (``model.0.conv.weight``, ``model.0.conv.bias``,
...). This script builds the same layout (``yolov8n.yaml``, the classes in the file's metadata),
fuses it the way the exporter does, loads every initializer by name (all must match in name and
shape), checks that the rebuilt network gives the ONNX file's outputs on a test input, and saves
an ultralytics-format checkpoint. ``models/train/finetune_detector.py`` continues training it.

The rebuilt model has no BatchNorm layers (they were folded away): fine-tuning it is fine-tuning a
normalisation-free network at a low learning rate, not a restart of the original recipe.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BUILD, MODELS  # noqa: E402


def rebuild(onnx_path: Path, layout: str = "yolov8n.yaml"):  # type: ignore[no-untyped-def]
    """The fused DetectionModel with the ONNX file's weights, and its class names."""
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper
    from ultralytics.nn.tasks import DetectionModel

    m = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in m.metadata_props}
    if "names" not in meta:
        raise SystemExit(f"{onnx_path}: no 'names' metadata: not an ultralytics export")
    names = ast.literal_eval(meta["names"])
    model = DetectionModel(layout, nc=len(names), verbose=False)
    model.names = names
    model.fuse(verbose=False)
    state = model.state_dict()
    weights = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    missing = [k for k in state if k not in weights and not k.endswith(("anchors", "strides"))]
    if missing:
        raise SystemExit(
            f"{onnx_path}: {len(missing)} parameters of {layout} are not in the file, e.g. {missing[:3]}"
        )
    for k, v in state.items():
        if k in weights:
            w = weights[k]
            if tuple(w.shape) != tuple(v.shape):
                raise SystemExit(
                    f"{onnx_path}: {k} has shape {tuple(w.shape)}, {layout} needs {tuple(v.shape)}"
                )
            state[k] = torch.from_numpy(np.array(w, dtype=np.float32))
    model.load_state_dict(state)
    model.float().eval()
    return model, names, meta


def check_equal(model, onnx_path: Path, h: int = 576, w: int = 1024) -> float:  # type: ignore[no-untyped-def]
    """Largest absolute difference between the rebuilt model and the ONNX file on one random input."""
    import numpy as np
    import onnxruntime as ort
    import torch

    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = model(torch.from_numpy(x))
    got = (got[0] if isinstance(got, (list, tuple)) else got).numpy()
    return float(np.abs(got - ref).max())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", type=Path, default=MODELS / "onnx" / "anqi-rider-head.onnx")
    ap.add_argument("--layout", default="yolov8n.yaml")
    ap.add_argument("--out", type=Path, default=BUILD / "anqi-rider-head.fused.pt")
    a = ap.parse_args()
    import torch

    model, names, meta = rebuild(a.onnx, a.layout)
    diff = check_equal(model, a.onnx)
    if diff > 1e-2:
        raise SystemExit(
            f"{a.onnx}: the rebuilt {a.layout} differs from the file by {diff:.4g} (largest output difference)"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    # the keys ultralytics' own checkpoints carry, so YOLO(path) loads it
    torch.save(
        {
            "model": model,
            "ema": None,
            "updates": 0,
            "optimizer": None,
            "epoch": -1,
            "train_args": {},
            "date": meta.get("date"),
        },
        a.out,
    )
    print(f"wrote {a.out}: {len(names)} classes {list(names.values())}, largest output difference {diff:.2e}")


if __name__ == "__main__":
    main()
