"""anqi_tools/eventtruth.py: events matched to the clip's by-eye truth (the figures issue 17 is judged by),
on the truth file that ships beside the demo clip (the same as ../shared/video's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import anqi_tools.eventtruth as et

ROOT = Path(__file__).resolve().parents[1]
TRUTH = ROOT / "anqi_tools" / "demo" / "bikelane-cyclists.truth.yaml"


def truth(backwards: bool = False) -> Any:
    return et.load_truth(TRUTH, et.positions_file(TRUTH), backwards=backwards)


def event(
    typ: str,
    t_s: float,
    head_at: tuple[float, float, float] | None,
    dist: float = 20.0,
    face: tuple[float, tuple[float, float, float]] | None = None,
) -> dict[str, Any]:
    d: dict = {"t_s": t_s}
    if head_at is not None:
        cx, cy, w = head_at
        d["head_box"] = f"{cx - w / 2},{cy - w / 2},{cx + w / 2},{cy + w / 2}"
    found = face is not None
    if face is not None:
        ft, (fx, fy, fw) = face
        d["face_box"] = f"{fx - fw / 3},{fy - fw / 3},{fx + fw / 3},{fy + fw / 3}"
        d["face_t_s"] = ft
    return {
        "event_id": f"{typ}-{t_s}",
        "violation_type": typ,
        "zone_distance_m": dist,
        "face": {"found": found},
        "detail": d,
    }


def test_shared_truth_file_reads_with_every_rider_placed() -> None:
    tr = truth()
    assert [r.id for r in tr.riders] == ["helmeted-woman", "teal-jacket", "white-tshirt"]
    assert tr.expected["no_helmet"] == ["teal-jacket", "white-tshirt"] and tr.expected["wrong_way"] == []
    for r in tr.riders:  # the head track covers the seconds the truth says the rider is visible
        assert r.head_track[0][0] <= r.visible_s[0] + 1.0 and r.head_track[-1][0] >= r.visible_s[1] - 0.4


def test_played_backwards_mirrors_time_and_expects_wrong_way_of_everyone() -> None:
    fwd, rev = truth(), truth(backwards=True)
    assert sorted(rev.expected["wrong_way"]) == ["helmeted-woman", "teal-jacket", "white-tshirt"]
    teal_f, teal_r = fwd.rider("teal-jacket"), rev.rider("teal-jacket")
    assert teal_r.head_at(fwd.duration_s - 3.6) == pytest.approx(teal_f.head_at(3.6))


def test_perfect_run_scores_true_events_with_the_right_faces() -> None:
    tr = truth()
    teal = tr.rider("teal-jacket").head_at(3.6)
    white = tr.rider("white-tshirt").head_at(6.5)
    s = et.match_events(
        [
            event("no_helmet", 3.6, teal, face=(3.8, tr.rider("teal-jacket").head_at(3.8))),
            event("no_helmet", 6.5, white, face=(6.8, tr.rider("white-tshirt").head_at(6.8))),
        ],
        tr,
    )
    assert s.row() == {
        "true": 2,
        "missed": 0,
        "duplicated": 0,
        "false": 0,
        "outside_band": 0,
        "wrong_face": 0,
        "no_face": 0,
    }
    assert s.perfect


def test_broken_track_reported_twice_is_a_duplicate_and_a_head_on_nobody_is_false() -> None:
    tr = truth()
    teal = tr.rider("teal-jacket")
    s = et.match_events(
        [
            event("no_helmet", 3.4, teal.head_at(3.4)),
            event("no_helmet", 3.9, teal.head_at(3.9)),
            # a head found in the trees above the teal jacket (what the demo once judged): nobody's
            event("no_helmet", 3.5, (130.0, 46.0, 30.0)),
        ],
        tr,
    )
    assert [m.verdict for m in s.events] == ["true", "false", "duplicated"]
    assert s.missed_which == ["no_helmet:white-tshirt"] and s.no_face == 1


def test_decision_outside_the_band_and_a_bystanders_face_are_counted() -> None:
    tr = truth(backwards=True)
    t = tr.duration_s - 5.5  # the white t-shirt rider, riding away
    white = tr.rider("white-tshirt").head_at(t)
    woman_t = tr.duration_s - 2.0
    s = et.match_events(
        [
            event(
                "wrong_way", t, white, dist=31.2, face=(woman_t, tr.rider("helmeted-woman").head_at(woman_t))
            )
        ],
        tr,
    )
    assert s.true == 1 and s.outside_band == 1 and s.wrong_face == 1
    assert set(s.missed_which) == {
        "wrong_way:helmeted-woman",
        "wrong_way:teal-jacket",
        "no_helmet:teal-jacket",
        "no_helmet:white-tshirt",
    }


def test_expected_events_of_a_rule_that_is_off_are_not_missed() -> None:
    tr = truth(backwards=True)
    s = et.match_events([], tr, rules={"no_helmet"})
    assert s.missed_which == ["no_helmet:teal-jacket", "no_helmet:white-tshirt"]
