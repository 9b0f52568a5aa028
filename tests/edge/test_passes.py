"""Pass counters (the heartbeat's riders through the zone per interval) and their wire form."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from anqi_contract import protocol as P
from edge.passes import PASSES_FILE, KeptPasses, PassCounter

T0 = datetime(2026, 12, 5, 8, 0, tzinfo=timezone.utc)  # an interval boundary (300 s)


def test_a_track_counts_once_in_the_interval_it_entered_and_its_violation_follows_it() -> None:
    c = PassCounter("point-1", 300, keep=3)
    for i in range(10):  # track 1 seen on ten frames: one rider
        c.seen_in_zone(1, T0 + timedelta(seconds=290 + i))
    c.seen_in_zone(2, T0 + timedelta(seconds=10))
    c.seen_in_zone(3, T0 + timedelta(seconds=310))
    c.violated(1, "no_helmet")  # decided at 08:05:02, counts where track 1 entered (08:00 interval)
    c.violated(1, "wrong_way")  # a second violation of the same rider: still one violator
    c.violated(3, "red_light")
    c.violated(99, "no_helmet")  # never inside the zone: not counted
    snap = c.snapshot()
    assert [(p["start"] - T0.timestamp(), p["riders"], p["violators"], p["no_helmet"]) for p in snap] == [
        (0, 2, 1, 1),
        (300, 1, 1, 0),
    ]
    hb = P.Heartbeat(device_id="d", time=0, uptime_s=1, queue_depth=0, passes=snap)  # type: ignore[arg-type]
    back = P.decode_heartbeat(P.encode_heartbeat(hb))
    assert back.passes == hb.passes and back.passes[0].point_id == "point-1"


def test_the_ring_keeps_the_last_intervals_and_forgets_their_tracks() -> None:
    c = PassCounter("p", 60, keep=2)
    for k in range(5):
        c.seen_in_zone(k, T0 + timedelta(minutes=k))
    assert [p["riders"] for p in c.snapshot()] == [1, 1] and len(c._track_interval) == 2
    c.violated(0, "no_helmet")  # its interval left the ring
    assert sum(p["violators"] for p in c.snapshot()) == 0
    c.seen_in_zone(7, T0 - timedelta(hours=1))  # a replayed file starting earlier: sorted in, then dropped
    assert [p["start"] for p in c.snapshot()] == sorted(p["start"] for p in c.snapshot())


@pytest.mark.parametrize(
    "bad,where",
    [
        ({"riders": 1, "violators": 2}, "violators"),
        ({"riders": 2, "violators": 1, "no_helmet": 2}, "no_helmet"),
        ({"riders": -1}, "riders"),
        ({"riders": 1, "end": 0.0}, "end must be after start"),
    ],
)
def test_inconsistent_counters_are_refused_naming_the_field(bad: dict[str, float], where: str) -> None:
    p = {"point_id": "p", "start": 600.0, "end": 900.0, **bad}
    hb = {"v": 1, "device_id": "d", "time": 0, "uptime_s": 1, "queue_depth": 0, "passes": [p]}
    import json

    with pytest.raises(P.ProtocolError, match=where):
        P.decode_heartbeat(json.dumps(hb).encode())


def test_counters_survive_a_restart_of_the_edge(tmp_path: Path) -> None:
    state = tmp_path / "passes.json"
    c = PassCounter("point-1", 300, keep=12)
    for k in range(5):
        c.seen_in_zone(k, T0 + timedelta(seconds=10 * k))
    c.violated(0, "no_helmet")
    c.seen_in_zone(9, T0 - timedelta(hours=2))  # sorted in, then older than the ring's hour at restart
    c.save(state)
    again = PassCounter("point-1", 300, keep=12)
    assert again.restore(state, T0 + timedelta(minutes=3)) == 1
    # the restarted edge goes on counting the same interval (tracks start again at 0: new riders)
    again.seen_in_zone(0, T0 + timedelta(minutes=4))
    again.violated(0, "wrong_way")
    assert [(p["riders"], p["violators"], p["no_helmet"]) for p in again.snapshot()] == [(6, 2, 1)]
    # another point's or interval length's file restores nothing
    assert PassCounter("point-2", 300).restore(state, T0) == 0
    assert PassCounter("point-1", 60).restore(state, T0) == 0
    state.write_text("{torn")
    with pytest.raises(ValueError):
        PassCounter("point-1", 300).restore(state, T0)


def test_a_live_run_keeps_its_counters_in_the_data_dir_and_a_replay_keeps_none(tmp_path: Path) -> None:
    live = KeptPasses(PassCounter("point-1", 300, keep=12), tmp_path, keep=True)
    assert live.restore(T0) == 0  # no file yet: counting starts from zero
    live.counter.seen_in_zone(1, T0 + timedelta(seconds=5))
    assert live.heartbeat_info() == {"passes": live.counter.snapshot()}
    assert not (tmp_path / PASSES_FILE).exists()  # the heartbeat writes the file every few minutes only
    live.save()  # at stop: always
    again = KeptPasses(PassCounter("point-1", 300, keep=12), tmp_path, keep=True)
    assert again.restore(T0 + timedelta(minutes=1)) == 1 and again.counter.snapshot()[0]["riders"] == 1
    (tmp_path / PASSES_FILE).write_text("{torn")
    assert KeptPasses(PassCounter("point-1", 300), tmp_path, keep=True).restore(T0) == 0  # logged, from zero
    replay = KeptPasses(PassCounter("point-1", 300), tmp_path / "replay", keep=False)
    replay.counter.seen_in_zone(1, T0)
    replay.save()
    assert replay.restore(T0) == 0 and not (tmp_path / "replay").exists()
