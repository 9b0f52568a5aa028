"""Wrong way: ground-plane travel opposed to the lane's legal direction for a configured distance."""

from __future__ import annotations

import math

from edge.config.rules import WrongWayRuleConfig
from edge.event import ViolationType
from edge.rules.violation import OncePerTrack, Violation
from edge.track.tracker import Track
from edge.zone.motion import angle_between


class WrongWayRule:
    type = ViolationType.wrong_way

    def __init__(self, cfg: WrongWayRuleConfig, motion_window_s: float = 1.0):
        self.cfg = cfg
        self.motion_window_s = motion_window_s
        self._once = OncePerTrack()
        rad = math.radians(cfg.lane_heading_deg)
        self._lane = (math.sin(rad), math.cos(rad))  # unit vector: 0 deg = +y, 90 deg = +x

    def check(self, track: Track) -> Violation | None:
        cfg = self.cfg
        if track.track_id is None or self._once.fired(track.track_id):
            return None
        pts = [p for p in track.history if p.ground is not None]
        if len(pts) < 2:
            return None
        motion = track.motion(self.motion_window_s)
        if motion is None or motion.speed_mps < cfg.min_speed_mps:
            return None
        off = angle_between(motion.heading_deg, cfg.lane_heading_deg)
        if off < 180.0 - cfg.tolerance_deg:
            return None
        # distance travelled against the lane: the furthest the track got back along the lane from
        # the most 'forward' point it had (robust to the noisy first points of a track)
        along = [p.ground[0] * self._lane[0] + p.ground[1] * self._lane[1] for p in pts]  # type: ignore[index]
        against = max(along[:-1]) - along[-1]
        if against < cfg.min_distance_m:
            return None
        self._once.mark(track.track_id)
        last = track.last
        confidence = min(1.0, 0.5 + 0.5 * (off - (180.0 - cfg.tolerance_deg)) / max(cfg.tolerance_deg, 1e-6))
        return Violation(
            type=self.type,
            track_id=track.track_id,
            t_s=last.t_s,
            mono=last.mono if last.mono is not None else last.t_s,
            utc=last.utc,
            confidence=round(confidence, 3),
            zone_distance_m=last.distance_m,
            speed_mps=motion.speed_mps,
            heading_deg=motion.heading_deg,
            detail={"against_m": round(against, 2), "off_lane_deg": round(off, 1), "lane_heading_deg": cfg.lane_heading_deg},
        )
