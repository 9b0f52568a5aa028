"""The daemon survives what the field throws at it: a missing model file, a camera that is gone,
a stop request; and it says so in its health file and logs."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from mqtt_helpers import wait_for as _poll

from edge.config import load_config
from edge.daemon import EdgeDaemon, StartupError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "examples" / "bikelane-cyclists.yaml"
VIDEO = ROOT.parent / "shared" / "video" / "bikelane-cyclists.mp4"


def wait_for(cond, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    return _poll(cond, timeout)


def site_config(tmp_path: Path, **sections: dict) -> Path:
    """The demo site config with its data under tmp_path, speaker off, and ``sections`` merged in."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["device"]["data_dir"] = str(tmp_path / "data")
    data["source"]["uri"] = str(VIDEO)
    data["speaker"] = {"enabled": False}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture()
def empty_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A models folder with the manifest but none of the model files."""
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(ROOT / "models" / "manifest.yaml", d / "manifest.yaml")
    monkeypatch.setenv("ANQI_MODELS_DIR", str(d))
    return d


def test_replay_with_missing_model_file_fails_fast_naming_the_file(
    tmp_path: Path, empty_models: Path
) -> None:
    cfg = load_config(site_config(tmp_path))
    with pytest.raises(StartupError, match=r"detect.rider_model: model file missing: .*anqi-rider-head.onnx"):
        EdgeDaemon(cfg, mode="replay", out_dir=tmp_path / "out", relay=False, install_signals=False)


def test_a_start_stopped_late_releases_the_signal_pin_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The red-light signal's GPIO pin is opened before the clip folder is checked; when the clip folder
    stops the start, the pin is free again (a second start in the same process can take it)."""
    from gpiozero import Device, DigitalInputDevice
    from gpiozero.pins.mock import MockFactory

    from anqi_contract.sealed import generate_keypair

    monkeypatch.setattr(Device, "pin_factory", MockFactory())
    _, public = generate_keypair()
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    cfg = load_config(
        site_config(
            tmp_path,
            rules={
                "red_light": {
                    "enabled": True,
                    "stop_line": [[-3, 16], [3, 16]],
                    "signal": {"source": "gpio", "gpio_pin": "GPIO22"},
                }
            },
            privacy={"seal": {"key_id": "c1", "public_key": public, "clip_scratch_dir": str(not_a_folder)}},
        )
    )
    with pytest.raises(StartupError, match=r"privacy.seal.clip_scratch_dir: cannot create") as failed:
        EdgeDaemon(cfg, mode="replay", out_dir=tmp_path / "out", relay=False, install_signals=False)
    # the kept traceback (as a logger's exc_info or a supervisor keeps it) holds the failed start's frames:
    # the pin must be free because it was closed, not because the garbage collector happened to run
    assert failed.tb is not None
    DigitalInputDevice("GPIO22").close()  # GPIOPinInUse here: the failed start kept the pin


def test_replay_command_exits_non_zero_with_the_missing_model(tmp_path: Path, empty_models: Path) -> None:
    from click.testing import CliRunner

    from edge.cli import main

    res = CliRunner().invoke(
        main, ["replay", str(VIDEO), "--config", str(site_config(tmp_path)), "--out", str(tmp_path / "out")]
    )
    assert res.exit_code == 3
    assert "cannot start: detect.rider_model: model file missing" in res.output


def test_live_daemon_keeps_recording_without_its_model_and_stops_cleanly(
    tmp_path: Path, empty_models: Path
) -> None:
    cfg = load_config(site_config(tmp_path, source={"realtime": True}))
    d = EdgeDaemon(cfg, mode="live", relay=False, install_signals=False)
    t = threading.Thread(target=d.run)
    t.start()
    try:
        assert wait_for(lambda: d.stats.frames >= 30)  # the camera and the ring buffer run on
        d._write_health()
        h = json.loads((tmp_path / "data" / "health.json").read_text())
        assert h["components"]["detector"]["status"] == "down"
        assert "anqi-rider-head.onnx" in h["components"]["detector"]["detail"]
        assert h["components"]["camera"]["status"] == "up"
        assert d.buffer.duration_s > 0.5
    finally:
        d.stop()
        t.join(20)
    assert not t.is_alive()
    h = json.loads((tmp_path / "data" / "health.json").read_text())
    assert h["components"]["daemon"]["status"] == "off"


def test_live_daemon_survives_a_vanished_camera_and_resumes(
    tmp_path: Path, empty_models: Path, camera_stream: Any
) -> None:
    from anqi_contract.localbroker import free_port

    port = free_port()
    cam = camera_stream(port)
    cfg = load_config(
        site_config(
            tmp_path,
            source={
                "uri": f"tcp://127.0.0.1:{port}",
                "reconnect_initial_s": 0.1,
                "reconnect_max_s": 0.3,
                "open_timeout_s": 2,
                "read_timeout_s": 2,
            },
        )
    )
    d = EdgeDaemon(cfg, mode="live", relay=False, install_signals=False)
    t = threading.Thread(target=d.run)
    t.start()
    camera = lambda: d.health.snapshot()["components"].get("camera", {})  # noqa: E731
    try:
        assert wait_for(lambda: d.stats.frames >= 15), "no frames from the camera"
        cam.stop()  # the camera disappears mid-stream
        assert wait_for(lambda: camera().get("status") == "down", 20)
        frames_when_down = d.stats.frames
        time.sleep(0.5)
        assert t.is_alive()  # the daemon is still up, retrying
        cam = camera_stream(port)
        assert wait_for(
            lambda: camera().get("status") == "up" and d.stats.frames >= frames_when_down + 15, 20
        ), "did not resume"
    finally:
        d.stop()
        cam.stop()
        t.join(20)
    assert not t.is_alive()


def test_run_refuses_a_bad_source_with_the_key(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edge.cli import main

    res = CliRunner().invoke(
        main, ["run", "--config", str(site_config(tmp_path, source={"uri": " "})), "--until-eof"]
    )
    assert res.exit_code == 3 and "source.uri: empty" in res.output


def test_sigterm_stops_the_daemon_process_cleanly(tmp_path: Path, empty_models: Path) -> None:
    import os
    import signal
    import socket
    import sys

    cfg = site_config(tmp_path, source={"realtime": True})
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # what systemd listens on for Type=notify
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(20)
    env = {
        **os.environ,
        "ANQI_MODELS_DIR": str(empty_models),
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "400000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    health = tmp_path / "data" / "health.json"
    try:
        # only the daemon speaks (the development mosquitto it starts does not inherit NOTIFY_SOCKET)
        messages = [notify.recv(256).decode() for _ in range(3)]
        assert messages[0].startswith("READY=1\nSTATUS=watching ") and messages[1:] == [
            "WATCHDOG=1",
            "WATCHDOG=1",
        ], messages
        # from here on nobody reads the notify socket: its queue fills, and the daemon must not mind
        assert wait_for(
            lambda: (
                health.exists()
                and json.loads(health.read_text())["components"].get("camera", {}).get("status") == "up"
            ),
            30,
        ), health.read_text() if health.exists() else "no health file"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        notify.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "msg=signal_received signal=SIGTERM" in out and "msg=daemon_stopped" in out
    assert json.loads(health.read_text())["components"]["daemon"]["status"] == "off"


def test_evidence_survives_an_outbox_that_refuses_it_and_is_stored_after_restart(tmp_path: Path) -> None:
    import hashlib

    from anqi_contract.event import parse_event

    cfg = load_config(site_config(tmp_path))
    out = tmp_path / "out"
    d = EdgeDaemon(cfg, mode="replay", out_dir=out, relay=False, install_signals=False)
    media = d.outbox.media_dir
    shutil.rmtree(media)
    media.write_text("not a folder")  # the outbox cannot place any file now (like a dead disk)
    d.run()
    assert d.stats.violations, "the clip has riders without a helmet"
    assert all(v.outbox_mono is None and v.error for v in d.stats.violations)
    kept = sorted(p for p in (out / "evidence-work").iterdir() if p.is_dir())
    assert len(kept) == len(d.stats.violations)
    for folder in kept:  # nothing captured is lost: event, face and clip wait on disk, intact
        ev = parse_event((folder / "event.json").read_text())
        for m in ev.media:
            assert hashlib.sha256((folder / m.name).read_bytes()).hexdigest() == m.sha256
        assert "clip" in {m.kind for m in ev.media}
    assert any((folder / "face.jpg").is_file() for folder in kept)
    media.unlink()
    media.mkdir()
    again = EdgeDaemon(cfg, mode="replay", out_dir=out, relay=False, install_signals=False)
    try:
        assert again.recovered == len(kept)
        assert not any(p.is_dir() for p in (out / "evidence-work").iterdir())
        for folder in kept:
            assert (media / folder.name / "clip.mp4").is_file() and (
                out / "events" / f"{folder.name}.json"
            ).is_file()
    finally:
        again._shutdown()


def test_paced_file_is_captured_at_camera_rate_and_detection_never_slows_it(tmp_path: Path) -> None:
    cfg = load_config(site_config(tmp_path, source={"realtime": True}))
    d = EdgeDaemon(cfg, mode="until_eof", relay=False, install_signals=False)
    assert d.live_queue is not None  # a paced source hands detection frames it may drop, never blocks capture
    stats = d.run()
    s = stats.summary()
    assert s["frames"] == 238
    assert s["wall_s"] >= 7.5  # 238 frames at 30 fps: the file played at its own rate
    assert d.buffer.stats.frames == 238  # every frame reached the ring buffer
    assert (
        s["detect_frames"] + s["detect_dropped"] >= 70
    )  # ~10 fps sampled over 7.9 s: detected or counted as dropped


def test_run_refuses_an_unusable_calibration_naming_the_key(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edge.cli import main

    bad = {
        "calibration": [{"image": [x, 100.0], "ground": [x / 10, 20.0]} for x in (0.0, 100.0, 200.0, 300.0)]
    }
    res = CliRunner().invoke(main, ["run", "--config", str(site_config(tmp_path, zone=bad)), "--until-eof"])
    assert res.exit_code == 3
    assert "cannot start: zone.calibration: the image points all lie on one line" in res.output


def test_run_refuses_a_lane_polygon_above_the_horizon_naming_the_key(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edge.cli import main

    # the demo camera's horizon is at y = 66 px: a lane drawn up to y = 20 reaches the sky
    lane = {"lane_polygon": [[0, 360], [330, 360], [165, 20], [75, 20]]}
    cfg = site_config(tmp_path, zone=lane)
    res = CliRunner().invoke(main, ["run", "--config", str(cfg), "--until-eof"])
    assert res.exit_code == 3
    assert "cannot start: zone.lane_polygon: point 2 (165, 20) lies above the horizon" in res.output
    res = CliRunner().invoke(main, ["validate", str(cfg)])
    assert res.exit_code != 0 and "zone.lane_polygon: point 2 (165, 20) lies above the horizon" in res.output


def test_run_refuses_a_signal_port_that_does_not_exist(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edge.cli import main

    rules = {
        "red_light": {
            "enabled": True,
            "stop_line": [[-3, 16], [3, 16]],
            "signal": {"source": "serial", "serial_port": str(tmp_path / "ttyNOPE")},
        }
    }
    res = CliRunner().invoke(
        main, ["run", "--config", str(site_config(tmp_path, rules=rules)), "--until-eof"]
    )
    assert res.exit_code == 3
    assert "cannot start: rules.red_light.signal.serial_port: SerialException" in res.output
    assert "ttyNOPE" in res.output
