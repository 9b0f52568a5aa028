"""A full disk is an alarm, not a crash (issue 17), on a real small file system (a tmpfs mounted for
the test; skipped where mounting is not allowed): the daemon starts on a full disk, keeps detecting and
committing events (the reserve file is released), `anqi-edge status` exits non-zero with the alarm even
when health.json cannot be rewritten, and `validate` counts what the outbox already holds."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge.config import load_config
from edge.relay import check_config as relay_check

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "examples" / "bikelane-cyclists.yaml"
VIDEO = ROOT.parent / "shared" / "video" / "bikelane-cyclists.mp4"


def _mount_tmpfs(size_mb: int) -> Path | None:
    if os.geteuid() != 0:
        return None
    mnt = Path(tempfile.mkdtemp(prefix="anqi-smallfs-"))
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode:
        mnt.rmdir()
        return None
    return mnt


@pytest.fixture()
def small_fs() -> Iterator[Path]:
    mnt = _mount_tmpfs(24)
    if mnt is None:
        pytest.skip("needs root and permission to mount a tmpfs (a real small file system)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        mnt.rmdir()


def fill(fs: Path) -> None:
    """Fill the file system to the last block."""
    fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (1 << 20, 4096, 512):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)


def site(fs: Path, tmp_path: Path, **outbox: object) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["device"]["data_dir"] = str(fs / "data")
    data["source"]["uri"] = str(VIDEO)
    data["speaker"] = {"enabled": False}
    data.setdefault("relay", {}).setdefault("outbox", {}).update(
        {"max_disk_mb": 12, "reserve_mb": 6, **outbox}
    )
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def anqi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.skipif(not VIDEO.is_file(), reason=f"needs {VIDEO}")
def test_daemon_started_on_a_full_disk_keeps_detecting_and_status_raises_the_alarm(
    small_fs: Path, tmp_path: Path
) -> None:
    cfg = site(small_fs, tmp_path)
    first = anqi("run", "--config", str(cfg), "--until-eof")  # a normal day: the reserve is made
    assert first.returncode == 0, first.stderr[-2000:]
    assert (small_fs / "data" / "reserve.bin").stat().st_size == 6 * 1024 * 1024
    assert (small_fs / "data" / "health.alarm").is_file()
    fill(small_fs)  # something else fills the disk (logs, a stuck backlog)
    assert os.statvfs(small_fs).f_bavail == 0

    second = anqi("run", "--config", str(cfg), "--until-eof")
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-3000:]
    assert "msg=disk_reserve_released" in out
    assert "msg=violation " in out and "msg=event_stored" in out, "detection and events go on"
    assert not (small_fs / "data" / "reserve.bin").exists()

    status = anqi("status", "--config", str(cfg))
    assert status.returncode == 1
    assert "disk_full" in status.stdout + status.stderr

    # validate (the unit's ExecStartPre) still lets the daemon restart: what the outbox holds is its own
    problems = relay_check(load_config(cfg))
    assert not [p for p in problems if "max_disk_mb" in p], problems
    too_big = relay_check(load_config(site(small_fs, tmp_path, max_disk_mb=100)))
    assert any("100 MB budget" in p and "holds only" in p for p in too_big), too_big


@pytest.mark.skipif(not VIDEO.is_file(), reason=f"needs {VIDEO}")
def test_status_reads_the_alarm_beacon_when_health_json_cannot_be_rewritten(
    small_fs: Path, tmp_path: Path
) -> None:
    from edge.health import Health
    from edge.relay import AlarmBeacon

    data = small_fs / "data"
    data.mkdir()
    h = Health(data / "health.json", "dev-1")
    h.set("daemon", "up", "running")
    h.write()  # the last health.json that made it to disk says all is well
    beacon = AlarmBeacon(data)
    beacon.allocate()
    fill(small_fs)
    h.alarm("disk_full", "file system full")
    with pytest.raises(OSError):
        h.write()
    assert beacon.write(dict(h.snapshot()["alarms"])), "the beacon is overwritten in place on a full disk"
    r = anqi("status", "--health-file", str(data / "health.json"))
    assert r.returncode == 1 and "disk_full" in r.stdout + r.stderr
