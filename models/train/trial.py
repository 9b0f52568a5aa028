"""Make a private models folder (models/build/trial/) to evaluate candidate ONNX files without
touching the committed ones:

    .train/bin/python models/train/trial.py --det models/build/det-trial.onnx [--cls models/build/anqi-head-cls-v2.onnx]
    ANQI_MODELS_DIR=models/build/trial .venv/bin/python benchmarks/accuracy.py --no-baseline --no-face
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BUILD, MODELS  # noqa: E402

TRIAL = BUILD / "trial"
SPOT_ENTRY = """  - name: anqi-head-spot
    kind: head-heatmap
    file: onnx/anqi-head-spot.onnx
    sha256: {digest}
    input_size: [576, 1024]
    dynamic_input: true
    classes: [head]
    source: "own training: models/train/train_head_spot.py on helmet9-dev + thaigate-dev"
    licence: "model: project licence; training data CC BY 4.0 (see card)"
    card: cards/anqi-head-spot.md
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--det", type=Path)
    ap.add_argument("--cls", type=Path)
    ap.add_argument("--spot", type=Path)
    ap.add_argument(
        "--out", type=Path, default=TRIAL, help="the private models folder (default models/build/trial)"
    )
    a = ap.parse_args()
    trial = a.out.resolve()
    if trial.exists():
        shutil.rmtree(trial)
    (trial / "onnx").mkdir(parents=True)
    (trial / "build").mkdir()
    for f in (MODELS / "build").glob("*.onnx"):
        os.symlink(f, trial / "build" / f.name)
    text = (MODELS / "manifest.yaml").read_text()
    for name, src in (("anqi-rider-head", a.det), ("anqi-head-cls", a.cls)):
        committed = MODELS / "onnx" / f"{name}.onnx"
        dest = trial / "onnx" / f"{name}.onnx"
        shutil.copyfile(src or committed, dest)
        old = hashlib.sha256(committed.read_bytes()).hexdigest()
        text = text.replace(old, hashlib.sha256(dest.read_bytes()).hexdigest())
    if a.spot:
        shutil.copyfile(a.spot, trial / "onnx" / "anqi-head-spot.onnx")
        digest = hashlib.sha256(a.spot.read_bytes()).hexdigest()
        if "name: anqi-head-spot" in text:
            lines = text.split("\n")
            i = lines.index("  - name: anqi-head-spot")
            j = next(k for k in range(i, len(lines)) if lines[k].strip().startswith("sha256:"))
            lines[j] = f"    sha256: {digest}"
            text = "\n".join(lines)
        else:
            text += SPOT_ENTRY.format(digest=digest)
    (trial / "manifest.yaml").write_text(text)
    print(f"trial models in {trial}")


if __name__ == "__main__":
    main()
