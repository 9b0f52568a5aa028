"""The detection stage's faces: the shared YuNet / SFace runners of :mod:`anqi_contract.faces` (the
central office embeds enrolment photos with the same code, so both sides share one embedding space).
Build them from the ``face`` section: ``FaceDetector.from_config(cfg.face)``."""

from __future__ import annotations

from anqi_contract.faces import EMBEDDING_DIM, Face, FaceDetector, FaceEmbedder, cosine

__all__ = ["EMBEDDING_DIM", "Face", "FaceDetector", "FaceEmbedder", "cosine"]
