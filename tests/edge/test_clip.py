"""Violation clips: [t - 6 s, t + 1 s] cut from the ring, written as real MP4 files and read back
with PyAV (timestamps, frame counts, codecs). Real H.264 from ../shared (remuxed), real JPEG."""

from __future__ import annotations

import time
from concurrent.futures import Future
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest

from anqi_tools.testclips import default_video, make_test_clip, raw_frames
from edge.buffer import Clip, ClipRecorder, PrerollBuffer
from edge.config.buffer import BufferConfig
from edge.config.source import SourceConfig
from edge.health import Health
from edge.source import EncodedPacket, Frame, FrameSource, StreamInfo

VIDEO = default_video()
pytestmark = pytest.mark.skipif(not VIDEO.is_file(), reason=f"needs {VIDEO}")
CAM_FPS = 25


@pytest.fixture(scope="module")
def camera_clip() -> Path:
    """16 s of camera-like H.264: 25 fps, a keyframe every second, no B-frames (made at run time)."""
    return make_test_clip(
        width=640, height=360, fps=CAM_FPS, gop=CAM_FPS, loops=2, bit_rate=1_500_000, preset="ultrafast"
    )


@pytest.fixture(scope="module")
def camera_frames(camera_clip: Path) -> list[Frame]:
    return list(FrameSource(SourceConfig(uri=str(camera_clip))).frames())


@pytest.fixture(scope="module")
def bikelane() -> list[Frame]:
    return list(FrameSource(SourceConfig(uri=str(VIDEO))).frames())


def read_back(path: Path) -> tuple[str, list[float], tuple[int, int]]:
    """Codec, presentation times (s) of every decoded frame, and size of a written clip."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        times = [float(f.pts * f.time_base) for f in c.decode(s)]
        return s.codec_context.name, times, (s.codec_context.width, s.codec_context.height)


def record(
    frames: list[Frame],
    triggers: dict[int, str],
    tmp_path: Path,
    cfg: BufferConfig | None = None,
    threaded: bool = False,
    health: Health | None = None,
) -> dict[str, Future[Clip]]:
    """Push ``frames``; trigger clip ``key`` when frame number ``i`` arrives (``{i: key}``)."""
    cfg = cfg or BufferConfig()
    rec = ClipRecorder(PrerollBuffer(cfg), cfg, tmp_path / "clips", health=health)
    if threaded:
        rec.start()
    futs: dict[str, Future[Clip]] = {}
    for f in frames:
        rec.push(f)
        if f.index in triggers:
            futs[triggers[f.index]] = rec.trigger(triggers[f.index], f.pts_s)
    rec.close()
    return futs


def test_clip_covers_six_seconds_before_to_one_after(camera_frames: list[Frame], tmp_path: Path) -> None:
    i = 257  # t = 10.28 s, between keyframes
    t = camera_frames[i].pts_s
    clip = record(camera_frames, {i: "v1"}, tmp_path)["v1"].result()
    interval = 1 / CAM_FPS
    assert clip.complete and clip.note == "" and clip.remuxed and clip.codec == "h264"
    # the bitstream starts at the keyframe at or before t - 6 s (keyframes every 1 s) ...
    assert clip.keyframe_pts_s == pytest.approx(4.0)
    # ... and the file shows from the frame at t - 6 s (an edit list hides the 7 frames before it)
    assert t - 6 - interval < clip.start_pts_s <= t - 6 + 1e-6
    # ends with the frame at t + 1 s (within one frame interval)
    assert t + 1 <= clip.end_pts_s <= t + 1 + interval + 1e-6
    codec, times, size = read_back(clip.path)
    assert codec == "h264" and size == (640, 360)
    assert times[0] == 0.0
    np.testing.assert_allclose(np.diff(times), interval, atol=1e-3)  # every frame, monotonic, no gap
    assert len(times) == clip.frames == round(clip.duration_s * CAM_FPS)
    assert times[-1] + interval == pytest.approx(clip.duration_s, abs=1e-3)
    # the clip's UTC window matches the frames' own capture times
    assert abs((clip.start_utc - camera_frames[round(clip.start_pts_s * CAM_FPS)].utc).total_seconds()) < 1e-3
    assert (clip.end_utc - clip.start_utc).total_seconds() == pytest.approx(clip.duration_s, abs=1e-3)
    # the file's pixels are the source's: first frame shown == source frame at t - 6 s
    with av.open(str(clip.path)) as c:
        first = next(c.decode(c.streams.video[0])).to_ndarray(format="bgr24")
    assert np.array_equal(first, camera_frames[round(clip.start_pts_s * CAM_FPS)].image)


def test_clip_can_show_from_the_keyframe_instead(camera_frames: list[Frame], tmp_path: Path) -> None:
    cfg = BufferConfig(clip_exact_start=False)
    clip = record(camera_frames, {257: "kf"}, tmp_path, cfg)["kf"].result()
    assert clip.start_pts_s == clip.keyframe_pts_s == pytest.approx(4.0)
    _, times, _ = read_back(clip.path)
    assert len(times) == clip.frames == round(clip.duration_s * CAM_FPS)


def test_clip_of_a_stream_with_b_frames_keeps_its_reference_frames(
    bikelane: list[Frame], tmp_path: Path
) -> None:
    i = 198  # t = 6.6 s in the shared clip (30 fps, 2 B-frames between references)
    t = bikelane[i].pts_s
    clip = record(bikelane, {i: "b"}, tmp_path)["b"].result()
    assert clip.complete and clip.keyframe_pts_s == 0.0 and clip.start_pts_s == pytest.approx(t - 6)
    _, times, _ = read_back(clip.path)
    assert times[0] == 0.0 and all(b > a for a, b in pairwise(times))
    assert len(times) == clip.frames  # every shown frame decodes: no orphaned B-frame
    # end: the frame at t + 1 s, plus at most the B-frame reorder depth of reference frames
    assert t + 1 <= clip.end_pts_s <= t + 1 + 3 / 30 + 1e-6


def test_violation_in_the_first_seconds_clips_from_the_file_start(
    camera_frames: list[Frame], tmp_path: Path
) -> None:
    clip = record(camera_frames, {75: "early"}, tmp_path)["early"].result()  # t = 3 s
    assert clip.start_pts_s == 0.0 and clip.end_pts_s == pytest.approx(4.0 + 1 / CAM_FPS)
    assert not clip.complete and "pre-roll" in clip.note
    _, times, _ = read_back(clip.path)
    assert len(times) == 101


def test_overlapping_violations_each_get_their_own_full_window(
    camera_frames: list[Frame], tmp_path: Path
) -> None:
    triggers = {230: "a", 242: "b", 243: "c", 260: "d"}  # 9.2 s, 9.68 s, 9.72 s, 10.4 s
    futs = record(camera_frames, triggers, tmp_path, threaded=True)
    clips = {k: f.result(timeout=30) for k, f in futs.items()}
    assert len({c.path for c in clips.values()}) == 4
    for i, key in triggers.items():
        c, t = clips[key], camera_frames[i].pts_s
        assert c.complete, key
        assert t - 6 - 1 / CAM_FPS < c.start_pts_s <= t - 6 + 1e-6
        assert c.keyframe_pts_s is not None and t - 7 < c.keyframe_pts_s <= c.start_pts_s
        assert t + 1 <= c.end_pts_s <= t + 1 + 1 / CAM_FPS + 1e-6
        _, times, _ = read_back(c.path)
        assert len(times) == c.frames == round(c.duration_s * CAM_FPS), f"{key}: a frame was dropped"
        np.testing.assert_allclose(np.diff(times), 1 / CAM_FPS, atol=1e-3)


def test_a_violation_decided_late_still_gets_its_full_preroll(
    camera_frames: list[Frame], tmp_path: Path
) -> None:
    cfg = BufferConfig(trigger_lag_s=2.0)
    rec = ClipRecorder(PrerollBuffer(cfg), cfg, tmp_path)
    decided_on = camera_frames[250]  # t = 10.0 s; the rule only fires 1.8 s of video later
    fut: Future[Clip] | None = None
    for f in camera_frames:
        rec.push(f)
        if f.index == 295:
            fut = rec.trigger("late", decided_on.pts_s)
        if f.index == 330:
            break
    assert fut is not None and fut.done()  # the post-roll was already there: written at once
    clip = fut.result()
    assert clip.complete and clip.start_pts_s == pytest.approx(4.0)
    assert 11.0 <= clip.end_pts_s <= 11.0 + 1 / CAM_FPS + 1e-6


def test_trigger_by_monotonic_time_maps_to_the_captured_frame(
    camera_frames: list[Frame], tmp_path: Path
) -> None:
    cfg = BufferConfig()
    rec = ClipRecorder(PrerollBuffer(cfg), cfg, tmp_path)
    fut = None
    for f in camera_frames:
        rec.push(f)
        if f.index == 280:
            fut = rec.trigger("mono", at_mono=camera_frames[260].mono + 1e-9)
    rec.close()
    assert fut is not None
    assert fut.result().trigger_pts_s == camera_frames[260].pts_s


def test_clip_file_is_complete_before_it_is_reported(camera_frames: list[Frame], tmp_path: Path) -> None:
    seen: list[tuple[bool, bool, int]] = []

    def check(f: Future[Clip]) -> None:
        c = f.result()
        _, times, _ = read_back(c.path)
        seen.append((c.path.exists(), c.path.with_name(c.path.name + ".part").exists(), len(times)))

    cfg = BufferConfig()
    rec = ClipRecorder(PrerollBuffer(cfg), cfg, tmp_path)
    rec.start()
    for f in camera_frames[:300]:
        rec.push(f)
        if f.index == 200:
            fut = rec.trigger("evt-1", f.pts_s)
            fut.add_done_callback(check)
            assert not fut.done()  # the post-roll is not there yet
    rec.close()
    assert seen == [(True, False, fut.result().frames)]
    assert not list(tmp_path.glob("*.part"))


def test_end_of_stream_finishes_pending_clips_with_what_exists(
    camera_frames: list[Frame], tmp_path: Path
) -> None:
    last = len(camera_frames) - 1
    clip = record(camera_frames, {last - 5: "tail"}, tmp_path)["tail"].result()
    assert not clip.complete and "stream ended" in clip.note
    assert clip.end_pts_s == pytest.approx(camera_frames[-1].pts_s + 1 / CAM_FPS)
    _, times, _ = read_back(clip.path)
    assert len(times) == clip.frames


def test_a_reconnect_ends_the_clip_at_the_session_end(bikelane: list[Frame], tmp_path: Path) -> None:
    old = bikelane[0].stream
    info = StreamInfo(
        session=2,
        codec=old.codec,
        width=old.width,
        height=old.height,
        time_base=old.time_base,
        fps=old.fps,
        pts_offset_s=9.0,
        template=old.template,
    )
    second = [
        f.replace(
            stream=info,
            index=f.index + 300,
            pts_s=f.pts_s + 9.0,
            packets=tuple(
                EncodedPacket(p.data, p.pts, p.dts, p.duration, p.keyframe, info) for p in f.packets
            ),
        )
        for f in bikelane[:60]
    ]
    clip = record(bikelane + second, {236: "x"}, tmp_path)["x"].result()
    assert not clip.complete and "session ended" in clip.note
    assert clip.end_pts_s == pytest.approx(bikelane[-1].pts_s + 1 / 30)


def test_clip_from_raw_frames_is_encoded_to_h264(tmp_path: Path) -> None:
    frames = list(raw_frames(VIDEO, limit=150))  # 5 s at 30 fps, as a V4L2 camera delivers them
    cfg = BufferConfig(pre_s=2.0, post_s=1.0, clip_preset="ultrafast")
    i = 90
    clip = record(frames, {i: "raw"}, tmp_path, cfg, threaded=True)["raw"].result(timeout=60)
    t = frames[i].pts_s
    assert clip.complete and not clip.remuxed and clip.codec in ("libx264", "mpeg4")
    assert clip.start_pts_s == pytest.approx(t - 2.0, abs=1e-4)  # every JPEG is a keyframe: exact start
    assert t + 1 <= clip.end_pts_s <= t + 1 + 1 / 30 + 1e-4
    codec, times, size = read_back(clip.path)
    assert codec == ("h264" if clip.codec == "libx264" else "mpeg4") and size == (640, 360)
    assert times[0] == 0.0 and len(times) == clip.frames == 91
    np.testing.assert_allclose(np.diff(times), 1 / 30, atol=2e-3)
    assert (
        mean_abs_diff(clip.path, [frames[j].image for j in (30, 60, 120)], [0, 30, 90]) < 5.0
    )  # same picture, same levels


def mean_abs_diff(path: Path, images: list[np.ndarray], at: list[int]) -> float:
    """Mean absolute BGR difference between frames ``at`` of a clip and ``images``."""
    with av.open(str(path)) as c:
        decoded = [f.to_ndarray(format="bgr24") for f in c.decode(c.streams.video[0])]
    return float(
        np.mean(
            [
                np.abs(decoded[k].astype(np.int16) - img.astype(np.int16)).mean()
                for k, img in zip(at, images, strict=True)
            ]
        )
    )


def test_raw_clips_can_be_scaled_down(tmp_path: Path) -> None:
    frames = list(raw_frames(VIDEO, limit=30))
    cfg = BufferConfig(pre_s=0.3, post_s=0.2, clip_max_height=180, clip_preset="ultrafast")
    clip = record(frames, {15: "small"}, tmp_path, cfg)["small"].result()
    _, times, size = read_back(clip.path)
    assert size == (320, 180) and len(times) == clip.frames


def test_mpeg4_fallback_for_raw_frames(tmp_path: Path) -> None:
    frames = list(raw_frames(VIDEO, limit=40))
    cfg = BufferConfig(pre_s=0.5, post_s=0.3, clip_codec="mpeg4")
    clip = record(frames, {20: "m4"}, tmp_path, cfg)["m4"].result()
    codec, times, _ = read_back(clip.path)
    assert codec == "mpeg4" and times[0] == 0.0 and len(times) == clip.frames == 25
    assert all(b > a for a, b in pairwise(times))
    assert mean_abs_diff(clip.path, [frames[5].image, frames[29].image], [0, 24]) < 5.0


def test_unwritable_clip_fails_its_future_and_the_recorder_goes_on(
    camera_frames: list[Frame], tmp_path: Path
) -> None:
    health = Health(tmp_path / "h.json", "t")
    cfg = BufferConfig(pre_s=1.0, post_s=0.2)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    rec = ClipRecorder(PrerollBuffer(cfg), cfg, tmp_path / "ok", health=health)
    futs = []
    for f in camera_frames[:120]:
        rec.push(f)
        if f.index == 50:
            futs.append(rec.trigger("bad", f.pts_s, path=blocker / "bad.mp4"))
        if f.index == 60:
            futs.append(rec.trigger("good", f.pts_s))
    rec.close()
    with pytest.raises(OSError):
        futs[0].result()
    assert futs[1].result().path.exists()
    assert rec.failed == 1 and rec.written == 1
    assert health.snapshot()["components"]["clips"]["status"] == "up"  # recovered with the next clip


@pytest.mark.parametrize("key", ["", "../etc/passwd", "a b", "x" * 120])
def test_clip_key_must_be_a_plain_file_name(tmp_path: Path, key: str) -> None:
    cfg = BufferConfig()
    rec = ClipRecorder(PrerollBuffer(cfg), cfg, tmp_path)
    with pytest.raises(ValueError, match="clip key"):
        rec.trigger(key, 0.0)


def test_raw_camera_end_to_end_through_opencv(tmp_path: Path) -> None:
    """The V4L2 code path with OpenCV reading the shared clip (FFmpeg backend instead of a device):
    raw frames timestamped by the monotonic clock, kept as JPEG, clipped to H.264; the 'camera'
    then stops delivering and is reported down, and the pending clip is finished."""
    import cv2

    health = Health(tmp_path / "h.json", "t")
    src = FrameSource(
        SourceConfig(uri=str(VIDEO), kind="v4l2", reconnect_attempts=0),
        health=health,
        cv_backend=cv2.CAP_FFMPEG,
    )
    cfg = BufferConfig(pre_s=0.4, post_s=0.2, trigger_lag_s=0.0, clip_preset="ultrafast")
    rec = ClipRecorder(PrerollBuffer(cfg), cfg, tmp_path)
    rec.start()
    frames: list[Frame] = []
    fut = late = None
    for f in src.frames():
        frames.append(f)
        rec.push(f)
        time.sleep(
            0.01
        )  # a camera delivers at its frame rate (here at most 100 fps), not as fast as a file reads
        if f.index == 60:
            fut = rec.trigger("raw-cam", f.pts_s)
        if f.index == 237:  # the last frame the 'camera' delivers: it dies before the post-roll
            late = rec.trigger("raw-cam-end", f.pts_s)
    rec.close()
    assert fut is not None and late is not None
    assert len(frames) == 238 and all(f.stream.codec == "rawvideo" and not f.packets for f in frames)
    assert health.snapshot()["components"]["camera"]["status"] == "down"
    clip = fut.result()
    t = frames[60].pts_s
    tick = 1 / 90000  # JPEG packets carry the frame time in 90 kHz ticks
    inside = [f for f in frames if clip.start_pts_s - tick <= f.pts_s <= t + 0.2 + tick]
    assert clip.complete and clip.start_pts_s <= t - 0.4 + 1e-6
    _, times, size = read_back(clip.path)
    assert size == (640, 360) and len(times) == clip.frames == len(inside)
    assert times[0] == 0.0 and all(b > a for a, b in pairwise(times))
    end = late.result()
    assert not end.complete and "stream ended" in end.note
    assert end.frames == len([f for f in frames if f.pts_s >= end.start_pts_s - tick])


def test_missing_hardware_encoder_falls_back_to_software(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    frames = list(raw_frames(VIDEO, limit=40))
    cfg = BufferConfig(pre_s=0.5, post_s=0.3, clip_codec="h264_v4l2m2m", clip_preset="ultrafast")
    with caplog.at_level(logging.WARNING, logger="edge.buffer"):
        clip = record(frames, {20: "hw"}, tmp_path, cfg)["hw"].result()
    if clip.codec == "h264_v4l2m2m":
        pytest.skip("this machine has a V4L2 memory-to-memory H.264 encoder")
    assert clip.codec == "libx264" and "clip_encoder_unusable" in caplog.text
    codec, times, _ = read_back(clip.path)
    assert codec == "h264" and len(times) == clip.frames == 25


def test_a_test_clip_is_the_same_bytes_every_time_it_is_made(tmp_path: Path) -> None:
    """Benchmarks make their 1080p copies at run time: two copies of one source must be one input.
    With x264's frame threads under VBV the bytes (and so the detections, and the events of
    benchmarks/events.py) changed from run to run."""
    a, b = (make_test_clip(tmp_path / f"{n}.mp4", width=1280, height=720, fps=25, seconds=3.0) for n in "ab")
    assert a.read_bytes() == b.read_bytes()
