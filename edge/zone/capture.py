"""The capture band: riders whose ground point lies ``near_m``..``far_m`` from the camera."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.config.zone import ZoneConfig
from edge.zone.geometry import CalibrationError, GroundMapper

Box = tuple[int, int, int, int]


class LanePolygonError(CalibrationError):
    """``zone.lane_polygon`` cannot be placed on the ground (a point above the horizon)."""

    key = "zone.lane_polygon"


def inside_polygon(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd test: which of the (N, 2) points lie inside the closed (K, 2) polygon (NaN points: none)."""
    p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    a = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    b = np.roll(a, -1, axis=0)
    x, y = p[:, :1], p[:, 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        straddle = (a[:, 1] > y) != (b[:, 1] > y)
        x_cross = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
        hits = straddle & (x < x_cross)
    return (hits.sum(axis=1) % 2).astype(bool)


def distance_to_polygon(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance of each (N, 2) point to the closed (K, 2) polygon: 0 inside, to the nearest side outside."""
    p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    a = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    ab = np.roll(a, -1, axis=0) - a
    ap = p[:, None, :] - a[None, :, :]
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    d = np.linalg.norm(ap - t[..., None] * ab, axis=-1).min(axis=1)
    d[inside_polygon(p, a)] = 0.0
    return d


def ground_anchor(boxes: np.ndarray) -> np.ndarray:
    """Bottom-centre of each (N, 4) xyxy box: where a road user touches the ground."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.c_[(b[:, 0] + b[:, 2]) / 2.0, b[:, 3]]


def iso_lines(d: np.ndarray, metres: float) -> list[np.ndarray]:
    """Open polylines ``(K, 2)`` int32 (map pixels) where the distance map ``d`` crosses ``metres``;
    the parts that run along the map's border or the horizon (NaN beyond it) are left out."""
    h, w = d.shape
    edge = (np.nan_to_num(d, nan=-1.0) >= metres).astype(np.uint8)
    beyond = cv2.dilate(np.isnan(d).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    contours, _ = cv2.findContours(edge, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    lines: list[np.ndarray] = []
    for c in contours:
        pts = c.reshape(-1, 2)
        inner = (
            (pts[:, 0] > 0)
            & (pts[:, 0] < w - 1)
            & (pts[:, 1] > 0)
            & (pts[:, 1] < h - 1)
            & ~beyond[pts[:, 1], pts[:, 0]]
        )
        # runs of consecutive inner points
        cuts = np.flatnonzero(np.diff(np.r_[0, inner.astype(np.int8), 0]))
        lines += [pts[a:b].astype(np.int32) for a, b in zip(cuts[::2], cuts[1::2], strict=True) if b - a >= 2]
    return lines


@dataclass
class CaptureZone:
    """Ground band ``near_m``..``far_m`` around ``camera_ground`` seen through ``mapper``."""

    mapper: GroundMapper
    camera_ground: tuple[float, float] = (0.0, 0.0)
    near_m: float = 15.0
    far_m: float = 25.0
    roi_margin_m: float = 3.0
    rider_height_m: float = 2.0
    #: (K, 2) ground polygon (metres) the zone is limited to (zone.lane_polygon); None: the band's whole width
    lane: np.ndarray | None = None
    _regions: dict[tuple[int, int], Box | None] = field(default_factory=dict, repr=False, compare=False)
    _scaled: dict[tuple[int, int], CaptureZone] = field(default_factory=dict, repr=False, compare=False)
    _edges: dict[tuple[int, int], tuple[np.ndarray, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    calibrated = True  #: False for :class:`WholeFrameZone`

    @classmethod
    def from_config(cls, cfg: ZoneConfig) -> CaptureZone:
        if not cfg.calibrated:
            return WholeFrameZone.uncalibrated()
        mapper = GroundMapper.from_config(cfg)
        lane = None
        if cfg.lane_polygon is not None:
            px = np.asarray(cfg.lane_polygon, dtype=np.float64)
            behind = np.flatnonzero(~mapper.in_front(px))
            if len(behind):
                i = int(behind[0])
                raise LanePolygonError(
                    f"point {i} ({px[i, 0]:g}, {px[i, 1]:g}) lies above the horizon, where no road is: "
                    "keep every point on the road surface (anqi-edge calibrate draws the band to help)"
                )
            lane = mapper.image_to_ground(px)
        return cls(
            mapper,
            cfg.camera_ground,
            cfg.near_m,
            cfg.far_m,
            cfg.roi_margin_m,
            cfg.rider_height_m,
            lane,
        )

    def for_frame(self, width: int, height: int) -> CaptureZone:
        """This zone for frames of another size; made once per size (called on every detected frame)."""
        key = (width, height)
        zone = self._scaled.get(key)
        if zone is None:
            mapper = self.mapper.for_frame(width, height)
            zone = (
                self
                if mapper is self.mapper
                else CaptureZone(
                    mapper,
                    self.camera_ground,
                    self.near_m,
                    self.far_m,
                    self.roi_margin_m,
                    self.rider_height_m,
                    self.lane,
                )
            )
            self._scaled[key] = zone
        return zone

    def distance(self, ground_pts: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Ground distance (m) of each (N, 2) ground point from the camera foot point."""
        g = np.asarray(ground_pts, dtype=np.float64).reshape(-1, 2)
        return np.linalg.norm(g - np.asarray(self.camera_ground, dtype=np.float64), axis=1)

    def contains_ground(self, ground_pts: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Which (N, 2) ground points lie in the band (and in the lane, where one is set)."""
        g = np.asarray(ground_pts, dtype=np.float64).reshape(-1, 2)
        return self._inside(g, self.distance(g))

    def _inside(self, g: np.ndarray, d: np.ndarray) -> np.ndarray:
        """In the zone: ground points ``g`` (N, 2) at distances ``d`` (N,) in the band and in the lane."""
        with np.errstate(invalid="ignore"):
            inside = (d >= self.near_m) & (d <= self.far_m)
        if self.lane is not None:
            inside &= inside_polygon(g, self.lane)
        return inside

    def locate_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For (N, 4) image boxes: ground points (N, 2), distances (N,), in-zone mask (N,).

        A box whose anchor is above the horizon has no ground point (NaN) and is never in zone.
        """
        anchors = ground_anchor(boxes)
        g = self.mapper.image_to_ground(anchors)
        front = self.mapper.in_front(anchors)
        g[~front] = np.nan
        d = self.distance(g)
        inside = np.zeros(len(d), dtype=bool)
        ok = np.isfinite(d)
        inside[ok] = self._inside(g[ok], d[ok])
        return g, d, inside

    def _ground_map(self, width: int, height: int, step: int) -> tuple[np.ndarray, tuple[int, int]]:
        """The ground point (N, 2) of every ``step``-th pixel, NaN above the horizon, and the map's shape."""
        xs = np.arange(0, width, step, dtype=np.float64) + 0.5
        ys = np.arange(0, height, step, dtype=np.float64) + 0.5
        gx, gy = np.meshgrid(xs, ys)
        pts = np.c_[gx.ravel(), gy.ravel()]
        g = self.mapper.image_to_ground(pts)
        g[~self.mapper.in_front(pts)] = np.nan
        return g, (len(ys), len(xs))

    def distance_map(self, width: int, height: int, step: int = 1) -> np.ndarray:
        """Ground distance (m) of every ``step``-th pixel of a ``width`` x ``height`` frame; NaN above the horizon."""
        g, shape = self._ground_map(width, height, step)
        return self.distance(g).reshape(shape)

    def zone_map(self, width: int, height: int, step: int = 1, margin_m: float = 0.0) -> np.ndarray:
        """:meth:`distance_map`, NaN where the ground lies farther than ``margin_m`` outside the lane."""
        if self.lane is None:
            return self.distance_map(width, height, step)
        g, shape = self._ground_map(width, height, step)
        d = self.distance(g)
        ok = np.flatnonzero(np.isfinite(d))
        for a in range(0, len(ok), 65536):  # in slices: a full-size overlay has a million pixels
            idx = ok[a : a + 65536]
            off = (
                ~inside_polygon(g[idx], self.lane)
                if margin_m <= 0
                else distance_to_polygon(g[idx], self.lane) > margin_m
            )
            d[idx[off]] = np.nan
        return d.reshape(shape)

    def image_region(self, width: int, height: int) -> Box | None:
        """Pixel region (x0, y0, x1, y1) the detector must see: the band widened by ``roi_margin_m``
        and raised by ``rider_height_m`` so riders standing in it are whole; None if not visible."""
        key = (width, height)
        if key not in self._regions:
            self._regions[key] = self._compute_region(width, height)
        return self._regions[key]

    def _compute_region(self, width: int, height: int) -> Box | None:
        step = max(1, min(width, height) // 180)
        d = self.zone_map(width, height, step, self.roi_margin_m)
        lo, hi = max(0.0, self.near_m - self.roi_margin_m), self.far_m + self.roi_margin_m
        with np.errstate(invalid="ignore"):
            mask = (d >= lo) & (d <= hi)
        if not mask.any():
            return None
        ys, xs = np.nonzero(mask)
        px = np.c_[xs * step + 0.5, ys * step + 0.5]
        top = px[:, 1] - self.rider_height_m * self.mapper.pixels_per_metre(px)
        x0 = int(max(0, xs.min() * step))
        x1 = int(min(width, (xs.max() + 1) * step))
        y0 = int(max(0, np.floor(np.nanmin(top))))
        y1 = int(min(height, (ys.max() + 1) * step))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        return x0, y0, x1, y1

    def band_edges(self, width: int, height: int) -> tuple[np.ndarray, ...]:
        """The band's near and far edges as open polylines ``(K, 2)`` int32 in frame pixels (made once per size)."""
        key = (width, height)
        if key not in self._edges:
            step = max(1, min(width, height) // 360)
            d = self.zone_map(width, height, step)
            self._edges[key] = tuple(
                line * step + step // 2 for m in (self.near_m, self.far_m) for line in iso_lines(d, m)
            )
        return self._edges[key]

    def visible_fraction(self, width: int, height: int) -> float:
        """Share of the frame's pixels that lie in the band (0 when the band is out of view)."""
        d = self.zone_map(width, height, max(1, min(width, height) // 180))
        with np.errstate(invalid="ignore"):
            return float(((d >= self.near_m) & (d <= self.far_m)).mean())


class WholeFrameZone(CaptureZone):
    """No survey: the whole frame is the capture zone. Nothing is placed on the ground (no ground point,
    no distance, no speed): every box is in the zone."""

    calibrated = False

    @classmethod
    def uncalibrated(cls) -> WholeFrameZone:
        # a placeholder mapper (the unit square) so the type is a CaptureZone; never used to measure
        unit = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
        return cls(GroundMapper.from_points(unit, unit), near_m=0.0, far_m=float("inf"))

    def for_frame(self, width: int, height: int) -> CaptureZone:
        return self

    def locate_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(np.asarray(boxes).reshape(-1, 4))
        return np.full((n, 2), np.nan), np.full(n, np.nan), np.ones(n, dtype=bool)

    def distance_map(self, width: int, height: int, step: int = 1) -> np.ndarray:
        return np.full(((height + step - 1) // step, (width + step - 1) // step), np.nan)

    def image_region(self, width: int, height: int) -> Box | None:
        return 0, 0, width, height

    def band_edges(self, width: int, height: int) -> tuple[np.ndarray, ...]:
        return ()

    def visible_fraction(self, width: int, height: int) -> float:
        return 1.0
