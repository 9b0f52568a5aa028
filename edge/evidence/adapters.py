"""Adapters from the models engineer's face classes (``edge.detect.faces``) to what evidence needs."""

from __future__ import annotations

import numpy as np

from anqi_contract.faces import Face, FaceEmbedder


class SFaceEmbedding:
    """``FaceEmbedder.embed(image, Face)`` called with the box and landmarks a :class:`FaceCandidate` keeps."""

    def __init__(self, embedder: FaceEmbedder, model_name: str = "sface"):
        self.embedder = embedder
        self.model_name = model_name

    def embed(
        self, frame: np.ndarray, box: tuple[float, float, float, float], landmarks: np.ndarray | None
    ) -> np.ndarray:
        if landmarks is None:
            raise ValueError("the face embedding needs the 5 landmarks to align the face")
        face = Face(np.asarray(box, np.float32), np.asarray(landmarks, np.float32).reshape(5, 2), 1.0)
        return self.embedder.embed(frame, face)
