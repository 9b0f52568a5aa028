"""Ground-plane speed and heading of a track from its recent ground points."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class GroundMotion:
    speed_mps: float
    heading_deg: float  #: direction of travel, 0 = +y (away along the ground y axis), 90 = +x
    span_s: float
    samples: int


def heading_of(dx: float, dy: float) -> float:
    """Heading in degrees, 0 = +y, 90 = +x, in [0, 360)."""
    return math.degrees(math.atan2(dx, dy)) % 360.0


def angle_between(a_deg: float, b_deg: float) -> float:
    """Smallest absolute angle between two headings, in [0, 180]."""
    d = (a_deg - b_deg) % 360.0
    return min(d, 360.0 - d)


@lru_cache(maxsize=64)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, k=1)
    return i, j


def theil_sen(t: np.ndarray, v: np.ndarray) -> float:
    """Median of the pairwise slopes: a constant-velocity fit that one bad ground point cannot spoil."""
    i, j = _pairs(len(t))
    dt = t[j] - t[i]
    ok = dt > 1e-9
    if not ok.any():
        return 0.0
    return float(np.median((v[j] - v[i])[ok] / dt[ok]))


def repeated_median(t: np.ndarray, v: np.ndarray) -> float:
    """Siegel's repeated median slope: for each sample the median of its slopes to all others, then the median
    of those. Half the samples can be wrong before it breaks (Theil-Sen: 29 %), and that holds for the few
    points a rider has in the band: of 4 points with one badly ranged (a track's first head box, 20 % small),
    Theil-Sen's median falls between a good and a bad pairwise slope (15.6 m/s for a cyclist at 8), this one
    is the good points' slope."""
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    n = len(t)
    if n < 2:
        return 0.0
    dt = t[None, :] - t[:, None]
    ok = np.abs(dt) > 1e-9
    if not ok.any():
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = np.where(ok, (v[None, :] - v[:, None]) / np.where(ok, dt, 1.0), np.nan)
    has = ok.any(axis=1)
    return float(np.median(np.nanmedian(slopes[has], axis=1)))


def fit_motion(
    times: np.ndarray, ground: np.ndarray, window_s: float, min_samples: int = 2, min_span_s: float = 0.0
) -> GroundMotion | None:
    """Robust constant velocity (repeated median per ground axis) over the last ``window_s`` seconds of (time, ground point) samples.

    Returns None with fewer than ``min_samples`` (at least 2) finite samples or a span under
    ``min_span_s`` (a track's first few ground points are too noisy to call a speed).
    """
    t = np.asarray(times, dtype=np.float64)
    g: np.ndarray = np.asarray(ground, dtype=np.float64).reshape(-1, 2)
    ok = np.isfinite(g).all(axis=1) & np.isfinite(t)
    t, g = t[ok], g[ok]
    if len(t) < 2:
        return None
    keep = t >= t[-1] - window_s
    if keep.sum() < 2:
        keep[-2:] = True
    t, g = t[keep], g[keep]
    span = float(t[-1] - t[0])
    if span <= 0 or span < min_span_s or len(t) < max(2, min_samples):
        return None
    vx, vy = repeated_median(t, g[:, 0]), repeated_median(t, g[:, 1])
    return GroundMotion(math.hypot(vx, vy), heading_of(vx, vy), span, int(len(t)))
