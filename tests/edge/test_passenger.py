"""Carrying a passenger (issue 18): heads to rider boxes on real labelled frames, the passenger rule and
the passenger's helmet on crafted tracks, the evidence frame, the config and the shipped prompts."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from anqi_contract.event import ViolationType
from anqi_contract.paths import audio_prompts_dir
from edge.actuators.prompts import PromptLibrary, PromptPacks
from edge.config import ConfigError, parse_config
from edge.config.rules import NoHelmetRuleConfig, PassengerRuleConfig
from edge.evidence.snapshot import HEAD_BGR, OCCUPANT_BGR, ViolationFrame
from edge.rules import NoHelmetRule, PassengerHelmetRule, PassengerRule, RuleSet, Violation
from edge.rules.passenger import SameVehicleGuard, majority_count
from edge.track import Track, TrackPoint
from edge.track.occupants import OccupantHead, order_by_travel, rider_occupants

SHARED = Path(__file__).resolve().parents[3] / "shared"
HELMET9 = SHARED / "data" / "helmet9-dev"
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)


def labelled(stem: str) -> tuple[np.ndarray, np.ndarray]:
    """helmet9-dev's labelled rider boxes and head boxes of one frame (pixels of the 1820x1024 frame)."""
    a = np.loadtxt(HELMET9 / "labels" / f"{stem}.txt", ndmin=2)
    W, H = 1820, 1024
    b = np.c_[
        (a[:, 1] - a[:, 3] / 2) * W,
        (a[:, 2] - a[:, 4] / 2) * H,
        (a[:, 1] + a[:, 3] / 2) * W,
        (a[:, 2] + a[:, 4] / 2) * H,
    ]
    return b[a[:, 0] == 5], b[(a[:, 0] == 1) | (a[:, 0] == 3)]


@pytest.mark.skipif(not HELMET9.is_dir(), reason="needs ../shared/data/helmet9-dev")
def test_labelled_rider_boxes_get_their_two_heads_and_only_heads_of_their_upper_part() -> None:
    """Frame 021976 (looked at): one rider box holds a rider and a pillion passenger."""
    riders, heads = labelled("021976")
    occ = rider_occupants(riders, heads, np.ones(len(heads)))
    assert sorted(len(o) for o in occ).count(2) >= 1
    for label in sorted((HELMET9 / "labels").glob("*.txt"))[::25]:
        riders, heads = labelled(label.stem)
        for r, o in zip(riders, rider_occupants(riders, heads, np.ones(len(heads))), strict=True):
            for h in o:
                cx, cy = h.centre
                assert r[0] <= cx <= r[2] and cy <= r[1] + 0.5 * (r[3] - r[1]), label.stem
                assert np.hypot(cx - o[0].centre[0], cy - o[0].centre[1]) <= 1.6 * max(
                    o[0].box[2] - o[0].box[0], h.box[2] - h.box[0]
                )


RIDER = np.array([[100.0, 100.0, 200.0, 400.0]])  # 100 x 300 px: heads of ~50 px


@pytest.mark.parametrize(
    "heads, expected, why",
    [
        ([[125, 110, 165, 160]], 1, "one head at the top of the box"),
        ([[110, 110, 150, 160], [150, 115, 190, 165]], 2, "two heads touching: rider and passenger"),
        (
            [[110, 110, 150, 160], [150, 300, 190, 350]],
            1,
            "a head low in the box is not an occupant (a pedestrian behind)",
        ),
        ([[110, 110, 150, 160], [195, 110, 235, 160]], 1, "a head whose centre is outside the box"),
        (
            [[110, 110, 150, 160], [152, 110, 156, 114]],
            1,
            "a speck far too small for a head at this box size",
        ),
        (
            [[130, 40, 175, 90], [110, 180, 150, 225], [150, 190, 195, 235]],
            0,
            "a box cut below a person's head (round the legs and the vehicle): its hands and knees are no occupants",
        ),
        (
            [[120, 110, 160, 160], [150, 152, 180, 182]],
            1,
            "a smaller box overlapping a head's lower half (ponytail, neck, collar: thaigate approach clip): one person",
        ),
        (
            [[125, 105, 170, 155], [130, 178, 165, 213]],
            2,
            "a smaller head in front of the driver's chest, both in the box: a child on the seat in front",
        ),
    ],
)
def test_occupant_geometry(heads: list, expected: int, why: str) -> None:
    occ = rider_occupants(RIDER, np.array(heads, float), np.full(len(heads), 0.9))
    assert len(occ[0]) == expected, why


def test_a_rider_box_per_person_still_sees_both_people_on_the_seat() -> None:
    """helmet9 frame 022034 (looked at): the rider and the pillion each have a labelled rider box; each
    box holds both heads, the rule set then reports each person once (see the rule set test)."""
    riders, heads = labelled("022034")
    occ = rider_occupants(riders, heads, np.ones(len(heads)))
    twins = [o for o in occ if len(o) == 2]
    assert len(twins) >= 2 and {h.box for h in twins[0]} == {h.box for h in twins[1]}


def test_riders_side_by_side_are_not_one_vehicle() -> None:
    """Two heads further apart than max_spacing (1.6 head widths) in one wide box: two riders."""
    wide = np.array([[100.0, 100, 400, 400]])
    occ = rider_occupants(
        wide, np.array([[230.0, 110, 270, 150], [300.0, 110, 340, 150]]), np.array([0.9, 0.8])
    )
    assert len(occ[0]) == 1


def test_the_driver_is_the_head_in_front_along_the_direction_of_travel() -> None:
    left = OccupantHead((100, 100, 140, 140), 0.9, 0.1)
    right = OccupantHead((140, 102, 180, 142), 0.9, 0.9)
    assert order_by_travel((right, left), (-5.0, 0.0)) == [1, 0]  # moving left: the left head drives
    assert order_by_travel((right, left), (5.0, 1.0)) == [0, 1]
    assert order_by_travel((right, left), None) == [0, 1]  # standing: the best-fitting head
    big = OccupantHead((100, 100, 150, 150), 0.9, 0.1)
    assert order_by_travel((right, big), (1.0, 5.0)) == [1, 0]  # towards the camera: the nearer (larger) head
    assert order_by_travel((right, big), (1.0, -5.0)) == [0, 1]  # going away: the farther (smaller) head


@pytest.mark.parametrize(
    "counts, k",
    [([1, 1, 2, 2, 2], 2), ([2, 1, 1, 1, 1], 1), ([2, 2, 1, 2, 1], 2), ([3, 2, 2, 2, 1], 2), ([], 0)],
)
def test_majority_count(counts: list[int], k: int) -> None:
    assert majority_count(counts, 0.6)[0] == k


DRIVER_HEAD = (100.0, 100.0, 140.0, 140.0)
PILLION_HEAD = (140.0, 104.0, 180.0, 144.0)
CHILD_HEAD = (60.0, 118.0, 82.0, 140.0)


def occupant_track(
    frames: list[list[tuple[tuple[float, float, float, float], float]]], dt: float = 0.125
) -> tuple[Track, list[TrackPoint]]:
    """A rider track moving left (so the left head drives), one frame per list of (head box, P(no helmet))."""
    pts = []
    for i, heads in enumerate(frames):
        x = 400.0 - 20 * i  # 20 px per frame to the left
        occ = tuple(OccupantHead((b[0] + x, b[1], b[2] + x, b[3]), 0.9, p) for b, p in heads)
        first = occ[0] if occ else None
        pts.append(
            TrackPoint(
                i * dt,
                T0 + timedelta(seconds=i * dt),
                (x + 50, 90, x + 200, 400),
                0.9,
                "rider",
                (0.0, 20.0 - i * 0.3),
                20.0 - i * 0.3,
                True,
                first.box if first else None,
                0.9 if first else None,
                first.no_helmet if first else None,
                occupants=occ,
            )
        )
    t = Track(
        key=1, box=np.zeros(4), first_t_s=0.0, first_utc=T0, last_t_s=0.0, history=deque(pts[:1]), track_id=3
    )
    t.rider_hits = 1
    return t, pts


def run(rule: object, track: Track, pts: list[TrackPoint]) -> list:
    out = []
    for p in pts[1:]:
        track.history.append(p)
        track.last_t_s = p.t_s
        v = rule.check(track)  # type: ignore[attr-defined]
        if v is not None:
            out.append(v)
    return out


TWO = [(DRIVER_HEAD, 0.1), (PILLION_HEAD, 0.9)]
ONE = [(DRIVER_HEAD, 0.1)]


def test_a_passenger_seen_in_most_in_zone_frames_is_one_passenger_event() -> None:
    track, pts = occupant_track([TWO, ONE, TWO, TWO, ONE, TWO, TWO, TWO])
    vs = run(PassengerRule(PassengerRuleConfig()), track, pts)
    assert len(vs) == 1 and vs[0].type == ViolationType.passenger
    d = vs[0].detail
    assert d["occupants"] == 2 and d["role"] == "driver"
    assert len(d["occupant_boxes"].split(";")) == 2


def test_one_frame_with_a_stray_head_makes_no_passenger() -> None:
    track, pts = occupant_track([ONE, TWO, ONE, ONE, ONE, ONE, ONE, ONE])
    assert run(PassengerRule(PassengerRuleConfig()), track, pts) == []


def test_people_standing_by_a_vehicle_make_no_passenger_until_it_rides_off() -> None:
    """A rider waiting at the light with a pedestrian beside them (two heads in the box, ground speed 0): no
    event; the same two riding off inside the band: the event. No ground speed (uncalibrated zone): no check."""

    def frames(ground: Callable[[int], tuple[float, float] | None]) -> tuple[Track, list[TrackPoint]]:
        track, pts = occupant_track([TWO] * 16)
        pts = [replace(p, ground=ground(i), distance_m=None) for i, p in enumerate(pts)]
        track.history = deque(pts[:1])
        return track, pts

    track, pts = frames(lambda i: (0.0, 20.0))
    assert run(PassengerRule(PassengerRuleConfig()), track, pts) == []
    track, pts = frames(lambda i: (0.0, 20.0 - max(0, i - 8) * 0.3))  # rides off after 1 s, 2.4 m/s
    vs = run(PassengerRule(PassengerRuleConfig()), track, pts)
    assert len(vs) == 1 and vs[0].t_s > 1.0 and (vs[0].speed_mps or 0) > 0.8
    track, pts = frames(lambda i: (0.0, 20.0))
    assert len(run(PassengerRule(PassengerRuleConfig(min_speed_mps=0)), track, pts)) == 1
    track, pts = frames(lambda i: None)
    assert len(run(PassengerRule(PassengerRuleConfig()), track, pts)) == 1


def test_a_site_that_allows_two_adults_or_a_child_seat() -> None:
    track, pts = occupant_track([TWO] * 8)
    assert run(PassengerRule(PassengerRuleConfig(max_occupants=2)), track, pts) == []
    child = [(DRIVER_HEAD, 0.1), (CHILD_HEAD, 0.9)]  # a head half the driver's size, in front
    track, pts = occupant_track([child] * 8)
    assert run(PassengerRule(PassengerRuleConfig(allow_child_seat=True)), track, pts) == []
    track, pts = occupant_track([child] * 8)
    assert len(run(PassengerRule(PassengerRuleConfig(allow_child_seat=False)), track, pts)) == 1
    track, pts = occupant_track([TWO] * 8)  # an adult passenger is no child, even with the seat allowed
    assert len(run(PassengerRule(PassengerRuleConfig(allow_child_seat=True)), track, pts)) == 1


def test_the_bare_headed_passenger_is_a_no_helmet_event_of_their_own_and_the_helmeted_driver_is_not() -> None:
    track, pts = occupant_track([TWO] * 8)
    assert run(NoHelmetRule(NoHelmetRuleConfig(), 1.0), track, pts) == []
    track, pts = occupant_track([TWO] * 8)
    vs = run(PassengerHelmetRule(NoHelmetRuleConfig(), 1.0), track, pts)
    assert len(vs) == 1 and vs[0].type == ViolationType.no_helmet
    assert vs[0].detail["role"] == "passenger"
    x0 = float(vs[0].detail["head_box"].split(",")[0])
    i = round(vs[0].t_s / 0.125)  # the deciding frame
    assert x0 == PILLION_HEAD[0] + 400.0 - 20 * i  # the head behind the driver (the track moves left)


def test_a_bare_headed_driver_with_a_helmeted_passenger_is_the_driver_s_event() -> None:
    track, pts = occupant_track([[(DRIVER_HEAD, 0.9), (PILLION_HEAD, 0.1)]] * 8)
    vs = run(NoHelmetRule(NoHelmetRuleConfig(), 1.0), track, pts)
    assert len(vs) == 1 and vs[0].detail["role"] == "driver"
    track, pts = occupant_track([[(DRIVER_HEAD, 0.9), (PILLION_HEAD, 0.1)]] * 8)
    assert run(PassengerHelmetRule(NoHelmetRuleConfig(), 1.0), track, pts) == []


def test_ruleset_reports_both_occupants_and_the_passenger_once_each() -> None:
    cfg = parse_config({})
    rules = RuleSet.from_config(cfg.rules, cfg.track.motion_window_s)
    track, pts = occupant_track([[(DRIVER_HEAD, 0.9), (PILLION_HEAD, 0.9)]] * 10)
    got = []
    for p in pts[1:]:
        track.history.append(p)
        got += rules.check([track])
    kinds = sorted((v.type.value, v.detail.get("role")) for v in got)
    assert kinds == [("no_helmet", "driver"), ("no_helmet", "passenger"), ("passenger", "driver")]


def test_two_tracks_on_one_vehicle_report_each_person_once() -> None:
    """A rider box per person: two tracks see the same two heads; three events, not six."""
    cfg = parse_config({})
    rules = RuleSet.from_config(cfg.rules, cfg.track.motion_window_s)
    frames = [[(DRIVER_HEAD, 0.9), (PILLION_HEAD, 0.9)]] * 10
    a, pa = occupant_track(frames)
    b, pb = occupant_track(frames)
    b.track_id, b.key = 4, 2
    got = []
    for p, q in zip(pa[1:], pb[1:], strict=True):
        a.history.append(p)
        b.history.append(q)
        got += rules.check([a, b])
    kinds = sorted((v.type.value, v.detail.get("role")) for v in got)
    assert kinds == [("no_helmet", "driver"), ("no_helmet", "passenger"), ("passenger", "driver")]


def test_the_deciding_frame_boxes_every_occupant() -> None:
    track, pts = occupant_track([TWO] * 8)
    vs = run(PassengerHelmetRule(NoHelmetRuleConfig(), 1.0), track, pts)
    img = np.zeros((480, 640, 3), np.uint8)
    v = vs[0]
    frame = ViolationFrame.of(img, track, v.t_s, v.type.value, 3, v.confidence, 20.0, v.utc, detail=v.detail)
    assert len(frame.occupants) == 2 and "(passenger)" in frame.label
    out = frame.render()
    judged = frame.head_box
    other = next(o for o in frame.occupants if o != judged)
    assert tuple(out[int(judged[1]), int((judged[0] + judged[2]) / 2)]) == HEAD_BGR  # type: ignore[index]
    assert tuple(out[int(other[3]), int((other[0] + other[2]) / 2)]) == OCCUPANT_BGR


def test_passenger_config_and_its_errors() -> None:
    cfg = parse_config({"rules": {"passenger": {"max_occupants": 2, "allow_child_seat": True}}})
    assert cfg.rules.passenger.max_occupants == 2 and cfg.rules.passenger.allow_child_seat
    with pytest.raises(ConfigError, match="rules.passenger.max_occupants"):
        parse_config({"rules": {"passenger": {"max_occupants": 0}}})
    with pytest.raises(ConfigError, match="rules.passenger.child_size_ratio"):
        parse_config({"rules": {"passenger": {"child_size_ratio": 1.5}}})


@pytest.mark.parametrize("lang", ["zh-cmn", "zh-yue"])
def test_every_shipped_pack_has_its_own_passenger_prompt(lang: str) -> None:
    wav = audio_prompts_dir() / lang / "passenger.wav"
    assert wav.is_file()
    cfg = parse_config({"speaker": {"languages": [lang]}})
    lib = PromptLibrary.load(cfg.speaker, PromptPacks.for_site(cfg.speaker, cfg.rules, cfg.base_dir), 16000)
    prompt = lib.for_violation("passenger")
    assert prompt is not None and prompt.files == (wav,)
    assert 1.0 < len(prompt.samples) / 16000 < 5.0


THAIGATE = SHARED / "data" / "thaigate-dev"


def vehicle_track(stem: str, pair: list[int]) -> Track:
    """A track of the vehicle of a labelled head pair of a thaigate frame, coming towards the camera."""
    img = cv2.imread(str(THAIGATE / "images" / f"{stem}.jpg"))
    assert img is not None
    h, w = img.shape[:2]
    a = np.loadtxt(THAIGATE / "labels" / f"{stem}.txt", ndmin=2)[pair]
    heads = np.c_[
        (a[:, 1] - a[:, 3] / 2) * w,
        (a[:, 2] - a[:, 4] / 2) * h,
        (a[:, 1] + a[:, 3] / 2) * w,
        (a[:, 2] + a[:, 4] / 2) * h,
    ]
    hh = float((heads[:, 3] - heads[:, 1]).mean())
    top = float(heads[:, 1].min()) - 0.1 * hh
    box = (
        float(heads[:, 0].min()) - hh,
        top,
        float(heads[:, 2].max()) + hh,
        top + 5.5 * hh,
    )  # a person on a bike
    occ = rider_occupants(np.array([box]), heads, np.array([0.9, 0.9]), np.array([0.9, 0.9]))[0]
    assert len(occ) == 2
    pts = [
        TrackPoint(
            i * 0.1,
            T0 + timedelta(seconds=i * 0.1),
            (box[0], box[1] - 80 + 40 * i, box[2], box[3] - 80 + 40 * i),
            0.9,
            "rider",
            occupants=occ,
        )
        for i in range(3)
    ]
    return Track(
        key=1, box=np.zeros(4), first_t_s=0.0, first_utc=T0, last_t_s=0.2, history=deque(pts), track_id=5
    )


@pytest.mark.skipif(not THAIGATE.is_dir(), reason="needs ../shared/data/thaigate-dev")
def test_the_driver_s_and_the_passenger_s_faces_are_kept_apart_and_both_go_with_the_event(
    tmp_path: Path,
) -> None:
    """thaigate frames looked at: 6-7_00-9_00-0818, a rider with a passenger behind him, both faces visible
    (2 of the 23 passenger pairs show both faces); 6-7_00-9_00-0432, the passenger's face hidden behind
    the driver's head. Face capture
    searches around each occupant's head and never takes a fellow occupant's face; the passenger's no-helmet
    event carries the passenger's face as face.jpg and the driver's as face_driver.jpg."""
    from anqi_contract.manifest import resolve
    from edge.config.device import DeviceConfig
    from edge.detect.faces import FaceDetector
    from edge.evidence import EventAssembler, FaceCapture
    from edge.rules import occupant_heads

    capture = FaceCapture(
        FaceDetector(resolve("yunet")[1], 0.6, min_face_px=8), min_face_px=12, min_search_px=160
    )
    track = vehicle_track("6-7_00-9_00-0818", [0, 1])
    img = cv2.imread(str(THAIGATE / "images" / "6-7_00-9_00-0818.jpg"))
    assert img is not None
    roles = occupant_heads(track)
    capture.offer(track, img, 0.2, T0, False, head=roles["driver"])
    capture.offer(track, img, 0.2, T0, False, head=roles["passenger"], slot="passenger")
    driver, passenger = capture.best(5), capture.best(5, "passenger")
    assert driver is not None and passenger is not None
    for face, head in ((driver, roles["driver"]), (passenger, roles["passenger"])):
        cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        assert head[0] - 5 <= cx <= head[2] + 5 and head[1] - 5 <= cy <= head[3] + 15
    ev = EventAssembler(DeviceConfig(device_id="d1", site_id="s1", point_id="p1"), tmp_path).assemble(
        passenger_violation(),
        T0,
        passenger,
        None,
        None,
        "no clip in this test",
        other_faces={"face_driver.jpg": driver},
    )
    kinds = {m.name: m.kind for m in ev.event.media}
    assert kinds == {"face.jpg": "face", "context.jpg": "context", "face_driver.jpg": "face"}
    assert ev.event.detail["role"] == "passenger"

    hidden = vehicle_track("6-7_00-9_00-0432", [0, 1])
    img = cv2.imread(str(THAIGATE / "images" / "6-7_00-9_00-0432.jpg"))
    assert img is not None
    roles = occupant_heads(hidden)
    hidden.track_id = 6
    capture.offer(hidden, img, 0.2, T0, False, head=roles["driver"])
    capture.offer(hidden, img, 0.2, T0, False, head=roles["passenger"], slot="passenger")
    assert capture.best(6) is not None and capture.best(6, "passenger") is None  # not the driver's face again


def passenger_violation() -> Violation:
    return Violation(
        type=ViolationType.no_helmet,
        track_id=5,
        t_s=0.2,
        mono=0.2,
        utc=T0,
        confidence=0.9,
        zone_distance_m=None,
        speed_mps=None,
        heading_deg=None,
        detail={"role": "passenger", "occupant_boxes": "1,1,2,2;3,3,4,4"},
    )


def approach_clip(path: Path, still: Path, seconds: float = 3.0, fps: int = 10) -> Path:
    """An H.264 clip of a real photo seen by a camera closing in on it (the crop shrinks towards the
    top centre over ``seconds``): the vehicles in it grow and move down the frame as they do when
    they come towards an elevated camera. Real pixels for the detector; the motion is the camera's."""
    import av

    read = cv2.imread(str(still))
    assert read is not None, still
    img = np.asarray(read, dtype=np.uint8)
    h, w = img.shape[:2]
    n = int(seconds * fps)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            k = 1.0 - 0.25 * i / max(n - 1, 1)  # 100 % -> 75 % of the frame
            cw, ch = int(w * k), int(h * k)
            x0, y0 = (w - cw) // 2, 0
            frame = np.asarray(
                cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR),
                dtype=np.uint8,
            )
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


@pytest.fixture(scope="module")
def approach_events(tmp_path_factory: pytest.TempPathFactory) -> list:
    """The whole pipeline (anqi-edge replay: detector, tracker, rules, evidence) on a clip closing in on
    thaigate 6-7_00-9_00-0818 (a helmeted rider carrying a passenger without a helmet, looked at), zone
    uncalibrated (the whole frame)."""
    import yaml
    from click.testing import CliRunner

    from anqi_contract.event import parse_event
    from edge.cli import main

    if not THAIGATE.is_dir():
        pytest.skip("needs ../shared/data/thaigate-dev")
    tmp = tmp_path_factory.mktemp("approach")
    clip = approach_clip(tmp / "approach.mp4", THAIGATE / "images" / "6-7_00-9_00-0818.jpg")
    root = Path(__file__).resolve().parents[2]
    data = yaml.safe_load((root / "config" / "examples" / "uncalibrated.yaml").read_text())
    data["speaker"] = {"enabled": False}
    data["device"]["data_dir"] = str(tmp / "data")
    data["detect"]["riders_from_heads"] = True  # gate CCTV: the detector's rider class rarely fires here
    cfg = tmp / "site.yaml"
    cfg.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(main, ["replay", str(clip), "--config", str(cfg), "--out", str(tmp / "out")])
    assert res.exit_code == 0, res.output
    evs = [parse_event(p.read_text()) for p in sorted((tmp / "out" / "events").glob("*.json"))]
    return sorted(evs, key=lambda e: float(e.detail["t_s"]))


def test_the_daemon_reports_the_passenger_with_everyone_boxed_and_both_faces(approach_events: list) -> None:
    passenger = [e for e in approach_events if e.violation_type.value == "passenger"]
    assert passenger, [(e.violation_type.value, e.detail) for e in approach_events]
    e = passenger[0]  # the first decision, on the vehicle's own track
    assert int(e.detail["occupants"]) >= 2 and e.detail["role"] == "driver"
    boxes = str(e.detail["occupant_boxes"]).split(";")
    assert len(boxes) >= 2
    x0 = float(str(e.detail["head_box"]).split(",")[0])
    assert x0 == min(float(b.split(",")[0]) for b in boxes)  # the driver: the big head on the left, looked at
    assert {"face.jpg", "face_passenger.jpg", "violation.jpg", "clip.mp4"} <= {m.name for m in e.media}
    assert e.face.found


def test_one_passenger_event_per_vehicle(approach_events: list) -> None:
    """The clip's one vehicle is seen as several rider boxes at once (the driver and pillion together, the
    pillion alone, the lower body whose hands and knees pass for heads): each track counts two people.
    The same-vehicle guard reports the vehicle once."""
    assert [e.violation_type.value for e in approach_events].count("passenger") == 1


def test_the_bare_headed_pillion_is_reported_once(approach_events: list) -> None:
    """The helmeted driver makes no no_helmet event; the bare-headed pillion one, though three boxes (her
    own, one made when her track was lost, the vehicle's) judge her head in turn."""
    helmet = [e for e in approach_events if e.violation_type.value == "no_helmet"]
    assert len(helmet) == 1, [e.detail for e in helmet]
    driver = [
        float(v)
        for v in str(
            next(e for e in approach_events if e.violation_type.value == "passenger").detail["head_box"]
        ).split(",")
    ]
    judged = [float(v) for v in str(helmet[0].detail["head_box"]).split(",")]
    assert judged[0] + judged[2] > driver[0] + driver[2]  # her head, right of the driver's (looked at)


def vehicle_point(
    i: int, box: Box4, heads: list[Box4], ground: tuple[float, float] | None = None
) -> TrackPoint:
    return TrackPoint(
        i * 0.1,
        T0 + timedelta(seconds=i * 0.1),
        box,
        0.9,
        "rider",
        ground,
        None,
        True,
        heads[0],
        0.9,
        0.1,
        occupants=tuple(OccupantHead(h, 0.9, 0.1) for h in heads),
    )


def crafted_track(tid: int, points: list[TrackPoint], velocity: tuple[float, float] = (0.0, 0.0)) -> Track:
    t = Track(
        key=tid,
        box=np.array(points[0].box, dtype=np.float64),
        first_t_s=points[0].t_s,
        first_utc=points[0].utc,
        last_t_s=points[0].t_s,
        history=deque(points[:1]),
        track_id=tid,
    )
    t.rider_hits = 1
    t.velocity = np.array([velocity[0], velocity[1], 0.0, 0.0])
    return t


def feed(rules: RuleSet, tracks: list[tuple[Track, list[TrackPoint]]], steps: range) -> list[Violation]:
    """Frame ``i`` of every track that has one, then the rules over the tracks seen in that frame."""
    got: list[Violation] = []
    for i in steps:
        seen = []
        for t, pts in tracks:
            p = next((q for q in pts if abs(q.t_s - i * 0.1) < 1e-9), None)
            if p is None or p is t.history[-1]:
                if p is not None:
                    seen.append(t)
                continue
            t.history.append(p)
            t.last_t_s = p.t_s
            t.box = np.array(p.box, dtype=np.float64)
            seen.append(t)
        got += rules.check(seen)
    return got


Box4 = tuple[float, float, float, float]
DRIVER_AT: Box4 = (150.0, 100.0, 200.0, 160.0)
PILLION_AT: Box4 = (195.0, 95.0, 240.0, 150.0)


def passengers(got: list[Violation]) -> list[int]:
    return [v.track_id for v in got if v.type == ViolationType.passenger]


def no_helmet_off() -> RuleSet:
    cfg = parse_config({"rules": {"no_helmet": {"enabled": False}}})
    return RuleSet.from_config(cfg.rules, cfg.track.motion_window_s)


def test_rider_boxes_of_one_vehicle_seen_together_make_one_passenger_event() -> None:
    """The vehicle's box with both heads, and the pillion's own box with the pillion's head boxed twice
    (hair, and the face below it): two tracks in the same frames, one vehicle."""
    whole = [vehicle_point(i, (120, 90, 260, 500), [DRIVER_AT, PILLION_AT]) for i in range(10)]
    pillion = [vehicle_point(i, (185, 90, 255, 330), [PILLION_AT, (215, 150, 240, 178)]) for i in range(10)]
    got = feed(
        no_helmet_off(),
        [(crafted_track(2, pillion), pillion), (crafted_track(1, whole), whole)],
        range(1, 10),
    )
    assert passengers(got) == [2]


def test_a_vehicle_queued_behind_another_is_a_vehicle_of_its_own() -> None:
    """Frontal camera: the farther vehicle's box overlaps the nearer one's, but its people's heads are
    above the nearer box: two vehicles, two passenger events. Side by side (boxes apart): two as well."""
    near = [
        vehicle_point(i, (120, 200, 280, 620), [(160, 205, 215, 265), (215, 200, 265, 258)])
        for i in range(10)
    ]
    far = [
        vehicle_point(i, (140, 90, 260, 400), [(165, 92, 200, 130), (200, 95, 235, 133)]) for i in range(10)
    ]
    beside = [
        vehicle_point(i, (300, 200, 460, 620), [(340, 205, 395, 265), (395, 200, 445, 258)])
        for i in range(10)
    ]
    got = feed(
        no_helmet_off(),
        [(crafted_track(1, near), near), (crafted_track(2, far), far), (crafted_track(3, beside), beside)],
        range(1, 10),
    )
    assert sorted(passengers(got)) == [1, 2, 3]


def test_a_vehicle_tracked_again_after_a_gap_is_reported_once_another_is_not_taken_for_it() -> None:
    """The vehicle's track is lost at 0.9 s and a new one starts at 1.2 s where it would be by then (it moves
    100 px/s to the right): the same vehicle. A vehicle starting elsewhere after the gap is another one."""

    def moving(i: int, x: float) -> TrackPoint:
        dx = x + 10 * i
        heads = [(h[0] + dx, h[1], h[2] + dx, h[3]) for h in (DRIVER_AT, PILLION_AT)]
        return vehicle_point(i, (120 + dx, 90, 260 + dx, 500), heads)

    first = [moving(i, 0) for i in range(10)]
    again = [moving(i, 0) for i in range(12, 22)]
    other = [moving(i, 600) for i in range(12, 22)]
    a, b, c = crafted_track(1, first, (100.0, 0.0)), crafted_track(2, again), crafted_track(3, other)
    rules = no_helmet_off()
    got = feed(rules, [(a, first)], range(1, 10))
    got += feed(rules, [(b, again), (c, other)], range(13, 22))
    assert sorted(passengers(got)) == [1, 3]
    # the vehicle guard on its own (the rule set's same-rider guard also follows the driver's head):
    # the new track's first box lies where the lost one's would be, 0.3 s on at its velocity
    guard = SameVehicleGuard(gap_s=2.0)
    guard.reported(a)
    assert guard.same_vehicle(b) == 1 and guard.same_vehicle(c) is None
    assert SameVehicleGuard(gap_s=0.2).same_vehicle(b) is None  # (nothing reported)
    late = SameVehicleGuard(gap_s=0.2)
    late.reported(a)
    assert late.same_vehicle(b) is None  # lost 0.3 s before: longer than the gap allowed


def own_head_point(i: int, head: Box4, p_no_helmet: float) -> TrackPoint:
    """A track following one head (the pillion's own rider box: its only occupant is that head)."""
    box = (head[0] - 40, head[1] - 5, head[2] + 40, head[1] + 240)
    return TrackPoint(
        i * 0.1,
        T0 + timedelta(seconds=i * 0.1),
        box,
        0.9,
        "rider",
        None,
        None,
        True,
        head,
        0.9,
        p_no_helmet,
        occupants=(OccupantHead(head, 0.9, p_no_helmet),),
    )


def test_a_reported_person_is_handed_on_to_the_track_that_follows_their_head() -> None:
    """Thaigate approach clip (looked at): the bare-headed pillion's own box reports her (track 2), ends,
    and a new box on the same head (track 3, seen with track 2 for two frames) decides again once
    track 2 is gone: the same person, not reported twice. Another bare head elsewhere is reported."""
    cfg = parse_config({"rules": {"passenger": {"enabled": False}}})
    rules = RuleSet.from_config(cfg.rules, cfg.track.motion_window_s)
    pillion: Box4 = (195.0, 95.0, 240.0, 150.0)
    a_pts = [own_head_point(i, pillion, 0.9) for i in range(10)]
    b_pts = [
        own_head_point(i, (pillion[0] + 2, pillion[1] + 1, pillion[2] + 2, pillion[3] + 1), 0.9)
        for i in range(8, 20)
    ]
    c_pts = [own_head_point(i, (600.0, 95.0, 645.0, 150.0), 0.9) for i in range(8, 20)]
    a, b, c = crafted_track(2, a_pts), crafted_track(3, b_pts), crafted_track(4, c_pts)
    got = feed(rules, [(a, a_pts)], range(1, 8))
    got += feed(rules, [(a, a_pts), (b, b_pts), (c, c_pts)], range(8, 20))
    assert sorted(v.track_id for v in got if v.type == ViolationType.no_helmet) == [2, 4]


def test_a_pillion_judged_by_her_own_box_is_named_the_passenger() -> None:
    """Her own rider box sees only her and decides first (as its 'driver'); in that frame the vehicle's
    track shows both people moving left, she sits behind: the event says passenger, boxes both heads and
    takes her face from her own track (judged_own_head). The vehicle's own judgement of her is the same
    person and is not reported again."""
    cfg = parse_config({"rules": {"passenger": {"enabled": False}}})
    rules = RuleSet.from_config(cfg.rules, cfg.track.motion_window_s)

    def at(box: Box4, i: int) -> Box4:
        return (box[0] - 20 * i, box[1], box[2] - 20 * i, box[3])

    def vehicle(i: int) -> TrackPoint:
        heads = [OccupantHead(at(DRIVER_AT, i), 0.9, 0.1)] + (
            [OccupantHead(at(PILLION_AT, i), 0.9, 0.9)] if i >= 3 else []
        )
        return TrackPoint(
            i * 0.1,
            T0 + timedelta(seconds=i * 0.1),
            at((120.0, 90.0, 280.0, 500.0), i),
            0.9,
            "rider",
            None,
            None,
            True,
            heads[0].box,
            0.9,
            0.1,
            occupants=tuple(heads),
        )

    u_pts = [vehicle(i) for i in range(12)]
    t_pts = [own_head_point(i, at(PILLION_AT, i), 0.9) for i in range(12)]
    t, u = crafted_track(2, t_pts, (-200.0, 0.0)), crafted_track(1, u_pts, (-200.0, 0.0))
    got = [
        v for v in feed(rules, [(t, t_pts), (u, u_pts)], range(1, 12)) if v.type == ViolationType.no_helmet
    ]
    assert [(v.track_id, v.detail["role"]) for v in got] == [(2, "passenger")]
    d = got[0].detail
    assert d["judged_own_head"] is True and d["vehicle_track"] == 1
    assert len(str(d["occupant_boxes"]).split(";")) == 2
