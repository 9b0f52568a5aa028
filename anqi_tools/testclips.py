"""Test and benchmark clips made at run time from ``../shared`` data (never committed).

:func:`make_test_clip` turns the bike-lane clip (640x360, 30 fps, 7.9 s) into a camera-like
1080p25 H.264 stream: upscaled, resampled to 25 fps, a keyframe every ``gop`` frames, no
B-frames (like most IP cameras), constant-ish bit rate. The result is cached by its parameters.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import av.container

    from edge.source.frame import Frame


#: the MIT-licensed bike-lane clip shipped in the package (``demo/LICENSE.bikelane-cyclists``): the demo's
#: default input, the same bytes as ``../shared/video/bikelane-cyclists.mp4``, so a bare checkout runs it
DEMO_VIDEO = Path(__file__).resolve().parent / "demo" / "bikelane-cyclists.mp4"
#: its by-eye truth (riders, seconds visible, expected events), shipped beside it
DEMO_TRUTH = DEMO_VIDEO.with_name("bikelane-cyclists.truth.yaml")


def default_video() -> Path:
    """The shipped demo clip (:data:`DEMO_VIDEO`)."""
    return DEMO_VIDEO


def cache_dir() -> Path:
    """``$ANQI_CACHE_DIR`` or ``~/.cache/anqi/testclips`` (falls back to the temp dir)."""
    env = os.environ.get("ANQI_CACHE_DIR")
    d = Path(env).expanduser() if env else Path.home() / ".cache" / "anqi" / "testclips"
    try:
        d.mkdir(parents=True, exist_ok=True)
        return d
    except OSError:
        d = Path(tempfile.gettempdir()) / "anqi-testclips"
        d.mkdir(parents=True, exist_ok=True)
        return d


def make_test_clip(
    path: Path | None = None,
    *,
    source: Path | None = None,
    width: int = 1920,
    height: int = 1080,
    fps: int = 25,
    gop: int = 50,
    bframes: int = 0,
    bit_rate: int = 4_000_000,
    seconds: float | None = None,
    loops: int = 1,
    preset: str = "veryfast",
) -> Path:
    """Write (once; cached) an H.264 MP4 made from ``source`` and return its path. The same arguments
    give the same bytes (one encoder thread: see below).

    Args:
        path: where to write; default: a file in :func:`cache_dir` named after the parameters.
        source: the video to convert (default: the shared bike-lane clip).
        width, height, fps: output size and constant frame rate.
        gop: frames per keyframe group (50 = one keyframe every 2 s at 25 fps).
        bframes: B-frames between references (0 like most cameras).
        bit_rate: target bits per second (a 1080p camera main stream: 2-8 Mbit/s).
        seconds: stop after this much video (default: the whole source, ``loops`` times).
        loops: play the source this many times in a row (a longer clip for window tests).
    """
    import av

    src = Path(source) if source else default_video()
    if not src.is_file():
        raise FileNotFoundError(
            f"test clip source not found: {src} (expected ../shared beside the checkout, or set ANQI_SHARED)"
        )
    st = src.stat()
    key = (
        f"{src.resolve()}|{st.st_size}|{int(st.st_mtime)}|{width}x{height}@{fps}|g{gop}|b{bframes}|r{bit_rate}"
        f"|s{seconds}|l{loops}|{preset}|v2"
    )
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:12]  # a cache file name
    out_path = (
        Path(path)
        if path
        else cache_dir() / f"{src.stem}-{width}x{height}-{fps}fps-g{gop}-b{bframes}-x{loops}-{digest}.mp4"
    )
    if out_path.is_file() and out_path.stat().st_size > 0:
        return out_path
    out_path.parent.mkdir(parents=True, exist_ok=True)
    part = out_path.with_name(f"{out_path.name}.{os.getpid()}.part")
    try:
        with av.open(str(part), "w", format="mp4") as out:
            ostream = out.add_stream("libx264", rate=fps)
            ostream.width, ostream.height, ostream.pix_fmt = width, height, "yuv420p"
            ostream.bit_rate = bit_rate
            ostream.codec_context.gop_size = gop
            ostream.codec_context.options = {
                "preset": preset,
                "bf": str(bframes),
                "keyint_min": str(gop),
                "sc_threshold": "0",  # keyframes only on the fixed grid, like a camera
                # threads=1: x264's frame threads under VBV rate control decide each frame's bits from
                # frames still in flight, so the same source encoded twice differed (two 1080p copies of
                # the bikelane clip: 4,018,698 and 4,018,135 bytes) and a benchmark run on a fresh copy
                # gave other events (2 vs 4 at 1080p); one thread makes the clip a function of its inputs
                "x264-params": f"vbv-maxrate={bit_rate // 1000}:vbv-bufsize={bit_rate // 1000}:threads=1",
            }
            tb = Fraction(1, fps)
            n_out = 0
            last_img = None
            for t, img in _source_images(src, loops):
                # emit every output frame whose time has come (nearest earlier source frame)
                while last_img is not None and n_out / fps < t - 1e-9:
                    n_out = _encode(ostream, out, last_img, n_out, tb, width, height)
                    if seconds is not None and n_out >= seconds * fps:
                        break
                last_img = img
                if seconds is not None and n_out >= seconds * fps:
                    break
            if last_img is not None and (seconds is None or n_out < seconds * fps):
                n_out = _encode(ostream, out, last_img, n_out, tb, width, height)
            for pkt in ostream.encode(None):
                out.mux(pkt)
        os.replace(part, out_path)
    finally:
        part.unlink(missing_ok=True)
    return out_path


def _source_images(src: Path, loops: int) -> Iterator[tuple[float, np.ndarray]]:
    """(time s, BGR image) of every frame of ``src``, played ``loops`` times back to back."""
    import av

    offset = 0.0
    for _ in range(max(1, loops)):
        end = offset
        with av.open(str(src)) as inp:
            istream = inp.streams.video[0]
            istream.thread_type = "AUTO"
            step = 1.0 / float(istream.average_rate or 25)
            for i, vf in enumerate(inp.decode(istream)):
                t = (
                    float(vf.pts * vf.time_base)
                    if vf.pts is not None and vf.time_base is not None
                    else i * step
                )
                end = offset + t + step
                yield offset + t, vf.to_ndarray(format="bgr24")
        offset = end


def _encode(
    ostream: Any,
    out: av.container.OutputContainer,
    img: np.ndarray,
    n: int,
    tb: Fraction,
    width: int,
    height: int,
) -> int:
    import av
    import cv2

    if img.shape[1] != width or img.shape[0] != height:
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    frame = av.VideoFrame.from_ndarray(img, format="bgr24")
    frame.pts = n
    frame.time_base = tb
    for pkt in ostream.encode(frame):
        out.mux(pkt)
    return n + 1


def raw_frames(path: Path, *, limit: int | None = None, session: int = 1) -> Iterator[Frame]:
    """The frames of a video file as a raw camera (V4L2 / GStreamer) delivers them: decoded BGR
    images, no encoded packets (``RAW_CODEC``), stream time from the file; for the JPEG path of the
    ring buffer in tests and benchmarks."""
    import time
    from datetime import datetime, timedelta, timezone

    import av

    from edge.source.frame import RAW_CODEC, Frame, StreamInfo

    utc0 = datetime.now(timezone.utc)
    with av.open(str(path)) as inp:
        vs = inp.streams.video[0]
        vs.thread_type = "AUTO"
        fps = float(vs.average_rate or 25)
        info = StreamInfo(
            session=session,
            codec=RAW_CODEC,
            width=vs.codec_context.width,
            height=vs.codec_context.height,
            time_base=Fraction(1, 90000),
            fps=fps,
        )
        for i, vf in enumerate(inp.decode(vs)):
            if limit is not None and i >= limit:
                return
            img = vf.to_ndarray(format="bgr24")
            img.flags.writeable = False
            pts_s = (
                float(vf.pts * vf.time_base) if vf.pts is not None and vf.time_base is not None else i / fps
            )
            yield Frame(
                image=img,
                index=i,
                pts_s=pts_s,
                mono=time.monotonic(),
                utc=utc0 + timedelta(seconds=pts_s),
                stream=info,
                keyframe=True,
            )
