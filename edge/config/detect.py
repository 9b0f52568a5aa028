"""``detect``: which models run, where, and at what thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge.config.base import Section

Provider = Literal["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider", "OpenVINOExecutionProvider", "CoreMLExecutionProvider"]


class DetectConfig(Section):
    rider_model: str = Field("anqi-rider-head", description="Manifest name of the rider/head detector.")
    head_model: str = Field("anqi-head-cls", description="Manifest name of the helmet / no-helmet head classifier.")
    providers: list[Provider] = Field(default_factory=lambda: ["CPUExecutionProvider"], min_length=1, description="onnxruntime providers, first available wins.")
    threads: int = Field(0, ge=0, le=64, description="onnxruntime intra-op threads; 0 lets onnxruntime choose.")
    rider_conf: float = Field(0.35, gt=0, lt=1)
    head_conf: float = Field(0.25, gt=0, lt=1)
    nms_iou: float = Field(0.5, gt=0, lt=1)
    crop_to_zone: bool = Field(True, description="Run the detector only on the image region that covers the capture zone.")
