"""Wrong way: ground-plane travel opposed to the lane's legal direction for a configured distance."""

from __future__ import annotations

import math

from edge.config.rules import WrongWayRuleConfig
from edge.event import ViolationType
from edge.rules.violation import OncePerTrack, Violation
from edge.track.tracker import Track
from edge.zone.motion import angle_between


class WrongWayRule:
    """Keeps, per track, the furthest point reached along the legal direction; a track that has since
    gone ``min_distance_m`` back against it, and whose current heading is opposed, rides the wrong way.
    O(1) per track and frame; the motion fit runs only once the distance is reached."""

    type = ViolationType.wrong_way

    def __init__(self, cfg: WrongWayRuleConfig, motion_window_s: float = 1.0):
        self.cfg = cfg
        self.motion_window_s = motion_window_s
        self._once = OncePerTrack()
        rad = math.radians(cfg.lane_heading_deg)
        self._lane = (math.sin(rad), math.cos(rad))  # unit vector: 0 deg = +y, 90 deg = +x
        self._peak: dict[int, tuple[float, float]] = {}  # track id -> (furthest along the lane, t_s of the last point seen)

    def forget(self, track_ids: set[int]) -> None:
        for tid in track_ids:
            self._peak.pop(tid, None)
        self._once.forget(track_ids)

    def check(self, track: Track) -> Violation | None:
        cfg = self.cfg
        tid = track.track_id
        if tid is None or self._once.fired(tid):
            return None
        last = track.last
        if last.ground is None:
            return None
        along = last.ground[0] * self._lane[0] + last.ground[1] * self._lane[1]
        prev = self._peak.get(tid)
        if prev is None:
            # first look at this track: take its history so far
            alongs = [p.ground[0] * self._lane[0] + p.ground[1] * self._lane[1] for p in list(track.history)[:-1] if p.ground is not None]
            peak = max(alongs) if alongs else along
        elif prev[1] == last.t_s:
            return None  # no new observation
        else:
            peak = prev[0]
        self._peak[tid] = (max(peak, along), last.t_s)
        against = peak - along
        if against < cfg.min_distance_m:
            return None
        motion = track.motion(self.motion_window_s)
        if motion is None or motion.speed_mps < cfg.min_speed_mps:
            return None
        off = angle_between(motion.heading_deg, cfg.lane_heading_deg)
        if off < 180.0 - cfg.tolerance_deg:
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
            detail={"against_m": round(against, 2), "off_lane_deg": round(off, 1), "lane_heading_deg": cfg.lane_heading_deg},
        )
