"""Capture zone: image -> ground homography, the 15-25 m band, ground speed and heading.

``check_config(cfg)`` is what ``anqi-edge validate`` asks of this stage.
"""

from __future__ import annotations

import numpy as np

from edge.config import EdgeConfig
from edge.zone.capture import CaptureZone, LanePolygonError, WholeFrameZone, ground_anchor
from edge.zone.geometry import CalibrationError, CalibrationMismatch, GroundMapper
from edge.zone.motion import GroundMotion, angle_between, fit_motion, heading_of, repeated_median, theil_sen
from edge.zone.overlay import BAND_BGR

__all__ = [
    "BAND_BGR",
    "CalibrationError",
    "CalibrationMismatch",
    "CaptureZone",
    "GroundMapper",
    "GroundMotion",
    "LanePolygonError",
    "angle_between",
    "check_config",
    "fit_motion",
    "ground_anchor",
    "WholeFrameZone",
    "heading_of",
    "repeated_median",
    "theil_sen",
]


def check_config(cfg: EdgeConfig) -> list[str]:
    """Problems with ``zone``: homography valid, points not collinear, reprojection small, band visible."""
    z = cfg.zone
    if not z.calibrated:
        needs_metres: list[str] = []
        if cfg.rules.wrong_way.enabled:
            needs_metres.append(
                "rules.wrong_way.enabled: a direction of travel needs a calibrated zone (zone.calibrated is false): turn it off"
            )
        if cfg.rules.red_light.enabled:
            needs_metres.append(
                "rules.red_light.enabled: crossing the stop line needs a calibrated zone (zone.calibrated is false): turn it off"
            )
        if z.lane_polygon is not None:
            needs_metres.append(
                "zone.lane_polygon: a lane is placed on the ground through the calibration (zone.calibrated is false): survey the zone or leave the lane out"
            )
        return needs_metres
    if not z.calibration:
        return [
            "zone.calibration: no calibration points: give 4 or more image points with their ground position (anqi-edge calibrate)"
        ]
    try:
        zone = CaptureZone.from_config(z)
    except CalibrationError as e:
        return [f"{e.key}: {e}"]
    problems: list[str] = []
    if zone.mapper.reprojection_m > z.max_reprojection_m:
        problems.append(
            f"zone.calibration: points do not fit one ground plane: mean error {zone.mapper.reprojection_m:.2f} m > zone.max_reprojection_m {z.max_reprojection_m:g} m"
        )
    if z.image_size is None:
        xs = [p.image[0] for p in z.calibration]
        ys = [p.image[1] for p in z.calibration]
        size = (int(max(xs)) + 1, int(max(ys)) + 1)
    else:
        size = (int(z.image_size[0]), int(z.image_size[1]))
    d = zone.distance_map(*size, max(1, min(size) // 180))
    with np.errstate(invalid="ignore"):
        band_seen = bool(((d >= z.near_m) & (d <= z.far_m)).any())
    if not band_seen:
        problems.append(
            f"zone.near_m: the band {z.near_m:g}-{z.far_m:g} m from zone.camera_ground is not visible in the {size[0]}x{size[1]} image"
        )
    elif zone.visible_fraction(*size) <= 0.0:  # the band is seen, but not where the lane crosses it
        problems.append(
            f"zone.lane_polygon: the lane does not cross the band {z.near_m:g}-{z.far_m:g} m in the {size[0]}x{size[1]} image: nothing could ever be judged"
        )
    return problems
