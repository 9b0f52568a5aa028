"""Pre-roll ring buffer (stage 2): bounded by time and bytes, keeps encoded data only, always
holds the keyframe at or before the start of its window. Real H.264 from ../shared, real JPEG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from anqi_tools.testclips import default_video, raw_frames
from edge.buffer import PrerollBuffer
from edge.config.buffer import BufferConfig
from edge.config.source import SourceConfig
from edge.health import Health
from edge.source import EncodedPacket, Frame, FrameSource, StreamInfo

VIDEO = default_video()
pytestmark = pytest.mark.skipif(not VIDEO.is_file(), reason=f"needs {VIDEO}")


def file_frames(path: Path = VIDEO) -> list[Frame]:
    return list(FrameSource(SourceConfig(uri=str(path))).frames())


@pytest.fixture(scope="module")
def bikelane() -> list[Frame]:
    return file_frames()


def next_session(frames: list[Frame], session: int, offset_s: float) -> list[Frame]:
    """The same video as a later session of the source (as after a reconnect): new StreamInfo,
    stream time continuing at ``offset_s``."""
    old = frames[0].stream
    info = StreamInfo(
        session=session,
        codec=old.codec,
        width=old.width,
        height=old.height,
        time_base=old.time_base,
        fps=old.fps,
        first_pts=old.first_pts,
        pts_offset_s=offset_s,
        template=old.template,
    )
    out = []
    for f in frames:
        pk = tuple(EncodedPacket(p.data, p.pts, p.dts, p.duration, p.keyframe, info) for p in f.packets)
        out.append(f.replace(stream=info, packets=pk, pts_s=f.pts_s + offset_s))
    return out


@pytest.mark.parametrize(("pre_s", "lag_s"), [(2.0, 0.0), (3.0, 1.5), (6.0, 0.0)])
def test_ring_keeps_the_keyframe_before_its_window_and_no_more(
    bikelane: list[Frame], pre_s: float, lag_s: float
) -> None:
    buf = PrerollBuffer(BufferConfig(pre_s=pre_s, trigger_lag_s=lag_s))
    retain = pre_s + lag_s
    gop_s = 1.0  # the shared clip has a keyframe every 30 frames
    for f in bikelane:
        buf.push(f)
        newest = buf.newest_pts_s
        assert newest is not None and buf.oldest_pts_s is not None
        if newest >= retain:
            assert buf.oldest_pts_s <= newest - retain + 1e-9, "a full pre-roll must stay available"
        assert buf.duration_s <= retain + gop_s + 1e-9, "nothing older than one group beyond the window"
        window = buf.window(newest - retain)
        assert window[0].keyframe and window[0].pts_s <= max(0.0, newest - retain) + 1e-9
    assert buf.stats.groups_evicted > 0 or retain >= 7.9
    assert buf.nbytes == sum(p.size for p in buf.window(-1.0))


def test_ring_holds_every_packet_of_its_window_in_decode_order(bikelane: list[Frame]) -> None:
    buf = PrerollBuffer(BufferConfig(pre_s=3.0, trigger_lag_s=0.0))
    seen: list[EncodedPacket] = []
    buf.subscribe(seen.append)
    for f in bikelane:
        buf.push(f)
    all_packets = [p for f in bikelane for p in f.packets]
    assert seen == all_packets  # listeners see each packet once, in order
    window = buf.window(buf.newest_pts_s - 3.0)  # type: ignore[operator]
    start = all_packets.index(window[0])
    assert window == all_packets[start:]
    dts = [p.dts for p in window]
    assert dts == sorted(dts)


@pytest.mark.parametrize("max_mb", [1.2, 2.5])
def test_byte_bound_is_hard_and_reported(bikelane: list[Frame], tmp_path: Path, max_mb: float) -> None:
    health = Health(tmp_path / "h.json", "t")
    buf = PrerollBuffer(BufferConfig(pre_s=6.0, max_mb=max_mb), health=health)
    limit = int(max_mb * 2**20)
    for f in bikelane:
        buf.push(f)
        assert buf.nbytes <= limit
    assert buf.stats.groups_dropped_for_bytes > 0
    assert buf.duration_s < 6.0
    assert health.snapshot()["components"]["buffer"]["status"] == "degraded"
    w = buf.window(0.0)
    assert w[0].keyframe


def test_a_new_session_starts_a_new_group_and_windows_never_mix_sessions(bikelane: list[Frame]) -> None:
    buf = PrerollBuffer(BufferConfig(pre_s=6.0, trigger_lag_s=2.0))
    second = next_session(bikelane, 2, 9.0)
    for f in bikelane + second[:45]:  # 1.5 s of the second session
        buf.push(f)
    w = buf.window(buf.newest_pts_s - 6.0)  # type: ignore[operator]
    assert {p.stream.session for p in w} == {2}
    assert w[0].keyframe and w[0].pts_s == pytest.approx(9.0)
    older = buf.window(3.0, at_pts_s=5.0)  # a violation decided before the reconnect
    assert {p.stream.session for p in older} == {1} and older[0].pts_s == pytest.approx(3.0)


def test_packets_before_a_sessions_first_keyframe_are_not_kept(bikelane: list[Frame]) -> None:
    buf = PrerollBuffer(BufferConfig())
    tail = bikelane[10:]  # starts mid-group, as a stream joined late does
    for f in tail:
        buf.push(f)
    assert buf.stats.packets_unusable > 0
    assert buf.window(0.0)[0].keyframe


def test_raw_frames_are_kept_as_jpeg_encoded_off_the_capture_thread(tmp_path: Path) -> None:
    cfg = BufferConfig(pre_s=2.0, trigger_lag_s=0.0, jpeg_quality=80)
    buf = PrerollBuffer(cfg)
    buf.start()
    frames = list(raw_frames(VIDEO, limit=120))
    try:
        for f in frames:
            buf.push(f)
        buf.drain()
    finally:
        buf.close()
    assert buf.stats.jpeg_encoded == 120
    w = buf.window(-1.0)
    assert all(p.keyframe and p.stream.codec == "mjpeg" for p in w)
    # bounded by time: 2 s at 30 fps, plus the frame on the boundary
    assert 60 <= len(w) <= 62
    raw_bytes = frames[0].image.nbytes * len(w)
    assert buf.nbytes < raw_bytes / 5, "encoded, not raw"
    img = cv2.imdecode(np.frombuffer(w[-1].data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == frames[0].image.shape
    assert float(np.abs(img.astype(np.int16) - frames[119].image.astype(np.int16)).mean()) < 6.0
    assert w[-1].pts_s == pytest.approx(frames[119].pts_s, abs=1e-4)


def test_stamps_map_monotonic_time_to_stream_time(bikelane: list[Frame]) -> None:
    buf = PrerollBuffer(BufferConfig())
    for f in bikelane[:100]:
        buf.push(f)
    s = buf.stamp_at_mono(bikelane[80].mono)
    assert s is not None and s.pts_s == bikelane[80].pts_s
    near = buf.stamp_at_pts(bikelane[50].pts_s + 0.001)
    assert near is not None and near.utc == bikelane[50].utc


def test_bad_buffer_config_names_the_key() -> None:
    from edge.config import ConfigError, parse_config

    for section, key in [
        ({"max_mb": 0}, "buffer.max_mb"),
        ({"pre_s": -1}, "buffer.pre_s"),
        ({"clip_codec": "vp9"}, "buffer.clip_codec"),
        ({"jpeg_quality": 101}, "buffer.jpeg_quality"),
        ({"pre": 6}, "buffer.pre: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=key):
            parse_config({"buffer": section})


def test_buffer_reports_its_figures_to_health(bikelane: list[Frame], tmp_path: Path) -> None:
    health = Health(tmp_path / "h.json", "t")
    buf = PrerollBuffer(BufferConfig(pre_s=2.0, trigger_lag_s=0.0), health=health)
    for f in bikelane:
        buf.push(f)
    comp = health.snapshot()["components"]["buffer"]
    assert comp["status"] == "up" and 0.5 < comp["mb"] < 2.0 and 2.0 <= comp["seconds"] <= 3.1
