"""Calibration overlay: the capture band, distance ticks and calibration points drawn on a snapshot,
so the installer can check the calibration by eye."""

from __future__ import annotations

import cv2
import numpy as np

from edge.draw import put_label
from edge.zone.capture import CaptureZone, iso_lines

BAND_BGR = (0, 200, 255)
TICK_BGR = (255, 255, 255)
POINT_BGR = (0, 0, 255)
REPROJ_BGR = (0, 255, 0)
ROI_BGR = (255, 160, 0)
LANE_BGR = (255, 0, 255)


def draw_overlay(
    image: np.ndarray,
    zone: CaptureZone,
    calibration: list[tuple[tuple[float, float], tuple[float, float]]] | None = None,
    tick_m: float = 5.0,
) -> np.ndarray:
    """A copy of ``image`` with the band tinted, iso-distance lines every ``tick_m`` metres (labelled),
    the calibration points (red) with their ground points mapped back (green), the lane polygon (magenta)
    where one is set, and the detector's region."""
    h, w = image.shape[:2]
    zone = zone.for_frame(w, h)
    out = image.copy()
    k = max(1.0, w / 640.0)  # text and lines grow with the snapshot
    font, thin, thick = 0.45 * k, max(1, round(k)), max(2, round(2 * k))
    d = zone.distance_map(w, h)
    in_lane = zone.zone_map(w, h) if zone.lane is not None else d
    with np.errstate(invalid="ignore"):
        band = (in_lane >= zone.near_m) & (in_lane <= zone.far_m)
    tint = out.copy()
    tint[band] = BAND_BGR
    out = cv2.addWeighted(tint, 0.35, out, 0.65, 0)
    dd = np.nan_to_num(d, nan=-1.0)
    top = float(np.nanmax(d)) if np.isfinite(d).any() else 0.0
    ticks = np.arange(tick_m, min(top, 2.0 * zone.far_m) + 1e-9, tick_m)
    for t in ticks:
        strong = abs(t - zone.near_m) < 1e-6 or abs(t - zone.far_m) < 1e-6
        color = BAND_BGR if strong else TICK_BGR
        cv2.polylines(out, iso_lines(d, float(t)), False, color, thick if strong else thin, cv2.LINE_AA)
        ys, xs = np.nonzero((dd >= t) & (dd < t + 0.5))
        if len(xs):
            j = int(np.argmin(np.abs(xs - w * 0.85)))
            cv2.putText(
                out,
                f"{t:g} m",
                (int(xs[j]) + 3, int(ys[j]) - 3),
                cv2.FONT_HERSHEY_SIMPLEX,
                font,
                color,
                thin,
                cv2.LINE_AA,
            )
    if zone.lane is not None:
        lane_px = zone.mapper.ground_to_image(zone.lane)
        cv2.polylines(out, [np.round(lane_px).astype(np.int32)], True, LANE_BGR, thick, cv2.LINE_AA)
    roi = zone.image_region(w, h)
    if roi is not None:
        cv2.rectangle(out, (roi[0], roi[1]), (roi[2] - 1, roi[3] - 1), ROI_BGR, thin)
    for img_pt, gnd_pt in calibration or []:
        p = (int(round(img_pt[0])), int(round(img_pt[1])))
        cv2.circle(out, p, round(5 * k), POINT_BGR, thick, cv2.LINE_AA)
        q = zone.mapper.ground_to_image([gnd_pt])[0]
        if np.isfinite(q).all():
            cv2.drawMarker(
                out, (int(round(q[0])), int(round(q[1]))), REPROJ_BGR, cv2.MARKER_CROSS, round(10 * k), thin
            )
        cv2.putText(
            out,
            f"({gnd_pt[0]:g},{gnd_pt[1]:g})",
            (p[0] + 6, p[1] - 6),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.9 * font,
            POINT_BGR,
            thin,
            cv2.LINE_AA,
        )
    label = f"band {zone.near_m:g}-{zone.far_m:g} m  reprojection {zone.mapper.reprojection_m:.3f} m / {zone.mapper.reprojection_px:.2f} px"
    put_label(out, label, (round(8 * k), round(18 * k)), font, thin)
    return out
