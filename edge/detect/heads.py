"""Helmet classifier on head crops: helmet / no_helmet / not_a_head.

The crop recipe (:func:`head_crops`) is shared with the training script so the model sees at run
time exactly what it saw in training: a square of ``context`` x the box's longer side, centred on
the box, edge-replicated where it leaves the image, resized to ``size`` x ``size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from edge.detect.geometry import bgr_to_nchw

HEAD_CLASSES = ("helmet", "no_helmet", "not_head")
CROP_SIZE = 64
CROP_CONTEXT = 1.5


def head_crops(
    image_bgr: np.ndarray, boxes_xyxy: np.ndarray, size: int = CROP_SIZE, context: float = CROP_CONTEXT
) -> np.ndarray:
    """``(N, size, size, 3)`` uint8 BGR crops, one per box."""
    h, w = image_bgr.shape[:2]
    out = np.empty((len(boxes_xyxy), size, size, 3), np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes_xyxy, np.float32)):
        side = max(x1 - x0, y1 - y0, 2.0) * context
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        a0, b0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        a1, b1 = a0 + max(2, int(round(side))), b0 + max(2, int(round(side)))
        sx0, sy0, sx1, sy1 = max(a0, 0), max(b0, 0), min(a1, w), min(b1, h)
        if sx1 <= sx0 or sy1 <= sy0:
            out[i] = 114
            continue
        crop = image_bgr[sy0:sy1, sx0:sx1]
        crop = cv2.copyMakeBorder(crop, sy0 - b0, b1 - sy1, sx0 - a0, a1 - sx1, cv2.BORDER_REPLICATE)
        interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
        out[i] = cv2.resize(crop, (size, size), interpolation=interp)
    return out


def crops_to_tensor(crops_bgr: np.ndarray) -> np.ndarray:
    """NCHW float32 RGB in [0, 1]: the classifier's input layout."""
    return bgr_to_nchw(crops_bgr)


@dataclass(frozen=True)
class HeadScores:
    """Per head: ``p_no_helmet`` = P(no helmet | head), ``p_head`` = 1 - P(not a head)."""

    p_no_helmet: np.ndarray
    p_head: np.ndarray


class HelmetClassifier:
    """The small CNN that re-scores head crops (runs on crops only, ~0.3 ms each on a CPU core)."""

    def __init__(self, session: ort.InferenceSession, classes: list[str], size: int = CROP_SIZE):
        if tuple(classes[:2]) != HEAD_CLASSES[:2]:
            raise ValueError(
                f"head classifier classes must start with helmet, no_helmet; manifest says {classes}"
            )
        self.session = session
        self.classes = classes
        self.size = size
        self._input = session.get_inputs()[0].name

    @classmethod
    def from_file(
        cls, path: Path, classes: list[str], providers: list[str], threads: int = 0
    ) -> HelmetClassifier:
        from edge.detect.session import open_session

        return cls(open_session(path, providers, threads, name="head-classifier"), classes)

    def probabilities(self, crops_bgr: np.ndarray) -> np.ndarray:
        """Softmax over the classes, ``(N, C)``."""
        if len(crops_bgr) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        logits = self.session.run(None, {self._input: crops_to_tensor(crops_bgr)})[0].astype(np.float32)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def score(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray) -> HeadScores:
        p = self.probabilities(head_crops(image_bgr, boxes_xyxy, self.size))
        helmet, no_helmet = p[:, 0], p[:, 1]
        not_head = p[:, 2] if p.shape[1] > 2 else np.zeros(len(p), np.float32)
        return HeadScores(
            p_no_helmet=(no_helmet / np.maximum(helmet + no_helmet, 1e-6)).astype(np.float32),
            p_head=(1.0 - not_head).astype(np.float32),
        )
