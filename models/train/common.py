"""Shared helpers for the training scripts: data set discovery, the written validation split, labels.

The validation split of each data set is chosen to resemble its held-out part:
- helmet9-dev: one fixed camera, held-out = LATER frames -> validate on the last frames by number.
- thaigate-dev: held-out = another recording group; the no-helmet heads only occur in the
  ``6-7_00-9_00`` group, so validate on that group's later frames plus the whole (helmet-only)
  midday group ``2_-6-11_30-13_00`` as a distinct-time proxy.
The split is written to ``models/train/splits/<dataset>.val.txt`` (one image stem per line) and
read back by the benchmark, so training and evaluation can never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent
ROOT = MODELS.parent
SHARED = Path(__import__("os").environ.get("ANQI_SHARED", ROOT.parent / "shared")).resolve()
SPLITS = HERE / "splits"
BUILD = MODELS / "build"

#: helmet9 frames were stretched to 1024x1024 by the exporter; this is their true aspect.
HELMET9_SIZE = (1820, 1024)
HELMET9_VAL_FRAMES = 84
THAIGATE_VAL_GROUPS = ("2_-6-11_30-13_00",)
THAIGATE_VAL_FROM = ("6-7_00-9_00", 700)


@dataclass(frozen=True)
class Box:
    label: str  # rider | helmet | no_helmet
    cx: float
    cy: float
    w: float
    h: float


CORPUS_PREFIX = "corpus:"


def dataset_dir(name: str) -> Path:
    """../shared/data/<name>, or for ``corpus:<source>`` the public source that
    models/data/build_corpus.py wrote (stems there are ``train/<name>`` / ``val/<name>``)."""
    if name.startswith(CORPUS_PREFIX):
        return BUILD / "corpus" / name[len(CORPUS_PREFIX) :]
    return SHARED / "data" / name


def read_labels(name: str, stem: str) -> list[Box]:
    """Labels of one image, mapped to the project's names (rider, helmet, no_helmet); others dropped."""
    d = dataset_dir(name)
    classes = [c.strip() for c in (d / "classes.txt").read_text().splitlines() if c.strip()]
    mapping = {
        "rider": "rider",
        "helmet": "helmet",
        "no_helmet": "no_helmet",
        "With-Helmet": "helmet",
        "Without Helmet": "no_helmet",
    }
    out: list[Box] = []
    f = d / "labels" / f"{stem}.txt"
    if not f.exists():
        return out
    for line in f.read_text().split("\n"):
        p = line.split()
        if len(p) != 5:
            continue
        name_ = mapping.get(classes[int(p[0])])
        if name_:
            out.append(Box(name_, *map(float, p[1:])))
    return out


def stems(name: str) -> list[str]:
    if name.startswith(CORPUS_PREFIX):
        d = dataset_dir(name) / "images"
        return sorted(str(p.relative_to(d).with_suffix("")) for p in d.glob("*/*.jpg"))
    return sorted(p.stem for p in (dataset_dir(name) / "images").glob("*.jpg"))


def _frame_no(stem: str) -> int:
    m = re.search(r"(\d+)$", stem)
    return int(m.group(1)) if m else 0


def val_stems(name: str) -> list[str]:
    """The written validation split (created on first use, committed afterwards)."""
    if name.startswith(CORPUS_PREFIX):  # split by file-name group when the corpus was built
        return [s for s in stems(name) if s.startswith("val/")]
    f = SPLITS / f"{name}.val.txt"
    if f.exists():
        return [s for s in f.read_text().split() if s]
    all_ = stems(name)
    if name == "helmet9-dev":
        val = sorted(all_, key=_frame_no)[-HELMET9_VAL_FRAMES:]
    elif name == "thaigate-dev":
        g, start = THAIGATE_VAL_FROM
        val = [
            s
            for s in all_
            if any(s.startswith(v + "-") for v in THAIGATE_VAL_GROUPS)
            or (s.startswith(g + "-") and _frame_no(s) >= start)
        ]
    else:
        raise KeyError(name)
    SPLITS.mkdir(parents=True, exist_ok=True)
    f.write_text("\n".join(sorted(val)) + "\n")
    return sorted(val)


def load_image(name: str, stem: str) -> np.ndarray:
    """The image at its true aspect (helmet9 resized to 1820x1024)."""
    import cv2

    img = cv2.imread(str(dataset_dir(name) / "images" / f"{stem}.jpg"))
    if img is None:
        raise FileNotFoundError(dataset_dir(name) / "images" / f"{stem}.jpg")
    if name == "helmet9-dev":
        img = cv2.resize(img, HELMET9_SIZE, interpolation=cv2.INTER_AREA)
    return img


DATASETS = ("helmet9-dev", "thaigate-dev")

#: ``--dusk`` (prepare_finetune.py, train_head_cls.py): an evening camera's curve, grey x -> gain * x ** gamma
#: plus sensor noise of this sd, each drawn uniformly from these ranges (not benchmarks/accuracy.py --darken's
#: fixed 0.55 x ** 1.8 + 0.015, so that benchmark is not the training recipe)
DUSK_GAMMA, DUSK_GAIN, DUSK_NOISE = (1.4, 2.6), (0.3, 0.8), (0.005, 0.03)


def record_sha256(name: str, path: Path) -> str:
    """Write the SHA-256 of ``path`` into the manifest entry ``name`` (keeps the file's comments)."""
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = MODELS / "manifest.yaml"
    lines = manifest.read_text().split("\n")
    inside = False
    for i, line in enumerate(lines):
        if line.strip().startswith("- name:"):
            inside = line.split(":", 1)[1].strip() == name
        elif inside and line.strip().startswith("sha256:"):
            lines[i] = line[: line.index("sha256:")] + f"sha256: {digest}"
            break
    else:
        raise KeyError(f"{name} has no sha256 line in {manifest}")
    manifest.write_text("\n".join(lines))
    return digest
