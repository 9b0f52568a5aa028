"""No helmet: a rider (moving, or detected as a person on a two-wheeler) whose in-zone head
classifications say 'no helmet' in a majority, with enough confidence."""

from __future__ import annotations

import numpy as np

from anqi_contract.event import ViolationType
from edge.config.rules import NoHelmetRuleConfig
from edge.rules.passenger import DRIVER, box_text, driver_vote, occupant_boxes_text, travel_direction
from edge.rules.violation import OncePerTrack, Violation
from edge.track import Track


class NoHelmetRule:
    type = ViolationType.no_helmet

    def __init__(self, cfg: NoHelmetRuleConfig, motion_window_s: float = 1.0):
        self.cfg = cfg
        self.motion_window_s = motion_window_s
        self._once = OncePerTrack()

    def forget(self, track_ids: set[int]) -> None:
        """Tracks that ended: their ids never come back."""
        self._once.forget(track_ids)

    def check(self, track: Track) -> Violation | None:
        cfg = self.cfg
        if track.track_id is None or self._once.fired(track.track_id) or not track.last.in_zone:
            return None
        # the driver's head: on frames that show a passenger too, the front one (edge.rules.passenger)
        direction = travel_direction(track, track.last.t_s, self.motion_window_s)  # once per check
        judged = [(v, *driver_vote(v, direction)) for v in track.points() if v.in_zone]
        votes = [v for v, nh, _ in judged if nh is not None]
        if (
            len(votes) < cfg.min_observations or votes[-1].t_s - votes[0].t_s < cfg.min_observed_s - 1e-6
        ):  # (frame times are floats)
            return None
        p = np.array([nh for _, nh, _ in judged if nh is not None], dtype=np.float64)
        no = p >= cfg.vote_threshold
        fraction = float(no.mean())
        if fraction < cfg.min_fraction:
            return None
        confidence = float(p[no].mean())
        if confidence < cfg.min_confidence:
            return None
        motion = track.motion(self.motion_window_s)
        if motion is not None and motion.speed_mps > cfg.max_speed_mps:
            # too fast over the window: a track that jumped between riders, or distances ranged coarsely
            # beyond the band (a far head is a few pixels); inside the band a jump shows as well
            motion = track.motion(self.motion_window_s, in_zone_only=True) or motion
        speed = motion.speed_mps if motion else None
        on_bike = cfg.rider_box_is_bike and track.rider_hits > 0
        if not on_bike and cfg.min_speed_mps > 0 and (speed is None or speed < cfg.min_speed_mps):
            return None  # a pedestrian, or not enough ground history to tell
        image_motion = None
        if speed is None and not on_bike and cfg.min_image_motion > 0:
            # no ground at all (uncalibrated zone): the head must at least move in the image (not for
            # every head-only rider: one riding straight at the camera only grows, by speed/distance,
            # about 0.25 head sizes per second at 5 m/s and 20 m, no more than a still box's noise)
            image_motion = track.image_motion(track.last.t_s, self.motion_window_s)
            if image_motion is None or image_motion < cfg.min_image_motion:
                return None
        if speed is not None and speed > cfg.max_speed_mps:
            return None  # 54 km/h on a bicycle lane: the track jumped (judged again when it settles)
        self._once.mark(track.track_id)
        last = track.last
        head = next((h for v, nh, h in judged if v is last and nh is not None), None)
        extra: dict[str, float | int | str | bool] = {"role": DRIVER}
        if len(last.occupants) >= 2 and head is not None:
            extra["head_box"] = box_text(head) or ""
            extra["occupant_boxes"] = occupant_boxes_text(last)
        return Violation(
            type=self.type,
            track_id=track.track_id,
            t_s=last.t_s,
            mono=last.mono if last.mono is not None else last.t_s,
            utc=last.utc,
            confidence=confidence,
            zone_distance_m=last.distance_m,
            speed_mps=speed,
            heading_deg=motion.heading_deg if motion else None,
            detail={
                "observations": len(votes),
                "observed_s": round(votes[-1].t_s - votes[0].t_s, 2),
                "no_helmet_votes": int(no.sum()),
                "no_helmet_fraction": round(fraction, 3),
                "mean_no_helmet_p": round(float(p.mean()), 3),
                "track_kind": track.kind,
                "moving": bool(speed is not None and speed >= cfg.min_speed_mps),
                **extra,
                **({} if image_motion is None else {"image_motion": round(image_motion, 2)}),
            },
        )
