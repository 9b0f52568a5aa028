"""Red light: a track crosses the configured stop line (ground plane) while the signal is red."""

from __future__ import annotations

import math

import numpy as np

from anqi_contract.event import ViolationType
from edge.config.rules import RedLightRuleConfig
from edge.rules.signal import SignalInput, SignalState
from edge.rules.violation import OncePerTrack, Violation
from edge.track import Track
from edge.zone import angle_between, heading_of


class RedLightRule:
    type = ViolationType.red_light

    def __init__(self, cfg: RedLightRuleConfig, signal: SignalInput, motion_window_s: float = 1.0):
        if cfg.stop_line is None:
            raise ValueError("rules.red_light.stop_line is required")
        self.cfg = cfg
        self.signal = signal
        self.motion_window_s = motion_window_s
        self._once = OncePerTrack()
        a, b = np.array(cfg.stop_line[0], dtype=np.float64), np.array(cfg.stop_line[1], dtype=np.float64)
        self._a = a
        self._dir = (b - a) / max(float(np.linalg.norm(b - a)), 1e-9)
        self._len = float(np.linalg.norm(b - a))
        self._normal = np.array([-self._dir[1], self._dir[0]])

    def side(self, ground: tuple[float, float]) -> tuple[float, float]:
        """(signed distance from the line, position along it from its first point), metres."""
        g = np.asarray(ground, dtype=np.float64) - self._a
        return float(g @ self._normal), float(g @ self._dir)

    def forget(self, track_ids: set[int]) -> None:
        """Tracks that ended: their ids never come back."""
        self._once.forget(track_ids)

    def check(self, track: Track) -> Violation | None:
        cfg = self.cfg
        if track.track_id is None or self._once.fired(track.track_id):
            return None
        pts = [p for p in track.history if p.ground is not None]
        if len(pts) < 2:
            return None
        sd = [self.side(p.ground) for p in pts]  # type: ignore[arg-type]
        last_d, last_along = sd[-1]
        if abs(last_d) < cfg.min_cross_m or not (
            -cfg.min_cross_m <= last_along <= self._len + cfg.min_cross_m
        ):
            return None
        sign = math.copysign(1.0, last_d)
        # the track must have been clearly on the other side before
        before = [i for i, (d, _) in enumerate(sd[:-1]) if d * sign <= -cfg.min_cross_m]
        if not before:
            return None
        # crossing time: first observation after the last one on the far side
        k = before[-1] + 1
        crossed = pts[k]
        if cfg.direction_deg is not None:
            a, b = pts[before[-1]].ground, crossed.ground
            step = heading_of(b[0] - a[0], b[1] - a[1])  # type: ignore[index]
            if angle_between(step, cfg.direction_deg) > 90.0:
                return None  # crossing against the controlled direction (a wrong-way rider, or a track that jumped)
        state = self.signal.state_at(crossed.t_s)
        if state != SignalState.red:
            if state != SignalState.unknown:
                self._once.mark(track.track_id)  # crossed on green: never judged again for this track
            return None
        self._once.mark(track.track_id)
        motion = track.motion(self.motion_window_s)
        last = track.last
        return Violation(
            type=self.type,
            track_id=track.track_id,
            t_s=last.t_s,
            mono=last.mono if last.mono is not None else last.t_s,
            utc=last.utc,
            confidence=round(float(np.mean([p.score for p in pts[max(0, k - 2) : k + 2]])), 3),
            zone_distance_m=last.distance_m,
            speed_mps=motion.speed_mps if motion else None,
            heading_deg=motion.heading_deg if motion else None,
            detail={"crossed_s_ago": round(last.t_s - crossed.t_s, 3), "signal": state.value},
        )
