"""Capture (stage 1): real video from ../shared demuxed with PyAV, real FFmpeg network streams
that drop and come back, corrupt and truncated files, missing devices."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from pydantic import ValidationError

from anqi_contract.localbroker import free_port
from anqi_contract.logs import LogfmtFormatter
from anqi_tools.testclips import default_video
from edge.config import ConfigError, parse_config
from edge.config.source import SourceConfig
from edge.health import Health
from edge.source import (
    DetectQueue,
    DetectSampler,
    Frame,
    FrameSource,
    check_config,
    guess_kind,
    redact_uri,
)

VIDEO = default_video()
pytestmark = pytest.mark.skipif(not VIDEO.is_file(), reason=f"needs {VIDEO}")


def source(uri: str | Path, tmp_path: Path, **kw: object) -> tuple[FrameSource, Health]:
    health = Health(tmp_path / "health.json", "test")
    cfg = SourceConfig(uri=str(uri), **{"reconnect_initial_s": 0.02, "reconnect_max_s": 0.1, **kw})  # type: ignore[arg-type]
    return FrameSource(cfg, health=health), health


def camera(health: Health) -> dict[str, object]:
    return health.snapshot()["components"]["camera"]


def demuxed_packets(path: Path) -> list[tuple[int, int, bytes]]:
    with av.open(str(path)) as c:
        return [(int(p.pts), int(p.dts), bytes(p)) for p in c.demux(c.streams.video[0]) if p.size]


def remux(
    src: Path,
    dst: Path,
    mutate: Callable[[int, av.Packet], av.Packet | None] | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Copy ``src``'s video packets into ``dst`` (MP4), letting ``mutate`` replace some."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format="mp4", options=options or {}) as o:
        s = i.streams.video[0]
        os_ = o.add_stream_from_template(s)
        n = 0
        for p in i.demux(s):
            if not p.size:
                continue
            q = (mutate(n, p) if mutate else None) or p
            q.stream = os_
            o.mux(q)
            n += 1
    return dst


# ---------------------------------------------------------------------------- uri forms
@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("rtsp://192.0.2.10:554/stream1", "rtsp"),
        ("rtsp://admin:pw@cam/ch1", "rtsp"),
        ("http://cam.local/video.ts", "rtsp"),
        ("tcp://127.0.0.1:9000", "rtsp"),
        ("/dev/video0", "v4l2"),
        ("0", "v4l2"),
        ("nvarguscamerasrc ! video/x-raw(memory:NVMM) ! nvvidconv ! appsink", "gstreamer"),
        ("libcamerasrc ! videoconvert ! appsink", "gstreamer"),
        ("../shared/video/bikelane-cyclists.mp4", "file"),
        ("file:///data/clip.mp4", "file"),
        ("C:clip.mp4", "file"),
    ],
)
def test_kind_is_guessed_from_the_uri_form(uri: str, kind: str) -> None:
    assert guess_kind(uri) == kind


def test_credentials_never_reach_logs_or_health(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert redact_uri("rtsp://admin:s3cret@10.0.0.2:554/x") == "rtsp://admin:***@10.0.0.2:554/x"
    src, health = source(
        f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/x", tmp_path, reconnect_attempts=1, open_timeout_s=1
    )
    with caplog.at_level(logging.INFO, logger="edge.source"):
        assert list(src.frames()) == []
    lines = "\n".join(LogfmtFormatter().format(r) for r in caplog.records)
    assert "source_gave_up" in lines and "s3cret" not in lines
    assert "s3cret" not in str(health.snapshot())
    assert "admin:***@" in str(health.snapshot())


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({"reconnect_initial_s": 5, "reconnect_max_s": 1}, "reconnect_max_s must be >="),
        ({"detect_fps": 0}, "source.detect_fps"),
        ({"kind": "webcam"}, "source.kind"),
        ({"reconnect_attempts": -1}, "source.reconnect_attempts"),
        ({"rtsp_transport": "http"}, "source.rtsp_transport"),
        ({"urii": "x.mp4"}, "source.urii: unknown key"),
    ],
)
def test_bad_source_config_names_the_key(section: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"source": section})
    assert error in str(e.value)


def test_empty_uri_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match="source.uri"):
        FrameSource(SourceConfig(uri=""))
    with pytest.raises(ValidationError):
        SourceConfig(uri="x", capture_fps=-1)


def test_validate_reports_missing_file_and_device(tmp_path: Path) -> None:
    assert check_config(parse_config({"source": {"uri": str(VIDEO)}})) == []
    assert (
        "file not found" in check_config(parse_config({"source": {"uri": "nope.mp4"}}, base_dir=tmp_path))[0]
    )
    assert "no such device" in check_config(parse_config({"source": {"uri": "/dev/video97"}}))[0]


# ---------------------------------------------------------------------------- files
def test_file_delivers_every_frame_and_every_packet_once(tmp_path: Path) -> None:
    src, health = source(VIDEO, tmp_path)
    frames = list(src.frames())
    with av.open(str(VIDEO)) as c:
        n_expected = c.streams.video[0].frames
    assert len(frames) == n_expected == 238
    assert [f.index for f in frames] == list(range(len(frames)))
    pts = np.array([f.pts_s for f in frames])
    assert pts[0] == 0.0 and np.all(np.diff(pts) > 0)
    np.testing.assert_allclose(np.diff(pts), 1 / 30, atol=1e-6)
    assert all(
        f.image.shape == (360, 640, 3) and f.image.dtype == np.uint8 and not f.image.flags.writeable
        for f in frames
    )
    monos = [f.mono for f in frames]
    assert monos == sorted(monos)
    # utc follows stream time for files, and is timezone-aware
    assert frames[0].utc.tzinfo is not None
    assert abs((frames[-1].utc - frames[0].utc).total_seconds() - pts[-1]) < 1e-3
    # the buffer sees exactly the demuxed packets, in decode order, once
    got = [(p.pts, p.dts, p.data) for f in frames for p in f.packets]
    assert got == demuxed_packets(VIDEO)
    keys = [p for f in frames for p in f.packets if p.keyframe]
    assert len(keys) == 8 and keys[0].stream.template is not None
    assert src.stats.state == "ended" and camera(health)["status"] == "off"
    assert camera(health)["frames"] == 238


def test_realtime_paces_a_file_at_its_own_rate(tmp_path: Path) -> None:
    src, _ = source(VIDEO, tmp_path, realtime=True)
    t0 = time.monotonic()
    frames = []
    for f in src.frames():
        frames.append(f)
        if len(frames) == 16:
            break
    elapsed = time.monotonic() - t0
    span = frames[-1].pts_s - frames[0].pts_s  # 0.5 s of video
    assert elapsed >= 0.9 * span
    assert frames[-1].mono - frames[0].mono >= 0.9 * span


def test_corrupt_packet_is_skipped_and_capture_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def garble(n: int, p: av.Packet) -> av.Packet | None:
        if n != 100:
            return None
        data = bytearray(bytes(p))
        data[0:4] = (0x7FFFFFFF).to_bytes(4, "big")  # an impossible NAL unit length
        q = av.Packet(bytes(data))
        q.pts, q.dts, q.duration, q.time_base, q.is_keyframe = (
            p.pts,
            p.dts,
            p.duration,
            p.time_base,
            p.is_keyframe,
        )
        return q

    bad = remux(VIDEO, tmp_path / "corrupt.mp4", garble)
    src, health = source(bad, tmp_path)
    with caplog.at_level(logging.WARNING, logger="edge.source"):
        frames = list(src.frames())
    assert src.stats.corrupt_skipped == 1
    assert 230 <= len(frames) < 238  # the broken frame (and what referenced it) is gone, the rest arrives
    assert frames[-1].pts_s == pytest.approx(237 / 30)
    assert "source_corrupt_packet" in caplog.text
    # the ring buffer still gets every packet, the corrupt one included (a faithful copy of the stream)
    assert sum(len(f.packets) for f in frames) == 238
    assert src.stats.state == "ended"


def test_truncated_file_delivers_what_is_there(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fast = remux(VIDEO, tmp_path / "fast.mp4", options={"movflags": "faststart"})
    data = fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    src, _ = source(cut, tmp_path)
    with caplog.at_level(logging.WARNING, logger="edge.source"):
        frames = list(src.frames())
    assert 80 < len(frames) < 140
    assert "source_file_short" in caplog.text


@pytest.mark.parametrize("content", [None, b"", b"\x00\x00\x00\x18ftypmp42 not a video at all"])
def test_unreadable_file_is_retried_then_reported_down(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "camera.mp4"
    if content is not None:
        path.write_bytes(content)
    states: list[tuple[str, str]] = []
    src, health = source(path, tmp_path, reconnect_attempts=2)
    src.on_state = lambda s, d: states.append((s, d))
    assert list(src.frames()) == []
    assert src.stats.failures_in_row == 3 and src.stats.reconnects == 2
    comp = camera(health)
    assert comp["status"] == "down" and "gave up after 2" in str(comp["detail"])
    assert [s for s, _ in states] == ["down"]  # starting -> down (once, not per retry)


def test_backoff_doubles_up_to_the_cap() -> None:
    src = FrameSource(SourceConfig(uri="x.mp4", reconnect_initial_s=0.5, reconnect_max_s=3))
    assert [src.backoff_s(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


# ---------------------------------------------------------------------------- devices
def test_missing_v4l2_device_is_down_not_a_crash(tmp_path: Path) -> None:
    src, health = source("/dev/video97", tmp_path, reconnect_attempts=1)
    assert list(src.frames()) == []
    assert "no such device: /dev/video97" in str(camera(health)["detail"])


def test_gstreamer_pipeline_without_gstreamer_says_so(tmp_path: Path) -> None:
    import cv2

    if "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer")
    src, health = source(
        "videotestsrc num-buffers=5 ! videoconvert ! appsink", tmp_path, reconnect_attempts=0
    )
    assert list(src.frames()) == []
    assert "GStreamer" in str(camera(health)["detail"])


# ---------------------------------------------------------------------------- network streams


def test_stream_that_drops_is_reported_down_and_reconnected(tmp_path: Path, camera_stream: Any) -> None:
    port = free_port()
    server = camera_stream(port)
    src, health = source(
        f"tcp://127.0.0.1:{port}",
        tmp_path,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
        open_timeout_s=2,
        read_timeout_s=2,
    )
    frames: list[Frame] = []
    statuses: list[str] = []
    src.on_state = lambda s, d: statuses.append(s)
    restarted = threading.Event()

    def capture() -> None:
        for f in src.frames():
            frames.append(f)
            if restarted.is_set() and f.session >= 2 and sum(1 for g in frames if g.session >= 2) >= 15:
                src.stop()

    t = threading.Thread(target=capture)
    t.start()
    try:
        deadline = time.monotonic() + 20
        while len(frames) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(frames) >= 20, "no frames from the stream"
        server.stop()  # the camera disappears mid-stream
        while camera(health)["status"] != "down" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert camera(health)["status"] == "down"
        while src.stats.failures_in_row < 2 and time.monotonic() < deadline:  # a few refused reconnects
            time.sleep(0.02)
        assert src.stats.failures_in_row >= 2
        server = camera_stream(port)
        restarted.set()
        t.join(timeout=20)
    finally:
        src.stop()
        server.stop()
        t.join(timeout=5)
    assert not t.is_alive()
    assert statuses[:3] == ["up", "down", "up"]
    assert src.stats.reconnects >= 2
    pts = [f.pts_s for f in frames]
    assert all(b > a for a, b in pairwise(pts)), "stream time keeps increasing across the reconnect"
    assert {f.session for f in frames} == {1, 2}
    assert [f.index for f in frames] == list(range(len(frames)))
    second = [f for f in frames if f.session == 2]
    assert second[0].packets and any(p.keyframe for f in second for p in f.packets)


def test_stream_that_goes_silent_is_dropped_after_read_timeout(tmp_path: Path, camera_stream: Any) -> None:
    """A camera that freezes with its connection open (here: FFmpeg stopped with SIGSTOP)."""
    import os
    import signal

    port = free_port()
    server = camera_stream(port)
    src, health = source(
        f"tcp://127.0.0.1:{port}", tmp_path, open_timeout_s=1, read_timeout_s=1, reconnect_attempts=1
    )
    frames: list[Frame] = []
    downs: list[str] = []
    src.on_state = lambda s, d: downs.append(d) if s == "down" else None
    t = threading.Thread(target=lambda: frames.extend(src.frames()))
    t.start()
    try:
        deadline = time.monotonic() + 20
        while len(frames) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        t.join(timeout=20)
        assert not t.is_alive()
    finally:
        if server.proc is not None:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()
    assert len(frames) >= 10
    assert camera(health)["status"] == "down" and src.stats.reconnects == 1
    assert "silent for 1 s (source.read_timeout_s)" in downs[0]


def test_unreachable_url_retries_with_backoff_until_stopped(tmp_path: Path) -> None:
    src, health = source(
        f"rtsp://127.0.0.1:{free_port()}/stream1",
        tmp_path,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.1,
        open_timeout_s=1,
    )
    assert src.max_attempts is None  # cameras: forever
    t = threading.Thread(target=lambda: list(src.frames()))
    t.start()
    deadline = time.monotonic() + 10
    while src.stats.reconnects < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    src.stop()
    t.join(timeout=5)
    assert not t.is_alive()
    assert src.stats.reconnects >= 3
    assert src.stats.state == "stopped"


def test_timestamp_jump_in_a_stream_reopens_on_a_continuing_timeline(tmp_path: Path) -> None:
    """A camera whose clock resets mid-stream (here: one MPEG-TS segment sent twice in a row) is
    reopened as a new session; stream time keeps increasing; a flapping source backs off and,
    with a limit, gives up instead of spinning."""
    seg = tmp_path / "seg.ts"
    with av.open(str(VIDEO)) as i, av.open(str(seg), "w", format="mpegts") as o:
        s = i.streams.video[0]
        os_ = o.add_stream_from_template(s)
        for p in i.demux(s):
            if p.size and p.pts is not None and p.pts * p.time_base < 3:
                p.stream = os_
                o.mux(p)
    jumpy = tmp_path / "jumpy.ts"
    jumpy.write_bytes(seg.read_bytes() * 2)
    src, health = source(jumpy, tmp_path, kind="rtsp", reconnect_attempts=1)
    frames = list(src.frames())
    assert {f.session for f in frames} == {1, 2}
    in_segment = len(demuxed_packets(seg))
    # the decoder's delayed frames are flushed at the break: no frame and no packet is lost
    assert len(frames) == sum(len(f.packets) for f in frames) == 2 * in_segment
    pts = [f.pts_s for f in frames]
    assert all(b > a for a, b in pairwise(pts))
    assert src.stats.failures_in_row == 2 and "timestamp jump of -2.9" in src.stats.last_error
    assert camera(health)["status"] == "down"


# ---------------------------------------------------------------------------- detection hand-over
def test_sampler_picks_detect_fps_on_stream_time(tmp_path: Path) -> None:
    src, _ = source(VIDEO, tmp_path)
    frames = list(src.frames())
    sampler = DetectSampler(8.0)
    picked = [f for f in frames if sampler.want(f)]
    span = frames[-1].pts_s - frames[0].pts_s
    assert 7.0 * span <= len(picked) <= 8.6 * span + 1
    gaps = np.diff([f.pts_s for f in picked])
    assert gaps.max() <= 1 / 8 + 1 / 30 + 1e-9


def test_detect_queue_drops_the_oldest_and_never_blocks(tmp_path: Path) -> None:
    src, _ = source(VIDEO, tmp_path)
    q = DetectQueue(2)
    frames = []
    for f in src.frames():
        frames.append(f)
        q.put(f)
        if len(frames) == 5:
            break
    assert len(q) == 2 and q.dropped == 3
    assert q.get(0.1) is frames[3] and q.get(0.1) is frames[4]
    assert q.get(0.05) is None
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(q.get(5)))
    waiter.start()
    q.close()
    waiter.join(2)
    assert got == [None]


def test_a_file_queue_makes_capture_wait_for_detection_and_gives_up_on_stop(tmp_path: Path) -> None:
    src, _ = source(VIDEO, tmp_path)
    q, stop = DetectQueue(2, drop_oldest=False), threading.Event()
    frames = []
    for f in src.frames():
        frames.append(f)
        if len(frames) == 4:
            break
    q.put(frames[0])
    q.put(frames[1])
    capture = threading.Thread(target=lambda: q.put(frames[2], stop))
    capture.start()
    capture.join(0.3)
    assert capture.is_alive() and len(q) == 2  # full: capture waits, nothing is dropped
    assert q.get(1) is frames[0]
    capture.join(2)
    assert not capture.is_alive() and [q.get(0.1), q.get(0.1)] == [frames[1], frames[2]] and q.dropped == 0
    q.put(frames[0])
    q.put(frames[1])
    stop.set()
    q.put(frames[3], stop)  # full and stopping: returns, the frame is given up
    q.close()
    assert [q.get(0.1), q.get(0.1), q.get(0.1)] == [frames[0], frames[1], None] and q.drained


def test_only_frames_that_are_looked_at_pay_the_colour_conversion(tmp_path: Path) -> None:
    src, _ = source(VIDEO, tmp_path)
    frames = list(src.frames())
    assert all(f.size == (640, 360) for f in frames)
    assert all(f._image is None for f in frames)  # nothing converted yet: the ring needs packets only
    img = frames[5].image
    assert img is frames[5].image and frames[5]._image is img and frames[6]._image is None
    with av.open(str(VIDEO)) as c:
        ref = [
            f.to_ndarray(format="bgr24") for _, f in zip(range(6), c.decode(c.streams.video[0]), strict=False)
        ][5]
    assert np.array_equal(img, ref)


def test_test_camera_reports_the_stream_and_writes_snapshot_and_clip(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edge.cli import main

    snap, clip = tmp_path / "snap.jpg", tmp_path / "cam.mp4"
    res = CliRunner().invoke(
        main,
        ["test-camera", "--uri", str(VIDEO), "--seconds", "2", "--snapshot", str(snap), "--clip", str(clip)],
    )
    assert res.exit_code == 0, res.output
    assert "h264 640x360" in res.output and "keyframes  8, every 1.00 s" in res.output
    import cv2

    shot = cv2.imread(str(snap))
    assert shot is not None and shot.shape == (360, 640, 3)
    with av.open(str(clip)) as c:
        assert c.streams.video[0].frames == 238
    bad = CliRunner().invoke(
        main, ["test-camera", "--uri", f"rtsp://127.0.0.1:{free_port()}/x", "--seconds", "1"]
    )
    assert bad.exit_code == 1 and "no frame" in bad.output
