"""Tracker: stable ids across crafted detections, two-pass association, closing, head attachment."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from edge.config.track import TrackConfig
from edge.detect.rider import FrameDetections as Dets  # what the tracker is fed
from edge.track import RiderTracker, TrackerUpdate, attach_heads, iou_matrix

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)


def riders(*boxes_scores: tuple[Sequence[float], float]) -> Dets:
    return Dets(
        np.array([b for b, _ in boxes_scores], np.float32).reshape(-1, 4),
        np.array([s for _, s in boxes_scores], np.float32),
    )


def step(tr: RiderTracker, dets: Dets, i: int, dt: float = 0.125) -> TrackerUpdate:
    return tr.update(dets, i * dt, T0 + timedelta(seconds=i * dt), (1280, 720))


def test_iou_matrix() -> None:
    iou = iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0]])


def test_two_crossing_riders_keep_their_ids() -> None:
    tr = RiderTracker(TrackConfig(min_hits=2))
    seen: dict[int, list[float]] = {}
    for i in range(30):
        a = [100 + 20 * i, 300, 160 + 20 * i, 420]  # left -> right
        b = [700 - 20 * i, 310, 760 - 20 * i, 430]  # right -> left, they pass each other
        upd = step(tr, riders((a, 0.9), (b, 0.8)), i)
        for t in upd.active:
            assert t.track_id is not None  # confirmed tracks have ids
            seen.setdefault(t.track_id, []).append(t.last.box[0])
    assert sorted(seen) == [1, 2]
    xs1, xs2 = (np.array(v) for v in seen.values())
    # each id moves monotonically in its own direction: ids did not swap while crossing
    assert (np.diff(xs1) > 0).all() and (np.diff(xs2) < 0).all()


def test_min_hits_delays_confirmation_and_single_false_positive_never_gets_an_id() -> None:
    tr = RiderTracker(TrackConfig(min_hits=3))
    assert step(tr, riders(([0, 0, 50, 100], 0.9)), 0).active == []
    assert step(tr, riders(([2, 0, 52, 100], 0.9), ([900, 0, 950, 100], 0.9)), 1).active == []
    upd = step(tr, riders(([4, 0, 54, 100], 0.9)), 2)
    assert [t.track_id for t in upd.active] == [1]
    upd = step(tr, riders(([6, 0, 56, 100], 0.9)), 3)
    assert [t.track_id for t in upd.active] == [1]


def test_low_confidence_detection_extends_but_never_starts_a_track() -> None:
    cfg = TrackConfig(high_conf=0.5, low_conf=0.1, min_hits=1)
    tr = RiderTracker(cfg)
    step(tr, riders(([100, 100, 160, 220], 0.9)), 0)
    upd = step(tr, riders(([104, 100, 164, 220], 0.2)), 1)  # occluded: weak detection, same rider
    assert [t.track_id for t in upd.active] == [1]
    upd = step(tr, riders(([500, 100, 560, 220], 0.3)), 2)  # weak and nowhere near: not a new track
    assert upd.active == []


def test_weak_detections_never_confirm_a_tentative_track() -> None:
    """min_hits counts confident detections (ByteTrack): one detection at the edge of high_conf and
    weak ones after it (a windscreen scored 0.50, then 0.46-0.49) make no track; a confirmed track is
    still carried through weak ones."""
    cfg = TrackConfig(high_conf=0.5, low_conf=0.15, min_hits=2)
    tr = RiderTracker(cfg)
    assert step(tr, riders(([100, 100, 160, 220], 0.5)), 0).active == []
    for i, s in enumerate((0.49, 0.47, 0.46), 1):
        assert step(tr, riders(([100 + 4 * i, 100, 160 + 4 * i, 220], s)), i).active == []
    tr = RiderTracker(cfg)
    step(tr, riders(([100, 100, 160, 220], 0.5)), 0)
    assert [t.track_id for t in step(tr, riders(([104, 100, 164, 220], 0.6)), 1).active] == [1]
    for i, s in enumerate((0.49, 0.3), 2):
        upd = step(tr, riders(([100 + 4 * i, 100, 160 + 4 * i, 220], s)), i)
        assert [t.track_id for t in upd.active] == [1]


def heads_only(box: Sequence[float], score: float) -> Dets:
    e = np.zeros((0, 4), np.float32)
    return Dets(
        e,
        np.zeros(0, np.float32),
        np.array([box], np.float32),
        np.array([score], np.float32),
        np.array([0.9], np.float32),
    )


def test_a_weak_second_look_keeps_a_tentative_head_track_until_a_confident_one_confirms_it() -> None:
    """The demo's teal-jacket head on emulated arm64 scored 0.61, 0.49, 0.40, 0.72 (x86: 0.61, 0.54, ...):
    ByteTrack dropped the tentative track at the 0.49 and started again two frames later, a frame before she
    left the band. A weak detection of the same head keeps a tentative track (and its observations) alive;
    only confident ones count towards min_hits, so weak ones alone still confirm nothing."""
    cfg = TrackConfig(high_conf=0.5, low_conf=0.15, min_hits=2)
    tr = RiderTracker(cfg)
    for i, s in enumerate((0.61, 0.49, 0.40)):
        assert step(tr, heads_only([130 + 12 * i, 70, 160 + 12 * i, 100], s), i, dt=0.1).active == []
    upd = step(tr, heads_only([166, 68, 198, 100], 0.72), 3, dt=0.1)
    assert [t.track_id for t in upd.active] == [1]
    assert len(upd.active[0].head_votes(in_zone_only=False)) == 4  # the weak looks' helmet votes are kept
    tr = RiderTracker(cfg)  # a windscreen: one detection at the edge, weak ones after it
    for i, s in enumerate((0.5, 0.49, 0.47, 0.46, 0.48)):
        assert step(tr, heads_only([300 + 2 * i, 80, 330 + 2 * i, 110], s), i, dt=0.1).active == []


def test_lost_track_is_recovered_within_max_lost_and_closed_after() -> None:
    tr = RiderTracker(TrackConfig(min_hits=1, max_lost_s=0.5))
    for i in range(4):
        step(tr, riders(([100 + 10 * i, 100, 160 + 10 * i, 220], 0.9)), i)
    # missed for 3 frames (0.375 s), then seen where constant velocity predicts it
    for i in range(4, 7):
        assert step(tr, Dets(), i).active == []
    upd = step(tr, riders(([170, 100, 230, 220], 0.9)), 7)
    assert [t.track_id for t in upd.active] == [1]
    closed = []
    for i in range(8, 14):
        closed += step(tr, Dets(), i).closed
    assert [t.track_id for t in closed] == [1]
    assert tr.tracks == []


def test_heads_attach_to_the_rider_box_around_them() -> None:
    d = Dets(
        riders=np.array([[100, 100, 200, 400], [400, 100, 500, 400]], np.float32),
        rider_scores=np.array([0.9, 0.9], np.float32),
        heads=np.array([[430, 105, 470, 150], [130, 110, 170, 150]], np.float32),
        head_scores=np.array([0.8, 0.7], np.float32),
        head_no_helmet=np.array([0.9, 0.1], np.float32),
    )
    out = attach_heads(d, TrackConfig())
    assert len(out) == 2
    assert out[0].no_helmet == pytest.approx(0.1) and out[1].no_helmet == pytest.approx(0.9)


@pytest.mark.parametrize("head_only, expected", [(True, 2), (False, 1)])
def test_head_without_rider_box_is_a_rider_of_its_own_when_configured(head_only: bool, expected: int) -> None:
    d = Dets(
        riders=np.array([[100, 100, 200, 400]], np.float32),
        rider_scores=np.array([0.9], np.float32),
        heads=np.array([[600, 100, 640, 150]], np.float32),
        head_scores=np.array([0.8], np.float32),
        head_no_helmet=np.array([0.9], np.float32),
    )
    out = attach_heads(d, TrackConfig(head_only_tracks=head_only, head_to_body=6.0))
    assert len(out) == expected
    if head_only:
        body = out[1].box
        assert out[1].kind == "head" and body[3] == pytest.approx(100 + 6.0 * 50)
        assert (body[0] + body[2]) / 2 == pytest.approx(620)


def test_helmet_votes_accumulate_per_track() -> None:
    tr = RiderTracker(TrackConfig(min_hits=1))
    for i in range(5):
        d = Dets(
            riders=np.array([[100 + i, 100, 200 + i, 400]], np.float32),
            rider_scores=np.array([0.9], np.float32),
            heads=np.array([[130 + i, 110, 170 + i, 150]], np.float32)
            if i != 2
            else np.zeros((0, 4), np.float32),
            head_scores=np.array([0.8] if i != 2 else [], np.float32),
            head_no_helmet=np.array([0.7] if i != 2 else [], np.float32),
        )
        step(tr, d, i)
    (t,) = tr.tracks
    votes = t.head_votes(in_zone_only=False)
    assert len(votes) == 4 and all(v.no_helmet == pytest.approx(0.7) for v in votes)
    assert t.kind == "rider" and len(t.history) == 5


def test_tracks_carry_ground_points_zone_membership_and_speed() -> None:
    from edge.zone import CaptureZone, GroundMapper

    # a camera whose image rows map to ground distance: v = 66 + 3960 / y, u = 320 + 2640 x / y (640x360)
    ground = [(-1.5, 16.0), (1.5, 16.0), (1.5, 40.0), (-1.5, 40.0)]
    image = [(320 + 2640 * x / y, 66 + 3960 / y) for x, y in ground]
    zone = CaptureZone(GroundMapper.from_points(image, ground, (640, 360)), near_m=15, far_m=25)
    tr = RiderTracker(TrackConfig(min_hits=1), zone)
    dt = 0.1
    for i in range(40):
        y = 35.0 - 5.0 * dt * i  # riding towards the camera at 5 m/s
        v = 66 + 3960 / y
        h = 1.8 * 2640 / y  # a 1.8 m rider
        box = [320 - h / 6, v - h, 320 + h / 6, v]
        tr.update(riders((box, 0.9)), i * dt, T0 + timedelta(seconds=i * dt), (640, 360), mono=100.0 + i * dt)
    (t,) = tr.tracks
    dist = np.array([p.distance_m for p in t.history])
    inside = np.array([p.in_zone for p in t.history])
    # ground points come from the filtered boxes: a few cm of lag while the box accelerates in the image
    np.testing.assert_allclose(dist, 35.0 - 0.5 * np.arange(40), atol=0.05)
    assert (inside == ((dist >= 15) & (dist <= 25))).all() and 19 <= inside.sum() <= 21
    m = t.motion(1.0)
    assert m is not None and m.speed_mps == pytest.approx(5.0, rel=0.01) and abs(m.heading_deg - 180) < 0.5
    assert t.last.mono == pytest.approx(103.9)


def test_a_track_does_not_jump_to_an_overlapping_box_of_another_size() -> None:
    tr = RiderTracker(TrackConfig(min_hits=1, max_scale_change=1.6))
    for i in range(3):
        step(tr, riders(([100, 100, 200, 400], 0.9)), i)
    # a far rider's small box inside the near one's: overlapping, but a third of its height
    upd = step(tr, riders(([120, 150, 160, 250], 0.9)), 3)
    assert [t.track_id for t in upd.active] == [2]  # a new track, not track 1
    upd = step(tr, riders(([102, 98, 203, 410], 0.9)), 4)
    assert 1 in [t.track_id for t in upd.active]


@pytest.mark.parametrize(
    "det, cut",
    [
        (
            Dets(np.array([[100, 100, 200, 359.5]], np.float32), np.array([0.9], np.float32)),
            True,
        ),  # wheels below the frame
        (Dets(np.array([[100, 100, 200, 300]], np.float32), np.array([0.9], np.float32)), False),
        (
            Dets(
                heads=np.array([[300, 0, 360, 50]], np.float32),
                head_scores=np.array([0.9], np.float32),
                head_no_helmet=np.array([0.9], np.float32),
            ),
            True,
        ),  # head cut at the top: its height is not the head's
        (
            Dets(
                heads=np.array([[300, 5, 340, 50]], np.float32),
                head_scores=np.array([0.9], np.float32),
                head_no_helmet=np.array([0.9], np.float32),
            ),
            False,
        ),
    ],
)
def test_points_cut_by_the_frame_edge_get_no_ground_position(det: Dets, cut: bool) -> None:
    from edge.zone import CaptureZone, GroundMapper

    ground = [(-1.5, 16.0), (1.5, 16.0), (1.5, 40.0), (-1.5, 40.0)]
    image = [(320 + 2640 * x / y, 66 + 3960 / y) for x, y in ground]
    tr = RiderTracker(
        TrackConfig(min_hits=1), CaptureZone(GroundMapper.from_points(image, ground, (640, 360)))
    )
    upd = tr.update(det, 0.0, T0, (640, 360))
    (t,) = upd.active
    assert (t.last.ground is None) is cut
    assert t.last.no_helmet is None or t.last.no_helmet == pytest.approx(
        0.9
    )  # the helmet vote is kept either way


def heads(*boxes_scores: tuple[Sequence[float], float], no_helmet: float = 0.9) -> Dets:
    n = len(boxes_scores)
    return Dets(
        heads=np.array([b for b, _ in boxes_scores], np.float32).reshape(-1, 4),
        head_scores=np.array([s for _, s in boxes_scores], np.float32),
        head_no_helmet=np.full(n, no_helmet, np.float32),
    )


def test_head_only_rider_keeps_its_head_when_a_false_head_sits_just_above_it() -> None:
    # a rider's head moving right under a static head-like blob (foliage) one head height above it:
    # their extrapolated bodies overlap almost entirely, their heads do not
    tr = RiderTracker(TrackConfig(min_hits=2, head_only_tracks=True))
    ids: dict[int, list[float]] = {}
    for i in range(16):
        x = 140 + 6 * i
        dets = heads(([x, 70, x + 26, 96], 0.6), ([118 + (i % 2) * 3, 36, 146, 64], 0.55))
        for t in step(tr, dets, i, dt=0.1).active:
            assert t.track_id is not None and t.last.head_box is not None
            ids.setdefault(t.track_id, []).append(t.last.head_box[0])
    moving = [xs for xs in ids.values() if xs[-1] - xs[0] > 50]
    assert len(moving) == 1 and len(moving[0]) >= 14  # one track follows the rider all the way


def test_rider_missed_by_the_detector_for_half_a_second_keeps_its_track() -> None:
    tr = RiderTracker(TrackConfig(min_hits=2, head_only_tracks=True, max_lost_s=1.0))
    seen = set()
    for i in range(20):
        if 6 <= i < 11:  # head down / occluded: nothing detected for 0.5 s while the rider moves on
            step(tr, heads(), i, dt=0.1)
            continue
        x = 100 + 12 * i
        for t in step(tr, heads(([x, 60, x + 24, 84], 0.6)), i, dt=0.1).active:
            seen.add(t.track_id)
    assert seen == {1}


def test_a_lost_track_does_not_take_the_head_of_a_rider_followed_up_to_the_last_frame() -> None:
    # A rider (L) stops at x=300 and is hidden from frame 5; another (R) rides leftwards past that spot and
    # slows at frame 9, so the head lands 7 px short of R's prediction and 3 px from where L was lost. L's
    # gate has widened while unseen, so on similarity alone L would win and R lose its track (the reversed
    # demo clip: a receding rider's lost track took the next rider's head at the vanishing point). Tracks
    # seen on the last frame choose first (DeepSORT's matching cascade).
    tr = RiderTracker(TrackConfig(min_hits=2, head_only_tracks=True, max_lost_s=1.5))
    r_id = l_id = None
    for i in range(16):
        xr = 400 - 10 * i if i < 9 else 303 - 8 * (i - 9)
        boxes = [([xr, 100, xr + 24, 124], 0.8)]
        if i < 5:
            boxes.append(([300, 100, 324, 124], 0.8))
        for t in step(tr, heads(*boxes), i, dt=0.1).active:
            assert t.track_id is not None and t.last.head_box is not None
            x = float(t.last.head_box[0])
            if i == 3:
                if abs(x - xr) < 1:
                    r_id = t.track_id
                else:
                    l_id = t.track_id
            if i >= 9:
                assert t.track_id == r_id, f"frame {i}: R's head (x={xr}) went to track {t.track_id}"
                assert abs(x - xr) < 1
    assert r_id is not None and l_id is not None and r_id != l_id


def test_a_hand_below_a_head_makes_no_rider_of_its_own() -> None:
    from edge.track import attach_heads

    head, hand = [200, 60, 226, 88], [198, 140, 224, 166]  # about 3 head heights below, same size
    out = attach_heads(heads((head, 0.6), (hand, 0.5)), TrackConfig(head_only_tracks=True))
    assert [list(d.head_box) for d in out if d.head_box is not None] == [head]


def test_several_boxes_on_one_head_make_one_rider() -> None:
    from edge.track import attach_heads

    # the head detector, the heatmap and the face proposal each box the same head a little differently
    # (hair, face, chin): one rider, on the most confident box
    stacked = heads(([200, 40, 230, 70], 0.45), ([202, 58, 230, 86], 0.66), ([198, 24, 228, 50], 0.39))
    out = attach_heads(stacked, TrackConfig(head_only_tracks=True))
    assert [list(d.head_box) for d in out if d.head_box is not None] == [[202, 58, 230, 86]]
    # two riders side by side at the same distance stay two
    pair = heads(([200, 60, 228, 88], 0.6), ([240, 62, 268, 90], 0.6))
    assert len(attach_heads(pair, TrackConfig(head_only_tracks=True))) == 2


def test_a_loose_box_around_a_head_makes_no_rider_of_its_own() -> None:
    # the demo clip, forwards, 2.9 s (recorded detections): a tight head box (21 px) and a loose one 1.7x its
    # height around it; the two gave teal-jacket two tracks and two no_helmet events
    tight, loose = [110.7, 63.3, 133.4, 84.0], [100.9, 68.2, 144.2, 103.8]
    out = attach_heads(heads((tight, 0.6), (loose, 0.5)), TrackConfig(head_only_tracks=True))
    assert len(out) == 1 and out[0].head_box is not None
    np.testing.assert_allclose(out[0].head_box, tight)  # the more confident box stays
    # a pillion's head beside the driver's, mostly outside the driver's box, stays a head of its own
    driver, pillion = [200, 60, 230, 95], [222, 52, 246, 80]
    both = attach_heads(heads((driver, 0.7), (pillion, 0.6)), TrackConfig(head_only_tracks=True))
    assert len(both) == 2


def test_a_chin_box_hanging_below_a_larger_head_makes_no_rider_of_its_own() -> None:
    from edge.track import attach_heads

    # the bearded rider of the shared clip at 6.7 s: the face proposal boxes the head (44 px), a heatmap
    # box sits on the chin and beard (31 px, centre 0.64 of the head's height lower, overlapping it):
    # too different in size for one box per head, too high to be a hand; it made a second track, which
    # then wandered to the rider's collar and reported him there
    head, chin = [196, 13, 240, 58], [197, 49, 230, 80]
    out = attach_heads(heads((head, 0.57), (chin, 0.65)), TrackConfig(head_only_tracks=True))
    assert [list(d.head_box) for d in out if d.head_box is not None] == [head] and len(out) == 1
    # a second rider's head just behind and lower in the image, not overlapping, stays a rider
    other = [236, 60, 262, 88]
    assert len(attach_heads(heads((head, 0.57), (other, 0.6)), TrackConfig(head_only_tracks=True))) == 2


def test_head_only_rider_is_ranged_from_a_fit_of_its_head_size_not_from_each_box() -> None:
    from edge.zone import CaptureZone, GroundMapper

    # the camera of test_tracks_carry_ground_points_zone_membership_and_speed: v = 66 + 3960 / y
    ground = [(-1.5, 16.0), (1.5, 16.0), (1.5, 40.0), (-1.5, 40.0)]
    image = [(320 + 2640 * x / y, 66 + 3960 / y) for x, y in ground]
    zone = CaptureZone(GroundMapper.from_points(image, ground, (640, 360)), near_m=15, far_m=25)
    cfg = TrackConfig(min_hits=1, head_only_tracks=True, head_to_body=7.5)
    tr = RiderTracker(cfg, zone)
    dist = []
    for i in range(30):
        y = 35.0 - 5.0 * 0.1 * i  # riding towards the camera at 5 m/s
        h = 0.24 * 2640 / y  # a 0.24 m head, its top 1.8 m above the road
        h_box = h * (1.25 if i % 3 == 0 else 1.0)  # every third box drawn 25 % too big
        top = 66 + 3960 / y - 7.5 * h
        box = [320 - h_box / 2, top, 320 + h_box / 2, top + h_box]
        upd = tr.update(heads((box, 0.7)), i * 0.1, T0 + timedelta(seconds=i * 0.1), (640, 360))
        if upd.active and upd.active[0].last.distance_m is not None:
            dist.append(upd.active[0].last.distance_m)
    steps = np.diff(dist[4:])
    # nearer at every frame (0.5 m per frame), never thrown back by a big box; one box at a time would
    # jump 20 % (4-7 m here) every third frame
    assert len(steps) > 20 and (steps < 0).all() and (np.abs(steps) < 1.5).all(), np.round(dist, 1)


def test_a_shoe_at_the_riders_feet_makes_no_rider_of_its_own() -> None:
    from edge.track import attach_heads

    head, shoe = [200, 60, 226, 86], [190, 236, 214, 258]  # about 7 head heights below, same size
    out = attach_heads(heads((head, 0.6), (shoe, 0.5)), TrackConfig(head_only_tracks=True, head_to_body=7.5))
    assert [list(d.head_box) for d in out if d.head_box is not None] == [head] and len(out) == 1


def test_a_rider_lost_longer_than_a_frame_gap_is_relinked_in_the_same_clothes_only() -> None:
    """The detector misses a rider for 0.5 s while they swerve: the new track starts beyond the
    association gate but near where the lost head would be: in the same clothes it is the same rider
    (one id), in other clothes another."""
    import numpy as np

    teal, white = np.zeros(256), np.zeros(256)
    teal[[70, 71]] = [0.6, 0.4]
    white[[3, 2]] = [0.7, 0.3]

    def run(after: np.ndarray) -> set[int]:
        cfg = TrackConfig(
            min_hits=2, head_only_tracks=True, max_lost_s=1.0, head_gate=1.0, head_gate_growth=0.0
        )
        tr = RiderTracker(cfg)
        ids: set[int] = set()
        for i in range(20):
            if 6 <= i < 11:
                step(tr, heads(), i, dt=0.1)
                continue
            x = 100 + 12 * i
            y = 60 if i < 6 else 90  # swerved while unseen: 1.25 head heights off the straight line
            dets = attach_heads(heads(([x, y, x + 24, y + 24], 0.6)), cfg)
            for d in dets:
                d.look = teal if i < 6 else after
            for t in tr.update_detections(dets, i * 0.1, T0 + timedelta(seconds=i * 0.1), (1280, 720)).active:
                assert t.track_id is not None
                ids.add(t.track_id)
        return ids

    assert run(teal) == {1}
    assert run(white) == {1, 2}
