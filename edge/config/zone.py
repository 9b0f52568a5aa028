"""``zone``: camera calibration (image -> ground plane) and the 15-25 m capture band."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from anqi_contract.config import Section


class CalibrationPoint(Section):
    image: tuple[float, float] = Field(..., description="Pixel (x, y) in the full camera frame.")
    ground: tuple[float, float] = Field(
        ..., description="Ground-plane (x, y) in metres; the camera foot point is ground_origin."
    )


class ZoneConfig(Section):
    calibrated: bool = Field(
        True,
        description="false: no survey exists (evaluating someone else's video, trying the appliance before the survey): the whole frame is the capture zone, nothing is measured in metres (no distance check, no speed, no wrong-way), and every event says so (detail.zone_calibrated = false).",
    )
    image_size: tuple[int, int] | None = Field(
        None,
        description="(width, height) the calibration pixels refer to; frames of another size are scaled.",
    )
    calibration: list[CalibrationPoint] = Field(
        default_factory=list, description="4 or more image points with their ground coordinates in metres."
    )
    camera_ground: tuple[float, float] = Field(
        (0.0, 0.0), description="Ground point below the camera, in the calibration's metres."
    )
    near_m: float = Field(
        15.0, ge=0, le=200, description="Near edge of the capture band, metres from the camera."
    )
    far_m: float = Field(
        25.0, gt=0, le=300, description="Far edge of the capture band, metres from the camera."
    )
    max_reprojection_m: float = Field(
        0.5,
        gt=0,
        le=10,
        description="Largest mean ground error (metres) of the calibration points accepted by validation.",
    )
    roi_margin_m: float = Field(
        3.0,
        ge=0,
        le=50,
        description="The detector's image region covers the band widened by this much on both sides, so tracks exist before riders enter it.",
    )
    rider_height_m: float = Field(
        2.0,
        gt=0.5,
        le=5,
        description="Height above the ground point the detector's image region must include (rider on a bike).",
    )

    @field_validator("far_m")
    @classmethod
    def _far_beyond_near(cls, v: float, info: ValidationInfo) -> float:
        near = info.data.get("near_m")
        if near is not None and v <= near:
            raise ValueError(f"must be greater than zone.near_m (got {v:g} <= {near:g})")
        return v

    @field_validator("calibration")
    @classmethod
    def _enough_points(cls, v: list[CalibrationPoint]) -> list[CalibrationPoint]:
        if v and len(v) < 4:
            raise ValueError(f"needs at least 4 points for a homography (got {len(v)})")
        return v
