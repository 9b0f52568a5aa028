"""../shared's labelled frames for tests: validation-split stems, images at the runtime's aspect, labelled head boxes."""

from __future__ import annotations

import cv2
import numpy as np

from anqi_contract.paths import project_home, shared_dir

DATA = shared_dir() / "data"
SPLITS = project_home() / "models" / "train" / "splits"


def val_images_with(ds: str, label_id: int, n: int | None = None) -> list[str]:
    """The first ``n`` (None: all) validation-split images of ``ds`` that have a head of class ``label_id``."""
    out = []
    for stem in (SPLITS / f"{ds}.val.txt").read_text().split():
        lines = (DATA / ds / "labels" / f"{stem}.txt").read_text().split("\n")
        if any(line.split()[:1] == [str(label_id)] for line in lines):
            out.append(stem)
        if len(out) == n:
            break
    return out


def load(ds: str, stem: str) -> np.ndarray:
    img = cv2.imread(str(DATA / ds / "images" / f"{stem}.jpg"))
    assert img is not None
    return cv2.resize(img, (1820, 1024), interpolation=cv2.INTER_AREA) if ds == "helmet9-dev" else img


def labelled_heads(ds: str, stem: str, label_id: int, w: int, h: int) -> np.ndarray:
    """The labelled boxes of class ``label_id`` in a ``w`` x ``h`` frame, pixel xyxy."""
    rows = [
        list(map(float, line.split()[1:5]))
        for line in (DATA / ds / "labels" / f"{stem}.txt").read_text().split("\n")
        if line.split()[:1] == [str(label_id)]
    ]
    b = np.array(rows, np.float32).reshape(-1, 4)
    return np.stack(
        [
            (b[:, 0] - b[:, 2] / 2) * w,
            (b[:, 1] - b[:, 3] / 2) * h,
            (b[:, 0] + b[:, 2] / 2) * w,
            (b[:, 1] + b[:, 3] / 2) * h,
        ],
        1,
    )
