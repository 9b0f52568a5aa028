"""``face``: face capture of violators."""

from __future__ import annotations

from pydantic import Field

from anqi_contract.config import Section


class FaceConfig(Section):
    enabled: bool = True
    detector_model: str = Field("yunet", description="Manifest name of the face detector.")
    embedder_model: str = Field("sface", description="Manifest name of the face embedding model.")
    min_face_px: int = Field(16, ge=8, le=512, description="Smallest face side (pixels) worth keeping.")
    score_threshold: float = Field(0.6, gt=0, lt=1, description="Smallest YuNet face score that is kept.")
    nms_iou: float = Field(0.3, gt=0, lt=1, description="YuNet's own NMS IoU threshold.")
    max_input_px: int = Field(
        960,
        ge=160,
        le=4096,
        description="Images whose longer side exceeds this are scaled down for face detection (speed).",
    )
    save_context_frame: bool = Field(True, description="Also save the full frame the best face came from.")
