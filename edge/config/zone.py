"""``zone``: camera calibration (image -> ground plane) and the 15-25 m capture band."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from anqi_contract.config import Section


def _first_crossing(xy: list[tuple[float, float]]) -> tuple[int, int] | None:
    """The first pair of non-adjacent sides (i, j) of the closed polygon ``xy`` that cross, or None."""

    def orient(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    n = len(xy)
    for i in range(n):
        a, b = xy[i], xy[(i + 1) % n]
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # adjacent through the closing side
            c, d = xy[j], xy[(j + 1) % n]
            if orient(a, b, c) * orient(a, b, d) < 0 and orient(c, d, a) * orient(c, d, b) < 0:
                return i, j
    return None


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
    lane_polygon: list[tuple[float, float]] | None = Field(
        None,
        description="Image points (x, y), in the calibration's pixels, around the part of the road the node watches (the non-motorised lane): a road user whose ground point lies outside it is not in the capture zone, so cars and vans in the motor lane beside it are never judged. At least 3 points, all on the road below the horizon; points may lie outside the frame (where the lane leaves the view, draw it on past the frame edge: a rider whose feet are cut off by the edge stands on it). Left out: the band's whole width.",
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

    @field_validator("lane_polygon")
    @classmethod
    def _a_polygon(cls, v: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        if v is None:
            return v
        if len(v) < 3:
            raise ValueError(f"needs at least 3 image points around the lane (got {len(v)})")
        xy = [(float(x), float(y)) for x, y in v]
        crossing = _first_crossing(xy)
        if crossing is not None:
            i, j = crossing
            raise ValueError(
                f"its sides {i}-{i + 1} and {j}-{(j + 1) % len(xy)} cross: list the points in order around the lane"
            )
        twice_area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(xy, xy[1:] + xy[:1], strict=True))
        if abs(twice_area) < 1.0:
            raise ValueError("the points enclose no area (they lie on one line or repeat one point)")
        return v

    @field_validator("calibration")
    @classmethod
    def _enough_points(cls, v: list[CalibrationPoint]) -> list[CalibrationPoint]:
        if v and len(v) < 4:
            raise ValueError(f"needs at least 4 points for a homography (got {len(v)})")
        return v
