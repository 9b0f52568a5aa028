"""Nothing decided is lost (issue 17): the daemon process is killed with a real SIGKILL at each step
between the rule's decision and the outbox, then started again. The decision is durable at once
(decision.json + violation.jpg, fsync'd before the `violation` log line); after the restart the
event goes to the outbox with the evidence that reached the disk and says what is missing and why.
The development broker the daemon started dies with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from anqi_contract.event import parse_event
from edge.config import load_config
from edge.daemon import EdgeDaemon

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "examples" / "bikelane-cyclists.yaml"
VIDEO = ROOT.parent / "shared" / "video" / "bikelane-cyclists.mp4"
pytestmark = pytest.mark.skipif(not VIDEO.is_file(), reason=f"needs {VIDEO}")


def site_config(tmp_path: Path) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["device"]["data_dir"] = str(tmp_path / "data")
    data["source"]["uri"] = str(VIDEO)
    # unpaced: every sampled frame is detected (capture waits), so a violation is decided however loaded
    # the machine is (paced, a busy CI host dropped 70 of 80 frames and never decided one); the kill still
    # lands on the log line of each step, where a power cut would
    data["source"]["realtime"] = False
    data["speaker"] = {"enabled": False}
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(x) for x in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def run_and_kill_after(cfg: Path, marker: str, timeout: float = 90.0) -> tuple[str, list[int]]:
    """Start `anqi-edge run`, SIGKILL it the moment its log shows ``marker``; its output and the child
    processes it had (the development mosquitto)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--until-eof"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    kids: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:
            lines.append(line)
            kids = kids or children(proc.pid)
            if marker in line:
                proc.send_signal(signal.SIGKILL)
                break
            if time.monotonic() > deadline:
                break
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"never saw {marker!r}:\n" + "".join(lines[-30:])
    return "".join(lines), kids


def event_id_of(line: str) -> str:
    return next(w.split("=", 1)[1] for w in line.split() if w.startswith("event_id="))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("marker", "expect_clip"),
    [("msg=violation ", False), ("msg=clip_written ", True)],
    ids=["killed-after-decision", "killed-after-clip"],
)
def test_killed_between_decision_and_outbox_the_event_is_sent_after_restart(
    tmp_path: Path, marker: str, expect_clip: bool
) -> None:
    cfg = site_config(tmp_path)
    out, kids = run_and_kill_after(cfg, marker)
    work = tmp_path / "data" / "evidence-work"
    decided = [p for p in work.iterdir() if (p / "decision.json").is_file()]
    assert decided, "the decision is on disk the moment it is logged"
    for pid in kids:  # the development broker does not outlive the daemon
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pid), f"child {pid} of the killed daemon still runs"

    again = EdgeDaemon(load_config(cfg), mode="live", relay=False, install_signals=False)
    try:
        assert again.recovered >= len(decided)
        assert not any(p.is_dir() for p in work.iterdir()), "every work folder taken up"
        for folder in decided:
            eid = folder.name
            item = next(i for i in again.outbox.next_pending(limit=1000) if str(i.event_id) == eid)
            ev = parse_event(item.payload)
            names = {m.name for m in ev.media}
            assert "violation.jpg" in names  # the deciding frame was written with the decision
            assert (again.outbox.media_dir / eid / "violation.jpg").stat().st_size > 1000
            missing = set(str(ev.detail["missing_media"]).split(","))
            assert "face.jpg" in missing and not ev.face.found
            assert "stopped" in str(ev.detail["recovered"])
            if expect_clip and eid in out.split(marker, 1)[0] + out.split(marker, 1)[1].split("\n", 1)[0]:
                assert "clip.mp4" in names and "clip.mp4" not in missing
            if "clip.mp4" not in names:
                assert "clip.mp4" in missing and "post-roll" in str(ev.detail.get("clip_note", ""))
        assert json.loads((tmp_path / "data" / "health.json").read_text())  # health file readable
    finally:
        again._shutdown()


@pytest.mark.slow
def test_killed_after_the_commit_the_stored_event_stays_and_nothing_is_recovered_twice(
    tmp_path: Path,
) -> None:
    cfg = site_config(tmp_path)
    out, _ = run_and_kill_after(cfg, "msg=event_stored ")
    stored = event_id_of(next(ln for ln in out.splitlines() if "msg=event_stored " in ln))
    work = tmp_path / "data" / "evidence-work"
    assert not (work / stored).exists()
    again = EdgeDaemon(load_config(cfg), mode="live", relay=False, install_signals=False)
    try:
        pending = [str(i.event_id) for i in again.outbox.next_pending(limit=1000)]
        assert pending.count(stored) == 1
        ev = parse_event(
            next(i.payload for i in again.outbox.next_pending(limit=1000) if str(i.event_id) == stored)
        )
        assert "recovered" not in ev.detail and {"violation.jpg", "clip.mp4"} <= {m.name for m in ev.media}
    finally:
        again._shutdown()
