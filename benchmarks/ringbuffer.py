"""Ring buffer and clip figures for 1080p25 (issue 8: "ring buffer < 64 MB for 7 s of 1080p25").

    .venv/bin/python benchmarks/ringbuffer.py [--quick]

Measures, on a 1080p25 H.264 clip made at run time from ../shared (camera-like: 4 Mbit/s, a
keyframe every 2 s, no B-frames; edge.source.testclips.make_test_clip):

* capture: demux + decode + BGR conversion, frames/s (FrameSource, as fast as possible);
* H.264 ring: bytes held for a 7 s window (pre 6 s + post 1 s) and for the default config
  (pre 6 s + trigger lag 2 s), peak over the run (includes the extra group before the window);
* clip remux time for a [t-6, t+1] clip;
* JPEG ring (raw sources): 1080p JPEG size and cv2.imencode time per frame, on the upscaled clip and
  on real camera texture (helmet9 frames resized to 1920x1080), bytes for 7 s at 25 fps;
* JPEG -> H.264 clip encode time for 7 s (libx264, the configured preset).

Prints a table; the last line is one JSON object (``ringbuffer_mb_7s`` is the H.264 figure).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.buffer import ClipRecorder, PrerollBuffer  # noqa: E402
from edge.config.buffer import BufferConfig  # noqa: E402
from edge.config.source import SourceConfig  # noqa: E402
from edge.paths import shared_dir  # noqa: E402
from edge.source import Frame, FrameSource  # noqa: E402
from edge.source.frame import RAW_CODEC, StreamInfo  # noqa: E402
from edge.source.testclips import make_test_clip  # noqa: E402

MB = 2**20


def ring_peak(frames: list[Frame], cfg: BufferConfig) -> tuple[int, float]:
    buf = PrerollBuffer(cfg)
    peak, peak_s = 0, 0.0
    for f in frames:
        buf.push(f)
        if buf.nbytes > peak:
            peak, peak_s = buf.nbytes, buf.duration_s
    return peak, peak_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the JPEG->H.264 clip encode (the slow part)")
    ap.add_argument("--bit-rate", type=int, default=4_000_000, help="test clip bit rate (a 1080p camera: 2-8 Mbit/s)")
    args = ap.parse_args()
    fps = 25
    t0 = time.perf_counter()
    clip = make_test_clip(width=1920, height=1080, fps=fps, gop=50, loops=2, bit_rate=args.bit_rate)
    make_s = time.perf_counter() - t0

    # capture: decode every frame
    t0 = time.perf_counter()
    frames = list(FrameSource(SourceConfig(uri=str(clip))).frames())
    cap_s = time.perf_counter() - t0
    capture_fps = len(frames) / cap_s
    duration = frames[-1].pts_s + 1 / fps
    stream_mbit = sum(p.size for f in frames for p in f.packets) * 8 / duration / 1e6

    # H.264 ring
    peak7, held7 = ring_peak(frames, BufferConfig(pre_s=6.0, post_s=1.0, trigger_lag_s=1.0))  # 7 s window
    peak_def, held_def = ring_peak(frames, BufferConfig())  # pre 6 + lag 2
    window7 = [p for f in frames for p in f.packets if duration - 7.0 <= p.pts_s]
    exact7 = sum(p.size for p in window7)

    # remux a [t-6, t+1] clip: inline writing, timed on the push that completes the clip
    cfg = BufferConfig()
    with tempfile.TemporaryDirectory() as tmp:
        rec = ClipRecorder(PrerollBuffer(cfg), cfg, Path(tmp))
        trig = frames[int(12.5 * fps)]
        fut = None
        remux_write_ms = float("nan")
        for f in frames:
            t0 = time.perf_counter()
            rec.push(f)
            if fut is not None and fut.done():
                remux_write_ms = (time.perf_counter() - t0) * 1000
                break
            if f.index == trig.index:
                fut = rec.trigger("bench", f.pts_s)
        rec.close()
        assert fut is not None
        remux_clip = fut.result()

    # JPEG ring for raw sources: 1080p frames from the clip (smooth, upscaled) and real texture (helmet9)
    quality = cfg.jpeg_quality
    sample = [f.image for f in frames[::10]]
    jpeg_sizes, jpeg_ms = [], []
    for img in sample:
        t0 = time.perf_counter()
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        jpeg_ms.append((time.perf_counter() - t0) * 1000)
        jpeg_sizes.append(len(buf))
    real_dir = shared_dir() / "data" / "helmet9-dev" / "images"
    real_imgs = [cv2.resize(cv2.imread(str(p)), (1920, 1080)) for p in sorted(real_dir.glob("*.jpg"))[:20]]
    real_sizes, real_ms = [], []
    for img in real_imgs:
        t0 = time.perf_counter()
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        real_ms.append((time.perf_counter() - t0) * 1000)
        real_sizes.append(len(buf))
    jpeg7_mb = float(np.mean(jpeg_sizes)) * fps * 7 / MB
    jpeg7_real_mb = float(np.mean(real_sizes)) * fps * 7 / MB if real_sizes else float("nan")

    # JPEG ring through PrerollBuffer for 7 s of raw frames (the real path: worker thread) and the clip encode
    raw_info = StreamInfo(session=1, codec=RAW_CODEC, width=1920, height=1080, time_base=frames[0].stream.time_base, fps=fps)
    raw = [Frame(image=f.image, index=f.index, pts_s=f.pts_s, mono=f.mono, utc=f.utc, stream=raw_info, keyframe=True)
           for f in frames[: int(8.5 * fps)]]
    jcfg = BufferConfig(pre_s=6.0, post_s=1.0, trigger_lag_s=0.0)
    jbuf = PrerollBuffer(jcfg)
    jbuf.start()
    t0 = time.perf_counter()
    for f in raw:
        jbuf.push(f)
    jbuf.drain()
    jpeg_push_fps = len(raw) / (time.perf_counter() - t0)
    jpeg_ring_mb = jbuf.nbytes / MB
    jbuf.close()
    clip_encode_s = float("nan")
    if not args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            jb = PrerollBuffer(jcfg)
            rec = ClipRecorder(jb, jcfg, Path(tmp))
            i_trig = int(6.0 * fps)
            for f in raw[: i_trig + 1]:
                rec.push(f)
            fut = rec.trigger("jpeg", raw[i_trig].pts_s)
            for f in raw[i_trig + 1:]:
                t0 = time.perf_counter()
                rec.push(f)
                if fut.done():
                    clip_encode_s = time.perf_counter() - t0
                    break
            rec.close()
            jclip = fut.result()

    rows = [
        ("test clip", f"{clip.name} ({duration:.1f} s, {stream_mbit:.2f} Mbit/s, made in {make_s:.1f} s)"),
        ("capture 1080p (demux+decode+BGR)", f"{capture_fps:.1f} frames/s"),
        ("H.264 ring, 7 s window (peak)", f"{peak7 / MB:.2f} MB holding {held7:.2f} s"),
        ("H.264 ring, default pre 6 s + lag 2 s (peak)", f"{peak_def / MB:.2f} MB holding {held_def:.2f} s"),
        ("H.264 bytes of exactly 7 s", f"{exact7 / MB:.2f} MB"),
        ("clip remux [t-6, t+1]", f"{remux_write_ms:.0f} ms, {remux_clip.frames} frames, {remux_clip.duration_s:.2f} s"),
        (f"JPEG q{quality} 1080p (upscaled clip)", f"{np.mean(jpeg_sizes) / 1024:.0f} KiB/frame, {np.mean(jpeg_ms):.1f} ms/frame"),
        (f"JPEG q{quality} 1080p (helmet9 texture)", f"{np.mean(real_sizes) / 1024:.0f} KiB/frame, {np.mean(real_ms):.1f} ms/frame"),
        ("JPEG ring, 7 s at 25 fps", f"{jpeg7_mb:.1f} MB (upscaled) / {jpeg7_real_mb:.1f} MB (real texture); measured ring {jpeg_ring_mb:.1f} MB"),
        ("JPEG worker throughput", f"{jpeg_push_fps:.1f} frames/s (needs 25)"),
        ("JPEG -> H.264 clip (7 s, libx264 " + jcfg.clip_preset + ")", "skipped (--quick)" if args.quick else f"{clip_encode_s:.1f} s for {jclip.frames} frames"),
    ]
    w = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    print(json.dumps({
        "ringbuffer_mb_7s": round(peak7 / MB, 2),
        "ringbuffer_mb_default": round(peak_def / MB, 2),
        "ringbuffer_mb_7s_jpeg": round(max(jpeg7_mb, jpeg7_real_mb), 1),
        "stream_mbit_s": round(stream_mbit, 2),
        "capture_fps_1080p": round(capture_fps, 1),
        "clip_remux_ms": round(remux_write_ms, 1),
        "jpeg_encode_ms_1080p": round(float(np.mean(real_ms + jpeg_ms)), 2),
        "jpeg_worker_fps": round(jpeg_push_fps, 1),
        "jpeg_clip_encode_s_7s": None if args.quick else round(clip_encode_s, 2),
    }))


if __name__ == "__main__":
    main()
