"""Detection stage: riders + heads (YOLOv8n), helmet classifier on head crops, faces (YuNet / SFace).

Public names: :class:`RiderDetector`, :class:`FrameDetections`, :class:`FaceDetector`,
:class:`FaceEmbedder`, :class:`Face`, :func:`check_config`. Model files come only from
``models/manifest.yaml`` (see :mod:`anqi_contract.manifest`).
"""

from __future__ import annotations

from anqi_contract.manifest import ModelFileError, load_manifest, verify
from edge.config import EdgeConfig
from edge.detect.faces import Face, FaceDetector, FaceEmbedder
from edge.detect.rider import DetectorLoadError, FrameDetections, RiderDetector

__all__ = [
    "DetectorLoadError",
    "Face",
    "FaceDetector",
    "FaceEmbedder",
    "FrameDetections",
    "ModelFileError",
    "RiderDetector",
    "check_config",
]


def check_config(cfg: EdgeConfig) -> list[str]:
    """Problems with the models the config names (missing from the manifest, missing file, wrong hash)."""
    try:
        manifest = load_manifest()
    except ModelFileError as e:  # the manifest itself (models/manifest.yaml), named in the message
        return [f"models: {e}"]
    wanted = [("detect.rider_model", cfg.detect.rider_model)]
    if cfg.detect.head_model:
        wanted += [("detect.head_model", cfg.detect.head_model)]
    if cfg.detect.spot_model:
        wanted += [("detect.spot_model", cfg.detect.spot_model)]
    if cfg.face.enabled or cfg.detect.face_proposals:
        wanted += [("face.detector_model", cfg.face.detector_model)]
    if cfg.face.enabled:
        wanted += [("face.embedder_model", cfg.face.embedder_model)]
    problems: list[str] = []
    for key, name in wanted:
        try:
            verify(manifest.get(name))
        except (KeyError, ModelFileError) as e:
            problems.append(f"{key}: {str(e).strip(chr(34) + chr(39))}")
    import onnxruntime as ort

    if not any(p in ort.get_available_providers() for p in cfg.detect.providers):
        problems.append(
            f"detect.providers: none of {list(cfg.detect.providers)} is available (this onnxruntime has {ort.get_available_providers()}); CPU will be used"
        )
    return problems
