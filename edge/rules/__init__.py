"""Violation rules, one module each; :class:`RuleSet` runs the enabled ones over updated tracks."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from anqi_contract.event import ViolationType
from anqi_contract.logs import log
from edge.config import EdgeConfig
from edge.config.rules import RulesConfig
from edge.rules.no_helmet import NoHelmetRule
from edge.rules.passenger import (
    DRIVER,
    PASSENGER,
    PassengerHelmetRule,
    PassengerRule,
    SameOccupantGuard,
    SameVehicleGuard,
    occupant_boxes_text,
    occupant_heads,
)
from edge.rules.red_light import RedLightRule
from edge.rules.signal import (
    GpioSignal,
    ImageSignal,
    SerialSignal,
    SignalInput,
    SignalState,
    signal_from_config,
)
from edge.rules.violation import Rule, Violation
from edge.rules.wrong_way import WrongWayRule
from edge.track import Track, TrackPoint, iou_matrix, look_alike

logger = logging.getLogger("edge.rules")

__all__ = [
    "check_config",
    "GpioSignal",
    "ImageSignal",
    "NoHelmetRule",
    "PassengerHelmetRule",
    "PassengerRule",
    "RedLightRule",
    "Rule",
    "RuleSet",
    "RuleSetError",
    "SameOccupantGuard",
    "SameVehicleGuard",
    "SerialSignal",
    "SignalInput",
    "SignalState",
    "Violation",
    "WrongWayRule",
    "occupant_heads",
    "signal_from_config",
]


def _guard_key(v: Violation) -> str:
    """What the guard compares: the type, and whose head (a driver's and a passenger's no-helmet are two events)."""
    role = v.detail.get("role")
    return v.type.value if role in (None, "driver") else f"{v.type.value}:{role}"


def _log_suppressed(event: str, v: Violation, reported_as_track: int) -> None:
    """One log line for a violation not reported again because ``reported_as_track`` already reported it."""
    log(
        logger,
        event,
        type=v.type.value,
        track=v.track_id,
        reported_as_track=reported_as_track,
        t=round(v.t_s, 2),
    )


class SameRiderGuard:
    """Track fragmentation must not make two events of one rider: a track that starts shortly after a
    reported track was last seen, at the ground point that rider would have reached by then (its last
    ground point moved on at its last speed and heading), is taken to be the same rider, and its
    violation of the same type is dropped. Riders side by side are kept apart: the reported track must
    have been lost before the new one began. Riders in single file pass the same ground points one
    after another: when both tracks have a clothes histogram, they must also look alike (``min_alike``)."""

    def __init__(self, gap_s: float, radius_m: float, motion_window_s: float, min_alike: float = 0.0):
        self.min_alike = min_alike
        self.gap_s = gap_s
        self.radius_m = radius_m
        self.motion_window_s = motion_window_s
        self._reported: list[tuple[str, Track, float]] = []  #: (guard key, track, t_s of the report)

    def _predicted(self, old: Track, at_s: float) -> tuple[float, float] | None:
        pts = [p for p in old.history if p.ground is not None]
        if not pts:
            return None
        last = pts[-1]
        x, y = last.ground  # type: ignore[misc]
        m = old.motion(self.motion_window_s)
        if m is not None:
            dt = max(0.0, at_s - last.t_s)
            a = np.radians(m.heading_deg)  # 0 = +y, 90 = +x
            x, y = x + m.speed_mps * dt * float(np.sin(a)), y + m.speed_mps * dt * float(np.cos(a))
        return x, y

    def _same_in_image(self, old: Track, track: Track) -> bool:
        """Without ground points (uncalibrated zone): the new track's first head lies where the old
        head would be by then (its last position moved on at its image velocity), within two head
        sizes, widened by one per second of gap."""
        first = next((p for p in track.history if p.head_box is not None), None)
        last = next((p for p in reversed(old.history) if p.head_box is not None), None)
        if first is None or last is None or first.head_box is None or last.head_box is None:
            return False
        a, b = last.head_box, first.head_box
        gap = max(0.0, first.t_s - last.t_s)
        px = (a[0] + a[2]) / 2 + float(old.head_velocity[0]) * gap
        py = (a[1] + a[3]) / 2 + float(old.head_velocity[1]) * gap
        fx, fy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        size = max(a[3] - a[1], b[3] - b[1], 1.0)
        return float(np.hypot(fx - px, fy - py)) <= size * (2.0 + gap)

    def same_rider(self, v: Violation, track: Track) -> int | None:
        """The track id of an earlier report of ``v``'s type that ``track`` continues, or None."""
        if self.gap_s <= 0:
            return None
        first = next((p for p in track.history if p.ground is not None), None)
        if first is None:
            if any(p.ground is not None for p in track.history) or not track.history:
                return None
            return self._same_rider_in_image(v, track)
        for vtype, old, _ in self._reported:
            if vtype != _guard_key(v) or old.track_id == track.track_id:
                continue
            old_last = old.history[-1].t_s
            if not (old_last <= first.t_s + 0.05 and first.t_s - old_last <= self.gap_s):
                continue
            alike = look_alike(old.look, track.look)
            if self.min_alike > 0 and alike is not None and alike < self.min_alike:
                continue  # other clothes: riders in single file pass the same ground points one after another
            where = self._predicted(old, first.t_s)
            ground = first.ground
            if (
                where is not None
                and ground is not None
                and float(np.hypot(ground[0] - where[0], ground[1] - where[1])) <= self.radius_m
            ):
                return old.track_id
        return None

    def _same_rider_in_image(self, v: Violation, track: Track) -> int | None:
        t0 = track.history[0].t_s
        for vtype, old, _ in self._reported:
            if vtype != v.type.value or old.track_id == track.track_id:
                continue
            old_last = old.history[-1].t_s
            if not (old_last <= t0 + 0.05 and t0 - old_last <= self.gap_s):
                continue
            alike = look_alike(old.look, track.look)
            if self.min_alike > 0 and alike is not None and alike < self.min_alike:
                continue
            if self._same_in_image(old, track):
                return old.track_id
        return None

    def shares_head(
        self, v: Violation, track: Track, window_s: float = 1.0, within_s: float = 0.3
    ) -> int | None:
        """The track id of an earlier report of ``v``'s type whose rider's head ``track`` has taken: in the last
        ``window_s`` of ``track``, one of its head boxes and one of the reported rider's, seen at most
        ``within_s`` apart, are the same head (:func:`_same_head`). A lost track that comes back onto a rider
        who has a reported track of their own (the demo clip played backwards: a track that had followed
        another rider took teal-jacket's head while teal-jacket's own track was lost for a few frames, and
        reported no_helmet and wrong_way a second time). :meth:`same_rider` cannot tell: that track began
        long before. The reported rider's heads are the reported track's while it followed them without a
        break (:func:`_followed_span` around the report): a track lost and matched again may have come back
        on someone else. Two riders' heads are never in one place within a third of a second (a
        two-wheeler is longer than a rider travels in that time), and a pillion's head is beside the
        driver's, not on it; the clothes are not compared, because a track that jumped from another rider
        carries that rider's colours."""
        if self.gap_s <= 0:
            return None
        mine = [p for p in track.history if p.head_box is not None and p.t_s >= track.last.t_s - window_s]
        if not mine:
            return None
        key = _guard_key(v)
        for vtype, old, at in self._reported:
            if vtype != key or old.track_id == track.track_id:
                continue
            theirs = _followed_span(old, at, within_s)
            for p in mine:
                for q in theirs:
                    if abs(p.t_s - q.t_s) <= within_s and _same_head(p.head_box, q.head_box):  # type: ignore[arg-type]
                        return old.track_id
        return None

    def reported(self, v: Violation, track: Track) -> None:
        self._reported.append((_guard_key(v), track, v.t_s))
        horizon = track.history[-1].t_s - max(30.0, 3 * self.gap_s)
        self._reported = [r for r in self._reported if r[1].history[-1].t_s >= horizon]


def _followed_span(track: Track, at_s: float, max_gap_s: float) -> list[TrackPoint]:
    """The track's head observations around ``at_s`` without a break longer than ``max_gap_s``: the stretch
    in which it followed the rider it had at ``at_s``."""
    pts = [p for p in track.history if p.head_box is not None]
    if not pts:
        return []
    i = min(range(len(pts)), key=lambda k: abs(pts[k].t_s - at_s))
    a = b = i
    while a > 0 and pts[a].t_s - pts[a - 1].t_s <= max_gap_s:
        a -= 1
    while b + 1 < len(pts) and pts[b + 1].t_s - pts[b].t_s <= max_gap_s:
        b += 1
    return pts[a : b + 1]


def _same_head(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Two head boxes of one head: overlapping by IoU 0.3 or more, or the smaller's centre inside the larger
    and their heights within 2x (a tight box and a loose one around the same head)."""
    if iou_matrix(np.asarray(a), np.asarray(b))[0, 0] >= 0.3:
        return True
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    small, large = (a, b) if area_a <= area_b else (b, a)
    hs, hl = small[3] - small[1], large[3] - large[1]
    cx, cy = (small[0] + small[2]) / 2, (small[1] + small[3]) / 2
    return hs > 0 and hl / hs <= 2.0 and large[0] <= cx <= large[2] and large[1] <= cy <= large[3]


def _box_text(box: tuple[float, float, float, float] | None) -> str | None:
    return None if box is None else ",".join(f"{v:.1f}" for v in box)


def _with_boxes(v: Violation, track: Track, calibrated: bool = True) -> Violation:
    """The violation with the judged boxes of its deciding observation in ``detail`` (``rider_box``,
    ``head_box``: "x0,y0,x1,y1" in the frame's pixels): which rider and which head the decision was
    about, for a reviewer and for matching events to ground truth (the schema's detail takes scalars)."""
    last = track.last
    boxes = {"rider_box": _box_text(last.box), "head_box": _box_text(last.head_box)}
    # a rule that judged another head than the track's own (a passenger's) has named it already
    detail: dict[str, float | int | str | bool] = {
        **{k: b for k, b in boxes.items() if b is not None},
        **v.detail,
    }
    if not calibrated:
        detail["zone_calibrated"] = False  # the whole frame was the zone: nothing was measured in metres
    return replace(v, detail=detail)


class RuleSetError(Exception):
    """A rule that cannot start; ``key`` is the config key at fault (``rules.red_light.signal.serial_port``...)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


#: the key that names the signal input's device, per ``rules.red_light.signal.source``
_SIGNAL_KEY = {
    "gpio": "rules.red_light.signal.gpio_pin",
    "serial": "rules.red_light.signal.serial_port",
    "image": "rules.red_light.signal.region",
}


class RuleSet:
    """The enabled rules of a site, the signal input the red-light rule reads, and the guard that keeps
    one rider from being reported twice when the tracker splits their track."""

    def __init__(
        self,
        rules: list[Rule],
        signal: SignalInput | None = None,
        guard: SameRiderGuard | None = None,
        zone_calibrated: bool = True,
        vehicles: SameVehicleGuard | None = None,
        motion_window_s: float = 1.0,
    ):
        self.motion_window_s = motion_window_s
        self.zone_calibrated = zone_calibrated
        self.rules = rules
        self.signal = signal
        self.guard = guard
        self.occupants = SameOccupantGuard()
        self.vehicles = vehicles if vehicles is not None else SameVehicleGuard()

    @classmethod
    def from_config(
        cls, cfg: RulesConfig, motion_window_s: float, pin_factory: Any = None, zone_calibrated: bool = True
    ) -> RuleSet:
        """The enabled rules of the ``rules`` section; ``motion_window_s`` is ``track.motion_window_s`` (the
        window speed and heading are fitted over); ``zone_calibrated`` is ``zone.calibrated`` (events of an
        uncalibrated zone say so). A signal input that cannot be opened raises
        :class:`RuleSetError` naming the key of the pin, port or region that failed."""
        window = motion_window_s
        rules: list[Rule] = []
        signal: SignalInput | None = None
        if cfg.no_helmet.enabled:
            rules.append(NoHelmetRule(cfg.no_helmet, window))
        if cfg.no_helmet.enabled and cfg.passenger.passenger_helmet:
            rules.append(PassengerHelmetRule(cfg.no_helmet, window))
        if cfg.passenger.enabled:
            rules.append(PassengerRule(cfg.passenger, window))
        if cfg.wrong_way.enabled:
            rules.append(WrongWayRule(cfg.wrong_way, window))
        if cfg.red_light.enabled:
            sig = cfg.red_light.signal
            assert sig is not None  # the config validator guarantees it
            try:
                signal = signal_from_config(sig, pin_factory)
            except Exception as e:  # noqa: BLE001 - a pin or port that cannot be opened: named by its key
                raise RuleSetError(_SIGNAL_KEY[sig.source], f"{type(e).__name__}: {e}") from None
            rules.append(RedLightRule(cfg.red_light, signal, window))
        return cls(
            rules,
            signal,
            SameRiderGuard(cfg.same_rider_gap_s, cfg.same_rider_m, window, cfg.same_rider_alike),
            zone_calibrated,
            SameVehicleGuard(cfg.same_rider_gap_s, cfg.same_rider_alike),
            window,
        )

    def observe_signal(self, image: np.ndarray | None, t_s: float) -> None:
        if self.signal is not None:
            self.signal.observe(image, t_s)

    def check(self, tracks: list[Track]) -> list[Violation]:
        """Violations decided on this update (each rule reports a track at most once)."""
        out: list[Violation] = []
        self.occupants.follow(tracks)
        decided: list[tuple[Track, list[Violation]]] = []
        for t in tracks:
            vs = [v for v in (rule.check(t) for rule in self.rules) if v is not None]
            if vs:
                decided.append((t, vs))
        # two tracks on one rider deciding in the same frame (a tight box on the head and a loose one that
        # drifted off it): the guards below keep the first, so the track holding the surer head goes first
        decided.sort(key=lambda tv: -(tv[0].last.head_score or 0.0))
        for t, vs in decided:
            for v in vs:
                if self.guard is not None:
                    earlier = self.guard.same_rider(v, t)
                    if earlier is not None:
                        _log_suppressed("violation_same_rider", v, earlier)
                        continue
                    earlier = self.guard.shares_head(v, t)
                    if earlier is not None:
                        _log_suppressed("violation_same_head", v, earlier)
                        continue
                if v.type == ViolationType.passenger:
                    vehicle = self.vehicles.same_vehicle(t)
                    if vehicle is not None:  # one passenger event per physical vehicle
                        _log_suppressed("violation_same_vehicle", v, vehicle)
                        continue
                v = _with_boxes(v, t, self.zone_calibrated)
                if v.type == ViolationType.no_helmet and v.detail.get("role") == DRIVER:
                    seen = self.occupants.seen_as_passenger(v, t, self.motion_window_s)
                    if seen is not None:  # the pillion's own box: she is the passenger of that vehicle
                        v = replace(
                            v,
                            detail={
                                **v.detail,
                                "role": PASSENGER,
                                "judged_own_head": True,  # her face is the track's own (edge.evidence.collector)
                                "occupant_boxes": occupant_boxes_text(seen[1]),
                                "vehicle_track": seen[0],
                            },
                        )
                other = self.occupants.same_person(v, t)
                if other is not None:  # two tracks on one vehicle: this person is reported already
                    log(
                        logger,
                        "violation_same_occupant",
                        type=v.type.value,
                        track=v.track_id,
                        reported_as_track=other,
                        t=round(v.t_s, 2),
                    )
                    continue
                self.occupants.reported(v, t)
                if v.type == ViolationType.passenger:
                    self.vehicles.reported(t)
                if self.guard is not None:
                    self.guard.reported(v, t)
                out.append(v)
        return out

    def forget(self, track_ids: set[int]) -> None:
        """Tracks that ended: every rule drops its per-track state (ids never come back)."""
        for rule in self.rules:
            rule.forget(track_ids)

    def close(self) -> None:
        if self.signal is not None:
            self.signal.close()


def check_config(cfg: EdgeConfig) -> list[str]:
    """Problems with the devices ``rules`` names (for ``anqi-edge validate``): the signal input's pin
    or serial port, and a stop line of zero length; each ``key.path: message``."""
    rl = cfg.rules.red_light
    if not rl.enabled or rl.signal is None:
        return []
    problems: list[str] = []
    if rl.stop_line is not None and rl.stop_line[0] == rl.stop_line[1]:
        problems.append("rules.red_light.stop_line: the two points are the same")
    sig = rl.signal
    if sig.source == "gpio" and sig.gpio_pin is not None:
        import re

        if not re.fullmatch(
            r"(GPIO|BCM)?\d{1,2}|BOARD\d{1,2}|J8:\d{1,2}|WPI\d{1,2}", sig.gpio_pin.strip(), re.IGNORECASE
        ):
            problems.append(
                f"rules.red_light.signal.gpio_pin: {sig.gpio_pin!r} is not a gpiozero pin name (e.g. 'GPIO17', 'BOARD11')"
            )
    elif sig.source == "serial" and sig.serial_port is not None:
        import os

        port = sig.serial_port
        if "://" not in port and not os.path.exists(port):
            problems.append(f"rules.red_light.signal.serial_port: {port} does not exist")
    elif sig.source == "image" and sig.region is not None:
        x, y, w, h = sig.region
        if w <= 0 or h <= 0 or x < 0 or y < 0:
            problems.append(
                f"rules.red_light.signal.region: {list(sig.region)} must have x, y >= 0 and a positive width and height"
            )
    return problems
