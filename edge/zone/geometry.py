"""Image <-> ground plane mapping from an installer's calibration points (a planar homography)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edge.config.zone import ZoneConfig


class CalibrationError(ValueError):
    """The calibration points cannot give a usable homography; the message says why."""

    key = "zone.calibration"  #: the config key the message is about


class CalibrationMismatch(CalibrationError):
    """Frames whose shape is not the one the calibration was surveyed on (another aspect: a rotated
    image, another camera or stream profile). Distances would be wrong, so nothing is measured."""


#: relative difference of width/height ratios still taken as the same picture (encoders round sizes:
#: 1920x1080 vs 1920x1088 is 0.7 %)
ASPECT_TOLERANCE = 0.02


def _collinear_triple(pts: np.ndarray, tol: float) -> tuple[int, int, int] | None:
    """First triple of points that lies on one line (triangle area below ``tol`` times the spread)."""
    n = len(pts)
    spread = float(np.ptp(pts, axis=0).max()) or 1.0
    for i in range(n):
        for j in range(i + 1, n):
            for k in range(j + 1, n):
                a, b, c = pts[i], pts[j], pts[k]
                area2 = abs((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))
                if area2 < tol * spread * spread:
                    return i, j, k
    return None


def _all_collinear(pts: np.ndarray, tol: float) -> bool:
    centred = pts - pts.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    return bool(s[0] == 0 or s[1] / s[0] < tol)


@dataclass(frozen=True)
class GroundMapper:
    """Planar homography ``H`` (image pixels -> ground metres) and its inverse.

    ``image_size`` is the (width, height) the calibration pixels refer to; :meth:`for_frame`
    rescales the mapping to frames of another size.
    """

    H: np.ndarray
    image_size: tuple[int, int] | None = None
    reprojection_m: float = 0.0
    reprojection_px: float = 0.0
    front_sign: float = 1.0

    @classmethod
    def from_points(
        cls,
        image_pts: Sequence[Sequence[float]],
        ground_pts: Sequence[Sequence[float]],
        image_size: tuple[int, int] | None = None,
    ) -> GroundMapper:
        img = np.asarray(image_pts, dtype=np.float64).reshape(-1, 2)
        gnd = np.asarray(ground_pts, dtype=np.float64).reshape(-1, 2)
        if len(img) != len(gnd):
            raise CalibrationError(f"{len(img)} image points but {len(gnd)} ground points")
        if len(img) < 4:
            raise CalibrationError(f"needs at least 4 points for a homography (got {len(img)})")
        if not (np.isfinite(img).all() and np.isfinite(gnd).all()):
            raise CalibrationError("points must be finite numbers")
        for name, pts in (("image", img), ("ground", gnd)):
            if _all_collinear(pts, 1e-3):
                raise CalibrationError(
                    f"the {name} points all lie on one line: the ground plane is not determined"
                )
            if len(pts) == 4:
                triple = _collinear_triple(pts, 1e-3)
                if triple:
                    raise CalibrationError(
                        f"{name} points {triple[0] + 1}, {triple[1] + 1} and {triple[2] + 1} lie on one line; with 4 points no 3 may"
                    )
        found, _mask = cv2.findHomography(img, gnd, 0)
        if found is None or not np.isfinite(found).all():
            raise CalibrationError("no homography fits these points (degenerate layout)")
        H = np.asarray(found, dtype=np.float64)
        det = float(np.linalg.det(H))
        if abs(det) < 1e-12 or np.linalg.cond(H) > 1e12:
            raise CalibrationError("the homography is singular (points degenerate)")
        mapper = cls(H=H, image_size=image_size)
        # every calibration point must be in front of the camera: one sign of w for all
        w = (np.c_[img, np.ones(len(img))] @ H.T)[:, 2]
        if not (np.all(w > 0) or np.all(w < 0)):
            raise CalibrationError(
                "the points straddle the horizon: some image points map behind the camera (check the order of image vs ground points)"
            )
        err_m = float(np.linalg.norm(mapper.image_to_ground(img) - gnd, axis=1).mean())
        err_px = float(np.linalg.norm(mapper.ground_to_image(gnd) - img, axis=1).mean())
        return cls(
            H=H,
            image_size=image_size,
            reprojection_m=err_m,
            reprojection_px=err_px,
            front_sign=float(np.sign(w[0])),
        )

    @classmethod
    def from_config(cls, cfg: ZoneConfig) -> GroundMapper:
        if not cfg.calibration:
            raise CalibrationError(
                "zone.calibration is empty: give 4 or more image points with their ground position"
            )
        return cls.from_points(
            [p.image for p in cfg.calibration], [p.ground for p in cfg.calibration], cfg.image_size
        )

    @property
    def H_inv(self) -> np.ndarray:
        return np.linalg.inv(self.H)

    def for_frame(self, width: int, height: int) -> GroundMapper:
        """The same ground mapping for frames of ``width`` x ``height`` pixels."""
        if self.image_size is None or tuple(self.image_size) == (width, height):
            return self if self.image_size is not None else replace(self, image_size=(width, height))
        cw, ch = self.image_size
        aspect, calib_aspect = width / height, cw / ch
        if abs(aspect / calib_aspect - 1.0) > ASPECT_TOLERANCE:
            raise CalibrationMismatch(
                f"zone.image_size: the calibration was surveyed on {cw}x{ch} frames (aspect {calib_aspect:.3f}) "
                f"but the source gives {width}x{height} (aspect {aspect:.3f}): a rotated image, another camera "
                f"or another stream profile. Distances would be wrong, so nothing is judged; set the camera "
                f"back to {cw}x{ch} (or the same aspect), or survey again (anqi-edge calibrate)"
            )
        sx, sy = width / cw, height / ch
        scale_inv = np.diag([1.0 / sx, 1.0 / sy, 1.0])
        return replace(
            self,
            H=self.H @ scale_inv,
            image_size=(width, height),
            reprojection_px=self.reprojection_px * (sx + sy) / 2,
        )

    @staticmethod
    def _apply(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        q = np.c_[p, np.ones(len(p))] @ M.T
        w = q[:, 2:3]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = q[:, :2] / w
        return out

    def image_to_ground(self, pts: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """(N, 2) pixels -> (N, 2) ground metres."""
        return self._apply(self.H, np.asarray(pts))

    def ground_to_image(self, pts: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """(N, 2) ground metres -> (N, 2) pixels."""
        return self._apply(self.H_inv, np.asarray(pts))

    def in_front(self, pts: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Boolean mask: image points below the horizon (they map to the ground in front of the camera)."""
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        w = (np.c_[p, np.ones(len(p))] @ self.H.T)[:, 2]
        return np.sign(w) == self.front_sign

    def pixels_per_metre(self, pts: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Image scale across the view (pixels per ground metre, along the image rows) at each image point."""
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        d = np.linalg.norm(self.image_to_ground(p + np.array([1.0, 0.0])) - self.image_to_ground(p), axis=1)
        with np.errstate(divide="ignore"):
            return 1.0 / d
