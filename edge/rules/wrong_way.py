"""Wrong way: ground-plane travel opposed to the lane's legal direction for a configured distance."""

from __future__ import annotations

import math

import numpy as np

from anqi_contract.event import ViolationType
from edge.config.rules import WrongWayRuleConfig
from edge.rules.violation import OncePerTrack, Violation
from edge.track import Track
from edge.zone import angle_between, fit_motion


class WrongWayRule:
    """A track whose robust (Theil-Sen) ground motion over the last ``window_s`` runs against the
    lane, at a plausible speed, for at least ``min_distance_m``, on ``min_samples`` or more points.

    Ground points of far riders are noisy (the homography magnifies a few pixels into metres) and a
    track can jump between riders; hence the fit over many points instead of first-to-last, and
    ``max_speed_mps`` to tell a tracking error from a rider. A cheap first-to-last check runs first,
    so the fit costs nothing for riders going the legal way.
    """

    type = ViolationType.wrong_way

    def __init__(self, cfg: WrongWayRuleConfig, motion_window_s: float = 1.0):
        self.cfg = cfg
        self.motion_window_s = (
            motion_window_s  # kept for the common rule signature; the rule fits over cfg.window_s
        )
        self._once = OncePerTrack()
        rad = math.radians(cfg.lane_heading_deg)
        self._lane = np.array([math.sin(rad), math.cos(rad)])  # unit vector: 0 deg = +y, 90 deg = +x

    def forget(self, track_ids: set[int]) -> None:
        self._once.forget(track_ids)

    def check(self, track: Track) -> Violation | None:
        cfg = self.cfg
        tid = track.track_id
        last = track.last
        if tid is None or self._once.fired(tid) or last.ground is None or not last.in_zone:
            return None
        pts = []
        for p in reversed(track.history):  # newest first, stop at the window or where the band ends
            if p.t_s < last.t_s - cfg.window_s:
                break
            if p.ground is None:
                continue
            if not p.in_zone:
                break  # judged only from the stretch inside the band, where ground points are trusted
            pts.append(p)
        if len(pts) < cfg.min_samples or pts[0].t_s - pts[-1].t_s < cfg.min_band_s - 1e-6:
            return None
        g = np.array([p.ground for p in reversed(pts)], dtype=np.float64)
        if float((g[0] - g[-1]) @ self._lane) < 0.5 * cfg.min_distance_m:
            return None  # not even first-to-last against the lane: no fit needed
        along = g @ self._lane
        i, j = np.triu_indices(len(along), k=1)
        steady = float((along[j] < along[i]).mean())  # share of point pairs in order against the lane
        if steady < cfg.min_steady:
            return None  # back and forth: ranging noise of a standing or wrongly ranged track, not travel
        t = np.array([p.t_s for p in reversed(pts)], dtype=np.float64)
        motion = fit_motion(t, g, cfg.window_s, cfg.min_samples)
        if motion is None or not (cfg.min_speed_mps <= motion.speed_mps <= cfg.max_speed_mps):
            return None
        off = angle_between(motion.heading_deg, cfg.lane_heading_deg)
        if off < 180.0 - cfg.tolerance_deg:
            return None
        against = -motion.speed_mps * math.cos(math.radians(off)) * motion.span_s
        if against < cfg.min_distance_m:
            return None
        self._once.mark(tid)
        confidence = min(1.0, 0.5 + 0.5 * (off - (180.0 - cfg.tolerance_deg)) / max(cfg.tolerance_deg, 1e-6))
        return Violation(
            type=self.type,
            track_id=tid,
            t_s=last.t_s,
            mono=last.mono if last.mono is not None else last.t_s,
            utc=last.utc,
            confidence=round(confidence, 3),
            zone_distance_m=last.distance_m,
            speed_mps=motion.speed_mps,
            heading_deg=motion.heading_deg,
            detail={
                "against_m": round(against, 2),
                "off_lane_deg": round(off, 1),
                "lane_heading_deg": cfg.lane_heading_deg,
                "samples": motion.samples,
                "steady": round(steady, 2),
            },
        )
