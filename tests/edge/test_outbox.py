"""Outbox: durable add, crash recovery, states, disk budget and age policy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edge.config.relay import OutboxConfig
from edge.health import Health
from edge.relay.outbox import EventState, Outbox, OutboxError

ROOT = Path(__file__).resolve().parents[2]


def _outbox(tmp_path: Path, health: Health | None = None, **cfg: Any) -> Outbox:
    return Outbox(tmp_path / "outbox", OutboxConfig(**cfg), health)


def _published(ob: Outbox) -> Outbox:
    """What the relay does before central can ack anything: every pending event PUBACKed by the broker."""
    ob.mark_published([i.seq for i in ob.next_pending(limit=10_000)])
    return ob


def test_add_copies_verified_media_and_survives_reopen(tmp_path: Path, make_event: Any) -> None:
    ob = _outbox(tmp_path)
    ev, files = make_event(tmp_path, 1, {"face.jpg": 1234, "clip.mp4": 50_000})
    res = ob.add(ev, files)
    assert res.seq == 1 and not res.duplicate and res.dropped_media == []
    for name, src in files.items():
        assert (ob.media_dir / str(ev.event_id) / name).read_bytes() == src.read_bytes()
        assert src.exists()  # copied, not moved
    ob.close()
    ob = _outbox(tmp_path)
    (item,) = ob.next_pending()
    assert item.event_id == ev.event_id and json.loads(item.payload)["track_id"] == 1
    assert {m.name: m.size for m in item.media_to_send()} == {"face.jpg": 1234, "clip.mp4": 50_000}
    assert ob.stats().pending == 1 and ob.stats().media_bytes == 51_234


def test_add_with_move_removes_the_source_files(tmp_path: Path, make_event: Any) -> None:
    ob = _outbox(tmp_path)
    ev, files = make_event(tmp_path, 0, {"face.jpg": 100})
    ob.add(ev, files, move=True)
    assert not files["face.jpg"].exists()
    assert (ob.media_dir / str(ev.event_id) / "face.jpg").stat().st_size == 100


def test_adding_the_same_event_twice_is_a_no_op(tmp_path: Path, make_event: Any) -> None:
    ob = _outbox(tmp_path)
    ev, files = make_event(tmp_path, 0)
    first = ob.add(ev, files)
    again = ob.add(ev, files)
    assert again.duplicate and again.seq == first.seq and ob.stats().pending == 1


def test_media_that_do_not_match_the_event_are_refused_and_nothing_is_stored(
    tmp_path: Path, make_event: Any
) -> None:
    ob = _outbox(tmp_path)
    ev, files = make_event(tmp_path, 0, {"face.jpg": 100, "clip.mp4": 100})
    with pytest.raises(ValueError, match="do not match the event's media list"):
        ob.add(ev, {"face.jpg": files["face.jpg"]})
    files["clip.mp4"].write_bytes(b"tampered")
    with pytest.raises(ValueError, match="SHA-256 .* does not match"):
        ob.add(ev, files)
    assert ob.stats().pending == 0 and list(ob.media_dir.iterdir()) == []


def test_delivery_order_states_and_acks(tmp_path: Path, make_event: Any) -> None:
    health = Health(tmp_path / "h.json", "d")
    ob = _outbox(tmp_path, health, max_resends=1)
    evs = [make_event(tmp_path, i, {"face.jpg": 10})[0:2] for i in range(3)]
    for ev, f in evs:
        ob.add(ev, f)
    items = ob.next_pending()
    assert [i.event_id for i in items] == [e.event_id for e, _ in evs]
    assert [i.event_id for i in ob.next_pending(after_seq=items[0].seq)] == [e.event_id for e, _ in evs[1:]]
    assert ob.mark_published([i.seq for i in items]) == 3
    assert ob.stats().published == 3 and ob.next_pending() == []
    e0, e1, e2 = (e.event_id for e, _ in evs)
    assert ob.mark_acked(e0, media_complete=True) == "acked"
    assert ob.mark_acked(e0, media_complete=True) == "duplicate"
    assert ob.mark_acked(e1, media_complete=False, missing=["face.jpg"]) == "resend"
    (again,) = ob.next_pending()
    assert again.event_id == e1 and [m.name for m in again.media_to_send()] == ["face.jpg"]
    ob.mark_published([again.seq])
    assert ob.mark_acked(e1, media_complete=False, missing=["face.jpg"]) == "gave_up"
    assert f"media_incomplete:{e1}" in health.snapshot()["alarms"]
    assert ob.mark_rejected(e2, "bad point") == "rejected" and ob.state_of(e2) is EventState.rejected
    assert ob.mark_acked("00000000-0000-0000-0000-000000000000", True) == "unknown"
    assert ob.wait_until("acked", 0.1)


def test_unacked_published_events_are_requeued_after_timeout(tmp_path: Path, make_event: Any) -> None:
    ob = _outbox(tmp_path)
    ev, f = make_event(tmp_path, 0)
    ob.add(ev, f)
    ob.mark_published([1])
    assert ob.requeue_unacked(60) == 0
    before = ob.requeued
    assert ob.requeue_unacked(60, now=time.time() + 61) == 1
    assert ob.requeued == before + 1 and ob.state_of(ev.event_id) is EventState.pending
    ob.mark_published([1])  # second publish: the wait doubles
    assert ob.requeue_unacked(60, now=time.time() + 61) == 0
    assert ob.requeue_unacked(60, now=time.time() + 121) == 1


def test_delete_media_on_ack(tmp_path: Path, make_event: Any) -> None:
    ob = _outbox(tmp_path, delete_media_on_ack=True)
    ev, f = make_event(tmp_path, 0, {"face.jpg": 500})
    ob.add(ev, f)
    _published(ob).mark_acked(ev.event_id, True)
    assert not (ob.media_dir / str(ev.event_id)).exists() and ob.stats().media_bytes == 0
    assert ob.media_state(ev.event_id) == {"face.jpg": (False, "acked (delete_media_on_ack)")}


MB = 1024 * 1024


def test_full_budget_evicts_oldest_acked_media_first(tmp_path: Path, make_event: Any) -> None:
    ob = _outbox(tmp_path, max_disk_mb=1.05, delete_media_on_ack=False)
    old = [make_event(tmp_path, i, {"clip.mp4": 400_000}) for i in range(2)]
    for ev, f in old:
        ob.add(ev, f)
    _published(ob).mark_acked(old[0][0].event_id, True)
    ob.mark_acked(old[1][0].event_id, True)
    new, nf = make_event(tmp_path, 9, {"clip.mp4": 300_000})
    res = ob.add(new, nf)
    assert res.dropped_media == []
    assert ob.media_state(old[0][0].event_id)["clip.mp4"] == (False, "disk budget (acked)")
    assert ob.media_state(old[1][0].event_id)["clip.mp4"][0] is True  # only as much as needed
    assert ob.stats().disk_used_bytes <= 1.05 * MB


def test_reject_new_media_policy_keeps_old_evidence_stores_event_and_alarms(
    tmp_path: Path, make_event: Any
) -> None:
    health = Health(tmp_path / "h.json", "d")
    ob = _outbox(tmp_path, health, max_disk_mb=1.2, when_full="reject_new_media")
    old, of = make_event(tmp_path, 0, {"clip.mp4": 700_000})
    ob.add(old, of)
    new, nf = make_event(tmp_path, 1, {"face.jpg": 20_000, "clip.mp4": 700_000})
    res = ob.add(new, nf)
    assert res.dropped_media == ["clip.mp4"]  # the face still fits, the clip does not
    assert ob.media_state(new.event_id) == {
        "face.jpg": (True, None),
        "clip.mp4": (False, "disk budget (new media rejected)"),
    }
    assert ob.media_state(old.event_id)["clip.mp4"] == (True, None)
    assert ob.stats().pending == 2  # the event itself is never dropped
    assert "full" in health.snapshot()["alarms"]["outbox_full"]
    assert ob.stats().disk_used_bytes <= 1.2 * MB


def test_drop_oldest_unsent_media_policy_makes_room_for_new_evidence_and_alarms(
    tmp_path: Path, make_event: Any
) -> None:
    health = Health(tmp_path / "h.json", "d")
    ob = _outbox(tmp_path, health, max_disk_mb=1.2, when_full="drop_oldest_unsent_media")
    old, of = make_event(tmp_path, 0, {"clip.mp4": 700_000})
    ob.add(old, of)
    new, nf = make_event(tmp_path, 1, {"clip.mp4": 700_000})
    assert ob.add(new, nf).dropped_media == []
    assert ob.media_state(old.event_id)["clip.mp4"] == (False, "disk budget (dropped for newer evidence)")
    assert ob.media_state(new.event_id)["clip.mp4"] == (True, None)
    assert ob.stats().pending == 2 and "unsent" in health.snapshot()["alarms"]["outbox_full"]
    # the old event still goes out (without its clip); central's 'missing' for a dropped file ends it
    old_item = ob.next_pending()[0]
    assert old_item.event_id == old.event_id and old_item.media_to_send() == []
    assert _published(ob).mark_acked(old.event_id, media_complete=False, missing=["clip.mp4"]) == "acked"


def test_acked_records_older_than_max_age_are_removed(tmp_path: Path, make_event: Any) -> None:
    ob = _outbox(tmp_path, max_age_days=1)
    a, af = make_event(tmp_path, 0)
    b, bf = make_event(tmp_path, 1)
    ob.add(a, af)
    ob.add(b, bf)
    _published(ob).mark_acked(a.event_id, True)
    assert ob.housekeeping(now=time.time() + 2 * 86400) == 1
    assert ob.state_of(a.event_id) is None and not (ob.media_dir / str(a.event_id)).exists()
    assert ob.state_of(b.event_id) is EventState.published  # not acknowledged: never expired


def test_reopen_removes_half_written_folders_and_orphans(tmp_path: Path, make_event: Any) -> None:
    ob = _outbox(tmp_path)
    ev, f = make_event(tmp_path, 0)
    ob.add(ev, f)
    ob.close()
    (ob.media_dir / ".incoming-x").mkdir()
    (ob.media_dir / "1b4e28ba-2fa1-11d2-883f-0016d3cca427").mkdir()  # renamed into place, row never committed
    ob = _outbox(tmp_path)
    assert sorted(p.name for p in ob.media_dir.iterdir()) == [str(ev.event_id)]
    assert ob.stats().pending == 1


ADDER = r"""
import sys, json, pathlib, uuid, hashlib, os
sys.path.insert(0, sys.argv[1])
from edge.config.relay import OutboxConfig
from anqi_contract.event import ViolationEvent
from edge.relay.outbox import Outbox
root, src = pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
ob = Outbox(root, OutboxConfig())
template = json.loads(sys.argv[4])
i = 0
while True:
    data = os.urandom(30_000)
    f = src / f"clip-{i}.mp4"
    f.write_bytes(data)
    ev = ViolationEvent.model_validate({**template, "event_id": str(uuid.uuid4()), "track_id": i,
        "media": [{"name": "clip.mp4", "kind": "clip", "content_type": "video/mp4", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]})
    ob.add(ev, {"clip.mp4": f}, move=True)
    print(ev.event_id, flush=True)
    i += 1
"""


def test_events_whose_add_returned_survive_kill_9(tmp_path: Path, make_event: Any) -> None:
    ev, _ = make_event(tmp_path, 0, {})
    template = json.loads(ev.to_json())
    src = tmp_path / "src"
    src.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", ADDER, str(ROOT), str(tmp_path / "outbox"), str(src), json.dumps(template)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    confirmed = []
    for line in child.stdout:
        confirmed.append(line.decode().strip())
        if len(confirmed) == 40:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait()
    confirmed += [ln.decode().strip() for ln in child.stdout.readlines()]  # lines already in the pipe
    ob = _outbox(tmp_path)
    items = {str(i.event_id): i for i in ob.next_pending(limit=10_000)}
    assert set(confirmed) <= set(items)
    for eid in confirmed:
        (m,) = items[eid].media_to_send()
        assert m.path.stat().st_size == m.size == 30_000
    assert all(not p.name.startswith(".incoming") for p in ob.media_dir.iterdir())
    assert len(list(ob.media_dir.iterdir())) == len(items)


FULL_DISK = r"""
import sys, json, pathlib, resource, signal
sys.path.insert(0, sys.argv[1])
from edge.config.relay import OutboxConfig
from anqi_contract.event import ViolationEvent
from edge.relay.outbox import Outbox, OutboxError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
ob = Outbox(pathlib.Path(sys.argv[2]), OutboxConfig())
ev = ViolationEvent.model_validate_json(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))  # as if the disk filled up now
try:
    ob.add(ev, {"clip.mp4": pathlib.Path(sys.argv[4])})
except OutboxError as e:
    print("ERR", e)
print("pending", ob.stats().pending, "dirs", len(list(ob.media_dir.iterdir())))
"""


def test_a_disk_that_cannot_take_the_files_gives_a_clear_error_and_no_half_event(
    tmp_path: Path, make_event: Any
) -> None:
    ev, files = make_event(tmp_path, 0, {"clip.mp4": 200_000})
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            FULL_DISK,
            str(ROOT),
            str(tmp_path / "outbox"),
            ev.to_json(),
            str(files["clip.mp4"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "ERR relay.outbox.path: cannot store event" in out.stdout, out.stdout + out.stderr
    assert str(tmp_path / "outbox") in out.stdout
    assert "pending 0 dirs 0" in out.stdout


def test_unwritable_outbox_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutboxError, match="relay.outbox.path: cannot open the outbox"):
        Outbox(blocker / "outbox", OutboxConfig())


def test_write_atomic_replaces_whole_files_and_leaves_no_temporary(tmp_path: Path) -> None:
    from anqi_contract.fsutil import write_atomic

    target = tmp_path / "event.json"
    write_atomic(target, '{"a": "头盔"}')
    assert target.read_text(encoding="utf-8") == '{"a": "头盔"}'
    write_atomic(target, b"\x00\x01", tmp=tmp_path / ".event.tmp", sync_dir=True)
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["event.json"]
