"""``detect``: which models run, where, and at what thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from anqi_contract.config import Section

Provider = Literal[
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "OpenVINOExecutionProvider",
    "CoreMLExecutionProvider",
]


class DetectConfig(Section):
    rider_model: str = Field("anqi-rider-head", description="Manifest name of the rider/head detector.")
    head_model: str = Field(
        "anqi-head-cls",
        description="Manifest name of the helmet / no-helmet head classifier (re-scores head crops); empty string = off, which needs a detector with helmet / no_helmet classes and no spot model or face proposals.",
    )
    spot_model: str = Field(
        "",
        description="Manifest name of a head-centre heatmap model merged with the detector's heads (anqi-head-spot: more small heads, more false ones); empty string = off.",
    )
    spot_conf: float = Field(0.15, gt=0, lt=1, description="Smallest heatmap peak kept as a head proposal.")
    providers: list[Provider] = Field(
        default_factory=lambda: list[Provider](["CPUExecutionProvider"]),
        min_length=1,
        description="onnxruntime providers, first available wins.",
    )
    threads: int = Field(
        0, ge=0, le=64, description="onnxruntime intra-op threads; 0 lets onnxruntime choose."
    )
    rider_conf: float = Field(
        0.35, gt=0, lt=1, description="Smallest detector score of a rider box that is kept."
    )
    head_conf: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="Smallest final head score (detector x classifier 'is a head') that is kept.",
    )
    head_proposal_conf: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="Smallest detector head score handed to the head classifier (head_conf when that is lower); a head the detector is unsure of is kept when the classifier is sure (final score sqrt(detector x classifier P(head)) >= head_conf). Not used without head_model.",
    )
    nms_iou: float = Field(
        0.5, gt=0, lt=1, description="IoU above which the weaker of two boxes of one class is dropped."
    )
    crop_to_zone: bool = Field(
        True, description="Run the detector only on the image region that covers the capture zone."
    )
    input_width: int = Field(
        1024,
        ge=320,
        le=3840,
        multiple_of=32,
        description="Width (px) the whole frame is scaled to for the detector (dynamic-input models); a capture-zone region is cut at the same scale. The shipped detector was trained on frames 1024 px wide: heads keep the size it learnt. Smaller is faster and misses small heads.",
    )
    low_light_lift: float = Field(
        0.4,
        ge=0,
        lt=1,
        description="Evening / night frames: a frame whose median grey (0-1) is below this is lifted by one gamma that brings its median to it before the detector, head classifier and face proposals see it (the evidence keeps the frame as captured); 0 = off. On ../shared's gate camera darkened to a synthetic dusk (benchmarks/accuracy.py --darken) no_helmet recall falls from 0.706 in daylight to 0.412 without it and comes back to 0.588 with it (the models shipped 2026-12-06 06:30 UTC; those of 2026-12-06 02:50: 0.647, 0.353, 0.529); daylight frames (median grey about 0.5) are untouched.",
    )
    max_upscale: float = Field(
        1.0, ge=0.5, le=3.0, description="Never enlarge the region by more than this factor (small frames)."
    )
    no_helmet_threshold: float = Field(
        0.5, gt=0, lt=1, description="P(no helmet) at or above which `detect-images` labels a head no_helmet."
    )
    min_head_prob: float = Field(
        0.1, ge=0, lt=1, description="Heads whose classifier P(is a head) is below this are dropped."
    )
    face_proposals: bool = Field(
        False,
        description="Also propose head boxes from YuNet faces (frontal cameras: close riders the detector misses; on traffic cameras they add false heads).",
    )
    face_input_width: int = Field(
        640, ge=160, le=1920, description="Width (px) the region is scaled to for the face-proposal pass."
    )
    heads_need_rider: bool = Field(
        False,
        description="Keep only heads whose centre lies in a detected rider box (drops pedestrians' heads; needs a camera whose riders the detector knows).",
    )
    riders_from_heads: bool = Field(
        True,
        description="Give every head outside any rider box a rider box estimated from the head (so tracking sees it).",
    )

    @model_validator(mode="after")
    def _heads_without_a_helmet_call_need_the_classifier(self) -> DetectConfig:
        if not self.head_model and (self.spot_model or self.face_proposals):
            raise ValueError(
                "head_model is needed when spot_model or face_proposals is on: their heads come without a helmet decision"
            )
        return self
