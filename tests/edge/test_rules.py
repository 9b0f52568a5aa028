"""The three rules on crafted tracks, and the signal inputs on real gpiozero mock pins / pyserial loop://."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from anqi_contract.event import ViolationType
from edge.config import EdgeConfig, parse_config
from edge.config.rules import NoHelmetRuleConfig, RedLightRuleConfig, SignalConfig, WrongWayRuleConfig
from edge.rules import (
    GpioSignal,
    ImageSignal,
    NoHelmetRule,
    RedLightRule,
    RuleSet,
    RuleSetError,
    SerialSignal,
    SignalState,
    Violation,
    WrongWayRule,
)
from edge.track import Track, TrackKind, TrackPoint


def _ruleset(site: EdgeConfig) -> RuleSet:
    """The rule set of a site's ``rules`` section with its ``track.motion_window_s``."""
    return RuleSet.from_config(site.rules, site.track.motion_window_s)


T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)


def make_track(
    ground: list[tuple[float, float]],
    no_helmet: Sequence[float | None] | None = None,
    kind: TrackKind = "rider",
    dt: float = 0.125,
    zone: tuple[float, float] = (15, 25),
) -> Track:
    """A confirmed track whose points lie at ``ground`` (metres, camera at the origin), one per ``dt``."""
    pts = []
    for i, g in enumerate(ground):
        d = float(np.hypot(*g))
        p = no_helmet[i] if no_helmet else None
        pts.append(
            TrackPoint(
                i * dt,
                T0 + timedelta(seconds=i * dt),
                (0, 0, 10, 10),
                0.9,
                kind,
                g,
                d,
                zone[0] <= d <= zone[1],
                (0, 0, 5, 5) if p is not None else None,
                0.8 if p is not None else None,
                p,
            )
        )
    t = Track(
        key=1,
        box=np.zeros(4),
        first_t_s=0.0,
        first_utc=T0,
        last_t_s=pts[0].t_s,
        history=deque(pts[:1]),
        track_id=7,
    )
    t.rider_hits = int(kind == "rider")
    return t


def replay(rule: object, track: Track, points: list[TrackPoint]) -> list:
    """Feed the track's points one at a time, as the tracker would, collecting violations."""
    out = []
    for p in points[1:]:
        track.history.append(p)
        track.last_t_s = p.t_s
        v = rule.check(track)  # type: ignore[attr-defined]
        if v is not None:
            out.append(v)
    return out


def approach(
    n: int = 24, start: float = 30.0, speed: float = 5.0, dt: float = 0.125
) -> list[tuple[float, float]]:
    """A rider riding towards the camera along +y -> -y."""
    return [(0.5, start - speed * dt * i) for i in range(n)]


def _points(
    ground: list[tuple[float, float]],
    votes: Sequence[float | None] | None,
    kind: TrackKind,
    dt: float = 0.125,
) -> list[TrackPoint]:
    out = []
    for i, g in enumerate(ground):
        d = float(np.hypot(*g))
        p = votes[i] if votes else None
        out.append(
            TrackPoint(
                i * dt,
                T0 + timedelta(seconds=i * dt),
                (0, 0, 10, 10),
                0.9,
                kind,
                g,
                d,
                15 <= d <= 25,
                (0, 0, 5, 5) if p is not None else None,
                0.8 if p is not None else None,
                p,
            )
        )
    return out


def run_rule(
    rule: object,
    ground: list[tuple[float, float]],
    votes: Sequence[float | None] | None = None,
    kind: TrackKind = "rider",
) -> list:
    """Grow a track point by point, as the tracker does, asking the rule after each point."""
    track = make_track(ground[:1], votes[:1] if votes else None, kind)
    return replay(rule, track, _points(ground, votes, kind))


# ---- no helmet -------------------------------------------------------------------------------


def test_no_helmet_fires_once_in_zone_for_a_moving_rider() -> None:
    ground = approach()
    votes = [0.9] * len(ground)
    vs = run_rule(NoHelmetRule(NoHelmetRuleConfig(min_observations=3, min_observed_s=0.0)), ground, votes)
    assert len(vs) == 1
    v = vs[0]
    assert v.type == ViolationType.no_helmet and v.track_id == 7
    assert 15 <= v.zone_distance_m <= 25
    # decided on the third in-zone observation
    in_zone = [i for i, g in enumerate(ground) if 15 <= np.hypot(*g) <= 25]
    assert v.t_s == pytest.approx(in_zone[2] * 0.125)
    assert v.speed_mps == pytest.approx(5.0, rel=1e-6) and abs(v.heading_deg - 180) < 10
    assert v.confidence == pytest.approx(0.9)


def test_no_helmet_needs_the_votes_to_span_min_observed_s_at_any_detection_rate() -> None:
    """3 observations 0.125 s apart span 0.25 s: not enough for 0.3 s; the 4th (0.375 s) decides."""
    ground = approach()
    vs = run_rule(
        NoHelmetRule(NoHelmetRuleConfig(min_observations=3, min_observed_s=0.3)), ground, [0.9] * len(ground)
    )
    in_zone = [i for i, g in enumerate(ground) if 15 <= np.hypot(*g) <= 25]
    assert [v.t_s for v in vs] == [pytest.approx(in_zone[3] * 0.125)]
    assert vs[0].detail["observed_s"] == pytest.approx(0.375, abs=0.01)


@pytest.mark.parametrize(
    "votes, kind, speed, fires, why",
    [
        ([0.1] * 24, "rider", 5.0, False, "helmet worn"),
        ([0.9, 0.1] * 12, "rider", 5.0, False, "half the votes: no majority of 0.6"),
        (
            [0.9 if i < 8 else 0.1 for i in range(24)],
            "rider",
            5.0,
            False,
            "no-helmet votes only outside the zone",
        ),
        ([None] * 24, "rider", 5.0, False, "no head ever classified"),
        ([0.9] * 24, "head", 0.3, False, "slow head-only track: a pedestrian"),
        ([0.9] * 24, "head", 5.0, True, "head-only track moving at riding speed"),
        ([0.9] * 24, "rider", 0.3, True, "slow, but the detector saw a person on a two-wheeler"),
        ([0.55] * 24, "rider", 5.0, True, "just above both thresholds"),
        ([0.9] * 24, "rider", 20.0, False, "20 m/s on a bicycle lane: a track jumping, not a rider"),
        ([0.9] * 24, "rider", 12.0, True, "fast, but a rider (under max_speed_mps)"),
    ],
)
def test_no_helmet_decision_table(votes: list, kind: TrackKind, speed: float, fires: bool, why: str) -> None:
    n = 24
    start = 25.5 if speed < 1 else 30.0
    ground = approach(n, start=start, speed=speed)
    if speed < 1:  # a slow track inside the zone all along
        ground = [(0.5, 22 - speed * 0.125 * i) for i in range(n)]
    vs = run_rule(
        NoHelmetRule(NoHelmetRuleConfig(min_observations=3, min_speed_mps=0.8)), ground, votes, kind
    )
    assert (len(vs) == 1) is fires, why


def test_no_helmet_with_rider_box_not_counted_as_bike_needs_speed() -> None:
    ground = [(0.5, 22 - 0.05 * i) for i in range(24)]  # 0.4 m/s
    rule = NoHelmetRule(NoHelmetRuleConfig(rider_box_is_bike=False, min_speed_mps=0.8))
    assert run_rule(rule, ground, [0.9] * 24, "rider") == []


# ---- wrong way -------------------------------------------------------------------------------


def test_wrong_way_fires_after_min_distance_against_the_lane() -> None:
    # legal direction: towards the camera (180 deg); this rider rides away (+y) at 4 m/s
    ground = [(0.0, 12 + 4 * 0.125 * i) for i in range(20)]
    vs = run_rule(
        WrongWayRule(WrongWayRuleConfig(enabled=True, lane_heading_deg=180, min_distance_m=3)), ground
    )
    assert len(vs) == 1
    v = vs[0]
    assert v.type == ViolationType.wrong_way
    assert v.detail["against_m"] >= 3 and v.detail["against_m"] < 3 + 0.5 + 1e-6
    assert v.heading_deg == pytest.approx(0, abs=1e-6)
    assert 15 <= v.zone_distance_m <= 25  # judged inside the band, from points inside the band


def test_wrong_way_is_judged_only_after_a_long_enough_stretch_inside_the_band() -> None:
    # riding away from 14 m: the band starts at 15 m; with 0.6 s needed in the band the decision comes
    # at least 0.6 s after entering it, never from the points before
    ground = [(0.0, 14 + 4 * 0.125 * i) for i in range(24)]
    rule = WrongWayRule(
        WrongWayRuleConfig(enabled=True, lane_heading_deg=180, min_distance_m=1, min_samples=3)
    )
    (v,) = run_rule(rule, ground)
    assert v.zone_distance_m >= 15 + 4 * 0.6 - 1e-6


@pytest.mark.parametrize(
    "ground, why",
    [
        ([(0.0, 30 - 4 * 0.125 * i) for i in range(20)], "legal direction"),
        ([(-5 + 4 * 0.125 * i, 20) for i in range(20)], "crossing the lane sideways (90 deg off)"),
        ([(0.0, 12 + 4 * 0.125 * i) for i in range(5)], "not far enough yet (2 m)"),
        ([(0.0, 12 + 0.3 * 0.125 * i) for i in range(200)], "slower than min_speed"),
        ([(0.0, 26 + 4 * 0.125 * i) for i in range(30)], "beyond the band (26-40 m): ranged too coarsely"),
        (
            [(0.0, 16 + 4 * 0.125 * i * (1 if i % 2 else -0.6)) for i in range(16)],
            "back and forth inside the band: ranging noise, not travel",
        ),
    ],
)
def test_wrong_way_does_not_fire(ground: list, why: str) -> None:
    rule = WrongWayRule(
        WrongWayRuleConfig(enabled=True, lane_heading_deg=180, min_distance_m=3, min_speed_mps=0.8)
    )
    assert run_rule(rule, ground) == [], why


# ---- red light -------------------------------------------------------------------------------


class ScriptedSignal:
    """A SignalInput whose state is a function of time (the real inputs are tested below)."""

    def __init__(self, red_between: tuple[float, float] | None):
        self.red_between = red_between

    def observe(self, image: np.ndarray | None, mono: float) -> None:
        pass

    def state_at(self, mono: float) -> SignalState:
        if self.red_between is None:
            return SignalState.green
        a, b = self.red_between
        return SignalState.red if a <= mono < b else SignalState.green

    def close(self) -> None:
        pass


STOP = RedLightRuleConfig(
    enabled=True,
    stop_line=((-3.0, 16.0), (3.0, 16.0)),
    signal=SignalConfig(source="image", region=(0, 0, 4, 4)),
)


@pytest.mark.parametrize(
    "red_between, ground, fires, why",
    [
        ((0.0, 100.0), approach(), True, "crossed on red"),
        (None, approach(), False, "crossed on green"),
        ((0.0, 1.0), approach(), False, "red ended before the crossing (at 1.75 s)"),
        ((0.0, 100.0), [(0.5, 20 - 5 * 0.125 * i) for i in range(4)], False, "stopped before the line"),
        (
            (0.0, 100.0),
            [(8.0, 30 - 5 * 0.125 * i) for i in range(24)],
            False,
            "passed beside the stop line's extent",
        ),
    ],
)
def test_red_light_rule(red_between: tuple[float, float] | None, ground: list, fires: bool, why: str) -> None:
    rule = RedLightRule(STOP, ScriptedSignal(red_between))
    vs = run_rule(rule, ground)
    assert (len(vs) == 1) is fires, why
    if fires:
        assert vs[0].type == ViolationType.red_light


def test_image_signal_sees_a_red_lamp() -> None:
    sig = ImageSignal((10, 10, 20, 20), red_threshold=0.35, stale_s=5)
    frame = np.zeros((64, 64, 3), np.uint8)
    sig.observe(frame, 0.0)
    assert sig.state_at(0.0) == SignalState.not_red
    frame[12:28, 12:28] = (20, 20, 235)  # BGR: lit red lamp
    sig.observe(frame, 1.0)
    assert sig.state_at(1.5) == SignalState.red
    assert sig.state_at(0.5) == SignalState.not_red  # history: the state at the crossing time
    assert sig.state_at(10.0) == SignalState.unknown  # stale


def test_serial_signal_reads_controller_lines_over_loop_url() -> None:
    sig = SerialSignal("loop://", 9600, stale_s=5)
    try:
        sig.port.write(b"GREEN\nRED\n")
        sig.observe(None, 1.0)
        assert sig.state_at(1.0) == SignalState.red
        sig.port.write(b"GARBAGE\nGRE")  # a partial line waits for its end
        sig.observe(None, 2.0)
        assert sig.bad_lines == 1 and sig.state_at(2.0) == SignalState.red
        sig.port.write(b"EN\n")
        sig.observe(None, 3.0)
        assert sig.state_at(3.0) == SignalState.green
    finally:
        sig.close()


def test_gpio_signal_on_mock_pin() -> None:
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    sig = GpioSignal("GPIO17", active_high=True, pin_factory=factory)
    try:
        pin = factory.pin(17)
        pin.drive_low()
        sig.observe(None, 0.0)
        assert sig.state_at(0.0) == SignalState.not_red
        pin.drive_high()
        sig.observe(None, 1.0)
        assert sig.state_at(1.0) == SignalState.red
    finally:
        sig.close()


def test_red_light_from_gpio_through_ruleset() -> None:
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    cfg = parse_config(
        {
            "rules": {
                "no_helmet": {"enabled": False},
                "red_light": {
                    "enabled": True,
                    "stop_line": [[-3, 16], [3, 16]],
                    "signal": {"source": "gpio", "gpio_pin": "GPIO22"},
                },
            }
        }
    )
    rules = RuleSet.from_config(cfg.rules, cfg.track.motion_window_s, pin_factory=factory)
    try:
        factory.pin(22).drive_high()
        ground = approach()
        t = make_track(ground[:1])
        pts = _points(ground, None, "rider")
        fired = []
        for p in pts[1:]:
            t.history.append(p)
            rules.observe_signal(None, p.t_s)
            fired += rules.check([t])
        assert [v.type for v in fired] == [ViolationType.red_light]
    finally:
        rules.close()


@pytest.mark.parametrize(
    "signal, key, error",
    [
        ({"source": "gpio", "gpio_pin": "GPIO22"}, "rules.red_light.signal.gpio_pin", "GPIOPinInUse"),
        (
            {"source": "serial", "serial_port": "/dev/ttyANQI-NONE"},
            "rules.red_light.signal.serial_port",
            "Serial",
        ),
    ],
)
def test_a_signal_input_that_cannot_be_opened_is_named_by_its_own_key(
    signal: dict[str, str], key: str, error: str
) -> None:
    """A GPIO pin another device holds, a serial port that is not there: the rule set refuses to start
    naming the key of that input (not the whole ``rules.red_light.signal`` section) and the driver's error."""
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    holder = GpioSignal("GPIO22", active_high=True, pin_factory=factory)  # the pin is taken
    cfg = parse_config(
        {
            "rules": {
                "no_helmet": {"enabled": False},
                "red_light": {"enabled": True, "stop_line": [[-3, 16], [3, 16]], "signal": signal},
            }
        }
    )
    try:
        with pytest.raises(RuleSetError) as err:
            RuleSet.from_config(cfg.rules, cfg.track.motion_window_s, pin_factory=factory)
        assert err.value.key == key
        assert str(err.value).startswith(f"{key}: {error}")
    finally:
        holder.close()


def test_red_light_config_needs_stop_line_and_signal() -> None:
    from edge.config import ConfigError

    with pytest.raises(ConfigError, match="rules.red_light: .*stop_line is required"):
        parse_config({"rules": {"red_light": {"enabled": True}}})
    with pytest.raises(ConfigError, match="signal.gpio_pin is required"):
        parse_config(
            {
                "rules": {
                    "red_light": {
                        "enabled": True,
                        "stop_line": [[0, 1], [1, 1]],
                        "signal": {"source": "gpio"},
                    }
                }
            }
        )


def test_ruleset_forgets_ended_tracks() -> None:
    cfg = parse_config({"rules": {"wrong_way": {"enabled": True, "lane_heading_deg": 180}}})
    rules = RuleSet.from_config(cfg.rules, cfg.track.motion_window_s)
    ground = [(0.0, 12 + 4 * 0.125 * i) for i in range(20)]
    t = make_track(ground[:1])
    fired = []
    for p in _points(ground, None, "rider")[1:]:
        t.history.append(p)
        fired += rules.check([t])
    assert [v.type for v in fired] == [ViolationType.wrong_way]
    ww = next(r for r in rules.rules if isinstance(r, WrongWayRule))
    assert ww._once.fired(7)
    rules.forget({7})
    assert not ww._once.fired(7)


@pytest.mark.parametrize(
    "signal, stop_line, problem",
    [
        ({"source": "gpio", "gpio_pin": "GPIO17"}, [[-3, 16], [3, 16]], None),
        (
            {"source": "gpio", "gpio_pin": "PIN-SEVENTEEN"},
            [[-3, 16], [3, 16]],
            "rules.red_light.signal.gpio_pin: 'PIN-SEVENTEEN' is not a gpiozero pin name",
        ),
        (
            {"source": "serial", "serial_port": "/dev/ttyNOPE9"},
            [[-3, 16], [3, 16]],
            "rules.red_light.signal.serial_port: /dev/ttyNOPE9 does not exist",
        ),
        ({"source": "serial", "serial_port": "loop://"}, [[-3, 16], [3, 16]], None),
        (
            {"source": "image", "region": [10, 10, 0, 5]},
            [[-3, 16], [3, 16]],
            "rules.red_light.signal.region:",
        ),
        (
            {"source": "image", "region": [10, 10, 5, 5]},
            [[1, 16], [1, 16]],
            "rules.red_light.stop_line: the two points are the same",
        ),
    ],
)
def test_check_config_of_the_signal_input(signal: dict, stop_line: list, problem: str | None) -> None:
    from edge.rules import check_config

    cfg = parse_config({"rules": {"red_light": {"enabled": True, "stop_line": stop_line, "signal": signal}}})
    problems = check_config(cfg)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(problem)


@pytest.mark.parametrize("direction, fires", [(180.0, True), (0.0, False), (None, True)])
def test_red_light_judges_only_the_controlled_direction(direction: float | None, fires: bool) -> None:
    cfg = STOP.model_copy(update={"direction_deg": direction})
    vs = run_rule(
        RedLightRule(cfg, ScriptedSignal((0.0, 100.0))), approach()
    )  # riding towards the camera: heading 180
    assert (len(vs) == 1) is fires


# ---- one rider, one report, when the tracker splits a track ----------------------------------


def _segment(track_id: int, ground: list[tuple[float, float]], t0: float, dt: float = 0.125) -> Track:
    """A track whose whole history is ``ground`` from ``t0``, every head voting no helmet."""
    pts = [
        # the head where the ground point puts it (40 px per metre across, 8 per metre along): riders a metre
        # apart have heads apart in the image too
        dataclasses.replace(
            p, t_s=t0 + i * dt, head_box=(314 + 40 * g[0], 34 + 8 * g[1], 326 + 40 * g[0], 46 + 8 * g[1])
        )
        for i, (p, g) in enumerate(
            zip(_points(ground, [0.9] * len(ground), "rider", dt), ground, strict=True)
        )
    ]
    t = Track(
        key=track_id,
        box=np.zeros(4),
        first_t_s=t0,
        first_utc=T0,
        last_t_s=pts[-1].t_s,
        history=deque(pts),
        track_id=track_id,
    )
    t.rider_hits = 1
    return t


def test_a_re_tracked_rider_is_reported_once_but_other_riders_are_not_swallowed() -> None:
    rules = _ruleset(parse_config({"rules": {"no_helmet": {"min_observed_s": 0.0}}}))
    ride = approach(n=40)  # 5 m/s towards the camera, 0.625 m per 0.125 s, y = 30 - 0.625 i
    first = _segment(1, ride[4:16], 0.5)  # 27.5 -> 20.6 m, its last points in the zone: decided
    assert [v.track_id for v in rules.check([first])] == [1]
    # lost at 1.875 s; 0.5 s later the same rider comes back as track 2 where they would be by then (18.1 m)
    again = _segment(2, ride[19:24], 2.375)
    assert rules.check([again]) == []
    # another unhelmeted rider starting in the same second, 6 m to the side: reported
    other = _segment(3, [(x + 6.0, y) for x, y in ride[19:24]], 2.375)
    assert [v.track_id for v in rules.check([other])] == [3]
    # a rider beside the reported one while it was still tracked is another rider, even at 1 m
    beside = _segment(4, [(x + 1.0, y) for x, y in ride[4:16]], 0.5)
    assert [v.track_id for v in rules.check([beside])] == [4]
    # and with the guard off every track is reported
    off = _ruleset(parse_config({"rules": {"same_rider_gap_s": 0, "no_helmet": {"min_observed_s": 0.0}}}))
    assert [
        v.track_id
        for v in off.check([_segment(1, ride[4:16], 0.5)]) + off.check([_segment(2, ride[19:24], 2.375)])
    ] == [1, 2]


def test_riders_in_single_file_in_other_clothes_are_both_reported() -> None:
    """The rider behind passes the ground points the one ahead passed a moment before; only the colours
    of their clothes tell that it is someone else (a teal jacket, then a white T-shirt)."""
    rules = _ruleset(parse_config({"rules": {"no_helmet": {"min_observed_s": 0.0}}}))
    ride = approach(n=40)
    teal, white, teal_again = np.zeros(256), np.zeros(256), np.zeros(256)
    teal[[70, 71, 86]] = [0.5, 0.3, 0.2]
    white[[3, 2, 86]] = [0.6, 0.2, 0.2]
    teal_again[[70, 71, 86]] = [0.45, 0.35, 0.2]
    first = _segment(1, ride[4:16], 0.5)
    first.look = teal
    assert [v.track_id for v in rules.check([first])] == [1]
    behind = _segment(2, ride[19:24], 2.375)
    behind.look = white
    assert [v.track_id for v in rules.check([behind])] == [2]
    again = _segment(3, ride[19:24], 2.375)
    again.look = teal_again
    assert rules.check([again]) == []  # the same jacket where the first rider would be: re-tracked


def test_uncalibrated_zone_reports_a_moving_head_once_but_not_a_still_head_like_object() -> None:
    """No survey: no ground, no speed; a still blob the detector calls a bare head (a sign, foliage) is
    not a rider, a head that moves across the image is, and its track broken once is still one rider."""
    from edge.config.track import TrackConfig
    from edge.detect.rider import FrameDetections
    from edge.track import RiderTracker
    from edge.zone import CaptureZone

    cfg = parse_config(
        {
            "zone": {"calibrated": False},
            "rules": {"wrong_way": {"enabled": False}, "no_helmet": {"min_speed_mps": 0}},
        }
    )
    tracker = RiderTracker(TrackConfig(min_hits=2, max_lost_s=0.3), CaptureZone.from_config(cfg.zone))
    rules = RuleSet.from_config(cfg.rules, cfg.track.motion_window_s, zone_calibrated=cfg.zone.calibrated)
    reported = []
    for i in range(40):
        boxes = [[500.0, 60.0, 526.0, 86.0]]  # still
        if not 18 <= i < 24:  # the rider is lost for 0.6 s (longer than max_lost_s): a new track
            x = 100.0 + 8 * i
            boxes.append([x, 70.0, x + 26, 96.0])
        dets = FrameDetections(
            heads=np.array(boxes, np.float32),
            head_scores=np.full(len(boxes), 0.7, np.float32),
            head_no_helmet=np.full(len(boxes), 0.95, np.float32),
        )
        upd = tracker.update(dets, i * 0.1, T0 + timedelta(seconds=i * 0.1), (640, 360))
        reported += rules.check(upd.active)
    assert len(reported) == 1
    (v,) = reported
    assert v.detail["zone_calibrated"] is False and v.zone_distance_m is None
    assert float(str(v.detail["head_box"]).split(",")[0]) < 400  # the moving head, not the still one


def test_no_helmet_judges_speed_inside_the_band_when_far_distances_were_ranged_coarsely() -> None:
    # a head-only rider ranged from a few pixels of head far away (40 -> 28 m in 0.375 s: 32 m/s), then
    # steadily inside the band at 4.8 m/s: a rider, not a track that jumped
    ground = [(0.0, 40.0 - 4.0 * i) for i in range(4)] + [(0.0, 24.0 - 0.6 * i) for i in range(7)]
    rule = NoHelmetRule(NoHelmetRuleConfig(min_observations=3, min_observed_s=0.0))
    (v,) = run_rule(rule, ground, [0.9] * len(ground), "head")
    assert v.speed_mps == pytest.approx(4.8, rel=0.05) and 15 <= (v.zone_distance_m or 0) <= 25


def _head_track(track_id: int, heads: list[tuple[float, tuple[float, float, float, float]]]) -> Track:
    """A head-only track observed at ``(t_s, head box)`` (pixels), every head voting no helmet."""
    pts = [
        TrackPoint(
            t,
            T0 + timedelta(seconds=t),
            (h[0] - 20, h[1], h[2] + 20, h[3] + 200),
            0.8,
            "head",
            None,
            None,
            True,
            h,
            0.8,
            0.95,
        )
        for t, h in heads
    ]
    return Track(
        key=track_id,
        box=np.zeros(4),
        first_t_s=pts[0].t_s,
        first_utc=T0,
        last_t_s=pts[-1].t_s,
        history=deque(pts),
        track_id=track_id,
    )


def _violation(track: Track) -> Violation:
    return Violation(
        ViolationType.no_helmet,
        int(track.track_id or 0),
        track.last.t_s,
        0.0,
        T0,
        0.9,
        None,
        None,
        None,
        {"role": "driver"},
    )


def test_a_track_that_takes_a_reported_riders_head_does_not_report_them_again() -> None:
    """The demo clip played backwards, as recorded: teal-jacket's own track reported no_helmet at 4.2 s and was
    lost at 4.5 s for a few frames; a track that had followed someone else until 3.8 s took teal-jacket's
    head at 4.7 s (a loose box first, then the head) and decided no_helmet again at 5.0 s."""
    from edge.rules import SameRiderGuard

    guard = SameRiderGuard(gap_s=2.0, radius_m=3.0, motion_window_s=1.0)
    teal = _head_track(
        6,
        [
            (4.2, (156, 66, 189, 97)),
            (4.3, (142, 71, 172, 101)),
            (4.4, (130, 69, 162, 100)),
            (4.5, (129, 66, 155, 89)),
        ],
    )
    guard.reported(_violation(teal), teal)
    taker = _head_track(
        3,
        [
            (3.7, (300, 61, 327, 88)),
            (3.8, (290, 61, 317, 88)),
            (4.7, (112, 67, 148, 97)),
            (4.8, (112, 63, 140, 84)),
            (4.9, (100, 72, 145, 108)),
            (5.0, (110, 63, 133, 86)),
        ],
    )
    assert guard.shares_head(_violation(taker), taker) == 6
    # a rider riding beside teal-jacket (heads two widths apart at the same moments) is someone else
    beside = _head_track(4, [(4.2 + 0.1 * i, (216 - 9 * i, 66, 246 - 9 * i, 96)) for i in range(7)])
    assert guard.shares_head(_violation(beside), beside) is None
    # a rider who reaches that spot 0.8 s after teal-jacket left it is someone else too
    later = _head_track(5, [(5.3, (135, 66, 162, 92)), (5.4, (128, 66, 156, 90))])
    assert guard.shares_head(_violation(later), later) is None
    # the guard looks at the reported track only while it followed its rider without a break: lost for
    # 0.6 s and matched again on another rider's head, its later boxes are not the reported rider's
    teal.history.append(dataclasses.replace(teal.last, t_s=5.1, head_box=(300, 60, 330, 90)))
    other = _head_track(8, [(5.0, (302, 61, 331, 91)), (5.1, (299, 60, 329, 89))])
    assert guard.shares_head(_violation(other), other) is None
    # the same head from the guard's other side: off with same_rider_gap_s 0
    assert SameRiderGuard(0.0, 3.0, 1.0).shares_head(_violation(taker), taker) is None


def test_two_tracks_deciding_one_rider_in_one_frame_report_the_one_on_the_surer_head() -> None:
    """A loose box that drifted off a rider's head and the tight box on it, each with a track, decide no_helmet on
    the same frame (the demo clip, a jitter seed of the recorded detections): one event, from the track whose head
    the detector is surer of, whatever order the tracker lists them in."""
    rules = _ruleset(parse_config({"rules": {"no_helmet": {"min_observed_s": 0.0}}}))
    ride = approach(n=40)
    loose, tight = _segment(2, ride[4:16], 0.5), _segment(4, ride[4:16], 0.5)
    loose.history[-1] = dataclasses.replace(loose.last, head_score=0.33)
    tight.history[-1] = dataclasses.replace(tight.last, head_score=0.63)
    assert [v.track_id for v in rules.check([loose, tight])] == [4]
