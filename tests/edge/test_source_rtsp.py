"""Capture from a real RTSP camera: GStreamer's RTSP server on loopback (tests/rtsp_camera.py)
serving the shared clip's H.264, and the camera rebooting mid-stream."""

from __future__ import annotations

import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest
from rtsp_camera import RtspCamera, gst_rtsp_available

from anqi_contract.localbroker import free_port
from anqi_tools.testclips import default_video
from edge.config.source import SourceConfig
from edge.health import Health
from edge.source import Frame, FrameSource

VIDEO = default_video()
WHY_NOT = gst_rtsp_available()
pytestmark = [
    pytest.mark.skipif(not VIDEO.is_file(), reason=f"needs {VIDEO}"),
    pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or ""),
]


def rtsp_source(url: str, tmp_path: Path, **kw: object) -> tuple[FrameSource, Health]:
    health = Health(tmp_path / "health.json", "test")
    base = {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.2, "open_timeout_s": 3, "read_timeout_s": 2}
    cfg = SourceConfig(uri=url, **{**base, **kw})  # type: ignore[arg-type]
    return FrameSource(cfg, health=health), health


def test_rtsp_camera_frames_carry_h264_packets_for_the_ring_buffer(tmp_path: Path) -> None:
    cam = RtspCamera(free_port(), VIDEO).start()
    src, health = rtsp_source(cam.url, tmp_path)
    assert src.kind == "rtsp"
    frames: list[Frame] = []
    try:
        for f in src.frames():
            frames.append(f)
            if len(frames) >= 30:
                src.stop()
    finally:
        cam.stop()
    assert len(frames) >= 30
    assert frames[0].image.shape == (360, 640, 3)
    assert any(p.keyframe for f in frames for p in f.packets), "the pre-roll buffer needs keyframes"
    assert all(b.pts_s > a.pts_s for a, b in pairwise(frames))
    assert health.snapshot()["components"]["camera"]["status"] in ("up", "off")


def test_rtsp_camera_reboot_mid_stream_is_reconnected_on_a_continuing_timeline(tmp_path: Path) -> None:
    port = free_port()
    cam = RtspCamera(port, VIDEO).start()
    src, health = rtsp_source(cam.url, tmp_path)
    frames: list[Frame] = []
    states: list[str] = []
    src.on_state = lambda s, d: states.append(s)
    back = threading.Event()

    def capture() -> None:
        for f in src.frames():
            frames.append(f)
            if back.is_set() and sum(1 for g in frames if g.session >= 2) >= 15:
                src.stop()

    t = threading.Thread(target=capture)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while len(frames) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(frames) >= 20, "no frames from the RTSP camera"
        cam.stop()  # power cut: no TEARDOWN, the TCP connection just dies
        while "down" not in states and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "down" in states, "a dead camera is reported down"
        time.sleep(0.5)  # it stays off for a moment; reconnects are refused meanwhile
        cam = RtspCamera(port, VIDEO).start()  # rebooted, same address
        back.set()
        t.join(timeout=30)
    finally:
        src.stop()
        cam.stop()
        t.join(timeout=5)
    assert not t.is_alive()
    assert states[:3] == ["up", "down", "up"]
    assert {f.session for f in frames} >= {1, 2}
    assert all(b.pts_s > a.pts_s for a, b in pairwise(frames)), "stream time keeps increasing"
    second = [f for f in frames if f.session >= 2]
    assert second[0].packets and any(p.keyframe for f in second for p in f.packets)
