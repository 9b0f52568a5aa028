"""``models/manifest.yaml``: the one list of model files the appliance may run.

Each entry names the file (relative to :func:`anqi_contract.paths.models_dir`), its SHA-256, input size,
class map, the package or training run it comes from and its licence. Nothing else in the code
names a model path.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from anqi_contract.paths import models_dir

ModelKind = Literal["yolov8", "head-heatmap", "head-classifier", "yunet", "sface", "yolo-baseline"]


class ModelFileError(RuntimeError):
    """A model file that is missing, corrupt or not the one the manifest names; the message names the file."""


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Name used in the config (detect.rider_model, face.detector_model, ...).")
    kind: ModelKind = Field(description="How the runtime decodes the model's output.")
    file: str = Field(description="Path relative to the models folder.")
    sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the file; null only while not yet built."
    )
    source_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="Prepared models: SHA-256 of the file as shipped in the source package (checked before any surgery).",
    )
    input_size: tuple[int, int] = Field(
        description="Model input height, width (pixels); dynamic models: the reference size."
    )
    dynamic_input: bool = Field(False, description="The input's height/width may be any multiple of stride.")
    classes: list[str] = Field(default_factory=list, description="Output class names in order.")
    source: str = Field(
        description="Where the file comes from: a PyPI package (and its file) or our training script."
    )
    licence: str
    prepared: bool = Field(
        False, description="Built by `anqi-edge models prepare` (not committed); false = committed in git."
    )
    baseline: bool = Field(
        False, description="Only built by `models prepare --baseline` (needs the [train] extra)."
    )
    card: str | None = Field(None, description="Model card path relative to the models folder.")

    def path(self, root: Path | None = None) -> Path:
        return (root or models_dir()) / self.file


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[ModelSpec]

    def get(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(
            f"model {name!r} is not in {manifest_path()} (known: {', '.join(m.name for m in self.models)})"
        )


def manifest_path(root: Path | None = None) -> Path:
    return (root or models_dir()) / "manifest.yaml"


def load_manifest(root: Path | None = None) -> Manifest:
    path = manifest_path(root)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"model manifest not found: {path}") from None
    except yaml.YAMLError as e:
        raise ModelFileError(f"{path}: not valid YAML ({e})") from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        raise ModelFileError(f"{path}: {e}") from None


@lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def verify(spec: ModelSpec, root: Path | None = None) -> Path:
    """The model's path after checking that it exists and has the manifest's SHA-256."""
    path = spec.path(root)
    if not path.is_file():
        hint = (
            " (run: anqi-edge models prepare" + (" --baseline" if spec.baseline else "") + ")"
            if spec.prepared
            else " (it is committed in git: restore it)"
        )
        raise ModelFileError(f"model file missing: {path} for model {spec.name!r}{hint}")
    if spec.sha256 is None:
        raise ModelFileError(
            f"{manifest_path(root)}: model {spec.name!r} has no sha256 yet: build it and record the hash"
        )
    got = sha256_file(path)
    if got != spec.sha256:
        raise ModelFileError(
            f"model file corrupt or replaced: {path} for model {spec.name!r} has SHA-256 {got[:12]}…, manifest says {spec.sha256[:12]}…"
        )
    return path


def resolve(name: str, root: Path | None = None) -> tuple[ModelSpec, Path]:
    """Manifest entry and verified path of the model called ``name``."""
    spec = load_manifest(root).get(name)
    return spec, verify(spec, root)
