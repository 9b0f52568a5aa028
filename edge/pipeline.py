"""One sampled frame through zone -> detector -> tracker -> rules -> face policy, without threads.

:class:`FramePipeline` owns the per-frame state (first sighting of each track, the signal state last
reported, the frame sizes refused) and is driven by the daemon's pipeline thread; each violation it decides
goes out as a :class:`Decision` through ``on_violation`` (in frame order, before the frame's faces are offered,
as the evidence path expects) and is logged; the frame's outcome comes back as a :class:`FrameResult`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from anqi_contract.logs import log
from edge.config.detect import DetectConfig
from edge.config.rules import RulesConfig
from edge.health import Health
from edge.passes import PassCounter
from edge.rules import RuleSet, Violation, occupant_heads
from edge.track import RiderTracker, Track
from edge.zone import CalibrationMismatch, CaptureZone

if TYPE_CHECKING:
    from edge.evidence import FaceCapture, ViolationRecord

logger = logging.getLogger("edge.daemon")


@dataclass
class PipelineStats:
    frames: int = 0
    detect_frames: int = 0
    detect_dropped: int = 0  #: sampled frames dropped because detection lagged (cameras / paced files only)
    detect_errors: int = 0
    detect_s_total: float = 0.0
    tracks: int = 0
    face_crops: int = 0
    started_mono: float = field(default_factory=time.monotonic)
    ended_mono: float | None = None
    violations: list[ViolationRecord] = field(default_factory=list)
    prompt_latencies_s: list[float] = field(default_factory=list)
    prompt_waited: list[bool] = field(default_factory=list)  # per prompt: queued behind another one
    relay_published: int | None = None

    @property
    def detect_fps(self) -> float:
        return self.detect_frames / self.detect_s_total if self.detect_s_total > 0 else 0.0

    def health_info(self, pending_events: int) -> dict[str, Any]:
        """The run's counters as the health file's ``daemon`` component shows them."""
        return {
            "frames": self.frames,
            "detect_frames": self.detect_frames,
            "tracks": self.tracks,
            "violations": len(self.violations),
            "pending_events": pending_events,
            "detect_fps": round(self.detect_fps, 2),
        }

    def summary(self) -> dict[str, Any]:
        wall = (self.ended_mono or time.monotonic()) - self.started_mono
        committed = [v for v in self.violations if v.outbox_mono is not None]
        return {
            "frames": self.frames,
            "detect_frames": self.detect_frames,
            "detect_dropped": self.detect_dropped,
            "detect_errors": self.detect_errors,
            "detect_fps": round(self.detect_fps, 2),
            "wall_s": round(wall, 2),
            "input_fps": round(self.frames / wall, 2) if wall > 0 else 0.0,
            "tracks": self.tracks,
            "face_crops": self.face_crops,
            "violations": dict(Counter(v.type for v in self.violations)),
            "events_committed": len(committed),
            "prompt_latencies_s": [round(x, 4) for x in self.prompt_latencies_s],
            "prompt_waited_for_speaker": list(self.prompt_waited),
            "outbox_latencies_s": [
                round(v.outbox_latency_s, 3) for v in committed if v.outbox_latency_s is not None
            ],
            "relay_published": self.relay_published,
        }


class Detector(Protocol):
    def detect(self, image: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> Any: ...


@dataclass(frozen=True)
class Decision:
    """A violation as the pipeline decided it, with what its evidence needs of the frame that showed it."""

    violation: Violation
    image: np.ndarray  #: the deciding frame (BGR)
    track: Track | None  #: the violator's track as of that frame
    first_seen: datetime | None  #: when the track was first seen
    band_edges: tuple[np.ndarray, ...]  #: the capture band's edges in that frame (drawn into violation.jpg)
    decided_mono: float  #: when the rule decided (after detection and tracking)


#: called once per decided violation, in frame order, before the frame's faces are offered
ViolationSink = Callable[[Decision], None]


@dataclass
class FrameResult:
    """What one frame did. ``refused``: the frame does not fit the calibration (the message names both
    sizes); ``detected``: the detector ran on it; ``closed``: tracks that ended with this frame."""

    refused: str | None = None
    detected: bool = False
    violations: list[Violation] = field(default_factory=list)
    closed: list[Track] = field(default_factory=list)


class FramePipeline:
    def __init__(
        self,
        detect: DetectConfig,
        rules_config: RulesConfig,
        motion_window_s: float,
        zone: CaptureZone,
        tracker: RiderTracker,
        rules: RuleSet,
        faces: FaceCapture | None,
        health: Health,
        stats: PipelineStats,
        pending_tracks: Collection[int],
        on_violation: ViolationSink,
        passes: PassCounter,
    ) -> None:
        self.detect = detect  # the detect section: crop_to_zone, the model names for health
        self.rules_config = rules_config  # which rules are on (who needs a face search), the signal source
        self.motion_window_s = motion_window_s  # track.motion_window_s (driver / passenger heads)
        self.zone = zone
        self.tracker = tracker
        self.rules = rules
        self.faces = faces
        self.health = health
        self.stats = stats
        self.pending_tracks = pending_tracks  #: tracks with an event not yet stored (the evidence's own set)
        self.on_violation = on_violation
        #: riders through the zone per interval (the heartbeat's pass counters)
        self.passes = passes
        self.track_first: dict[int, datetime] = {}
        self.last_t_s = 0.0  #: source time of the last detected frame
        self._signal_state: str | None = None
        self._refused_sizes: set[tuple[int, int]] = set()  #: frame sizes already reported as not fitting

    def process(self, frame: Any, detector: Detector) -> FrameResult:
        img = frame.image
        h, w = img.shape[:2]
        try:
            zone = self.zone.for_frame(w, h)
        except CalibrationMismatch as e:
            self._refuse_size(w, h, str(e))
            return FrameResult(refused=str(e))
        roi = zone.image_region(w, h) if self.detect.crop_to_zone else None
        t0 = time.monotonic()
        try:
            dets = detector.detect(img, roi=roi)
        except Exception as e:  # corrupt frame, runtime error: skip this frame
            self.stats.detect_errors += 1
            self.health.set("detector", "degraded", f"frame {frame.index}: {type(e).__name__}: {e}"[:300])
            log(
                logger,
                "detect_failed",
                logging.WARNING,
                frame=frame.index,
                error=f"{type(e).__name__}: {e}"[:300],
            )
            return FrameResult()
        self.stats.detect_s_total += time.monotonic() - t0
        self.stats.detect_frames += 1
        if self.stats.detect_frames % 50 == 1:
            self.health.set(
                "detector",
                "up",
                f"{self.detect.rider_model} + {self.detect.head_model}",
                detect_fps=round(self.stats.detect_fps, 2),
                frames=self.stats.detect_frames,
                errors=self.stats.detect_errors,
            )
        self.last_t_s = frame.pts_s
        upd = self.tracker.update(dets, frame.pts_s, frame.utc, (w, h), frame.mono, image=img)
        for t in upd.active:
            if t.track_id is not None and t.track_id not in self.track_first:
                self.track_first[t.track_id] = t.first_utc
                self.stats.tracks += 1
            if t.track_id is not None and t.last.in_zone:
                self.passes.seen_in_zone(t.track_id, frame.utc)
        self._observe_signal(img, frame.pts_s)
        result = FrameResult(detected=True, closed=list(upd.closed))
        for v in self.rules.check(upd.active):
            result.violations.append(v)
            self.passes.violated(v.track_id, v.type.value)
            track = next((t for t in upd.active if t.track_id == v.track_id), None)
            self._decided(v, img, track, zone)
        if self.faces is not None:
            for t in upd.active:
                if self.wants_face(t):
                    away = _moving_away(t)
                    # a vehicle with more than one person: the driver's face and the passenger's apart
                    heads = occupant_heads(t, self.motion_window_s)
                    self.faces.offer(
                        t, img, frame.pts_s, frame.utc, away, head=heads.get("driver"), heads_seen=dets.heads
                    )
                    if "passenger" in heads:
                        self.faces.offer(
                            t,
                            img,
                            frame.pts_s,
                            frame.utc,
                            away,
                            head=heads["passenger"],
                            slot="passenger",
                            heads_seen=dets.heads,
                        )
            self.stats.face_crops = self.faces.crops_run
        if upd.closed:
            self.rules.forget({t.track_id for t in upd.closed if t.track_id is not None})
        return result

    def _refuse_size(self, w: int, h: int, why: str) -> None:
        """Frames that do not fit the survey are never judged (a stretched zone would accuse the wrong people):
        the zone is down in health and the log says so once per size; the caller decides whether the run
        goes on (recording does)."""
        if (w, h) in self._refused_sizes:
            return
        self._refused_sizes.add((w, h))
        log(logger, "frame_size_refused", logging.ERROR, size=f"{w}x{h}", error=why)
        self.health.set("zone", "down", why[:300])

    def _decided(self, v: Violation, img: np.ndarray, track: Track | None, zone: CaptureZone) -> None:
        decided = time.monotonic()
        h, w = img.shape[:2]
        first_seen = self.track_first.get(v.track_id)
        self.on_violation(Decision(v, img, track, first_seen, zone.band_edges(w, h), decided))
        log(
            logger,
            "violation",
            logging.INFO,
            type=v.type.value,
            track=v.track_id,
            conf=round(v.confidence, 3),
            dist_m=v.zone_distance_m,
            speed_mps=None if v.speed_mps is None else round(v.speed_mps, 2),
            t=round(v.t_s, 3),
            **{f"d_{k}": v.detail[k] for k in list(v.detail)[:4]},
        )

    def _observe_signal(self, img: np.ndarray, t_s: float) -> None:
        self.rules.observe_signal(img, t_s)
        if self.rules.signal is not None:
            state = self.rules.signal.state_at(t_s).value
            if state != self._signal_state:
                self._signal_state = state
                sig = self.rules_config.red_light.signal
                self.health.set(
                    "signal",
                    "degraded" if state == "unknown" else "up",
                    f"signal {state}",
                    source=None if sig is None else sig.source,
                )

    def wants_face(self, t: Track) -> bool:
        """Face search costs a detector run per crop: only for violators, and for in-zone riders that
        may still become one (a rider whose every head vote says 'helmet' cannot, unless another
        rule than no-helmet is on)."""
        if t.track_id is None:
            return False
        if t.track_id in self.pending_tracks:
            return True
        if not t.last.in_zone:
            return False
        r = self.rules_config
        if r.wrong_way.enabled or r.red_light.enabled:
            return True
        if len(t.last.occupants) >= 2 and (
            r.passenger.enabled or (r.no_helmet.enabled and r.passenger.passenger_helmet)
        ):
            return (
                True  # may become a passenger event, or a passenger's no-helmet: faces of everyone on board
            )
        if not r.no_helmet.enabled:
            return False
        votes = [p.no_helmet for p in t.head_votes(in_zone_only=False) if p.no_helmet is not None]
        return not votes or max(votes) >= r.no_helmet.vote_threshold

    def forget(self, track_id: int) -> None:
        """Drop the per-track state (a daemon runs for months: nothing may grow with the track count)."""
        self.track_first.pop(track_id, None)
        self.passes.forget(track_id)
        if self.faces is not None:
            self.faces.forget([track_id])


def _moving_away(t: Track) -> bool | None:
    """True when the track's ground distance to the camera grows (rider seen from behind)."""
    pts = [p for p in t.history if p.distance_m is not None]
    if len(pts) < 3:
        return None
    d = pts[-1].distance_m - pts[max(0, len(pts) - 6)].distance_m  # type: ignore[operator]
    if abs(d) < 0.3:
        return None
    return d > 0
