"""Ring buffer and clip figures for 1080p25 (issue 8: "ring buffer < 64 MB for 7 s of 1080p25").

    .venv/bin/python benchmarks/ringbuffer.py [--quick]
    .venv/bin/python benchmarks/ringbuffer.py --soak 12000   # memory stays flat over a long stream

Measures, on a 1080p25 H.264 clip made at run time from ../shared (camera-like: 4 Mbit/s, a
keyframe every 2 s, no B-frames; anqi_tools.testclips.make_test_clip):

* capture: demux + decode, frames/s (FrameSource, as fast as possible; BGR conversion is lazy);
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

from anqi_contract.paths import shared_dir  # noqa: E402
from anqi_tools.testclips import make_test_clip  # noqa: E402
from edge.buffer import ClipRecorder, PrerollBuffer, write_clip  # noqa: E402
from edge.config.buffer import BufferConfig  # noqa: E402
from edge.config.source import SourceConfig  # noqa: E402
from edge.source import Frame, FrameSource  # noqa: E402
from edge.source.frame import RAW_CODEC, StreamInfo  # noqa: E402

MB = 2**20


class PeakRing:
    """A PrerollBuffer that remembers its largest size."""

    def __init__(self, cfg: BufferConfig):
        self.buf = PrerollBuffer(cfg)
        self.peak, self.held_s = 0, 0.0

    def push(self, f: Frame) -> None:
        self.buf.push(f)
        if self.buf.nbytes > self.peak:
            self.peak, self.held_s = self.buf.nbytes, self.buf.duration_s


def rss_mb() -> float:
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def soak(frames: int) -> None:
    """Stream the shared clip in a loop over TCP (FFmpeg), push every frame, trigger a clip every 300
    frames; print RSS and ring size every 2000 frames (they must stay flat)."""
    import shutil
    import subprocess

    from anqi_contract.localbroker import free_port
    from edge.source import DetectSampler

    port = free_port()
    ff = subprocess.Popen(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "quiet",
            "-stream_loop",
            "-1",
            "-i",
            str(shared_dir() / "video" / "bikelane-cyclists.mp4"),
            "-c",
            "copy",
            "-f",
            "mpegts",
            f"tcp://127.0.0.1:{port}?listen=1",
        ]
    )
    time.sleep(0.5)
    cfg = BufferConfig()
    tmp = Path(tempfile.mkdtemp(prefix="anqi-soak-"))
    buf = PrerollBuffer(cfg)
    rec = ClipRecorder(buf, cfg, tmp)
    rec.start()
    src = FrameSource(SourceConfig(uri=f"tcp://127.0.0.1:{port}", reconnect_initial_s=0.1))
    sampler = DetectSampler(8.0)
    futs = []
    n = 0
    t0 = time.perf_counter()
    print("frames  rss_mb  ring_mb  ring_s  pending_clips")
    for f in src.frames():
        rec.push(f)
        if sampler.want(f):
            f.image  # noqa: B018  detection would convert these
        n += 1
        if n % 300 == 0:
            futs.append(rec.trigger(f"soak{n}", f.pts_s))
        if n % 2000 == 0:
            print(f"{n:6d}  {rss_mb():6.0f}  {buf.nbytes / MB:7.2f}  {buf.duration_s:6.2f}  {rec.pending}")
        if n >= frames:
            src.stop()
    rec.close()
    ff.kill()
    ff.wait()
    clips = [f.result() for f in futs]
    shutil.rmtree(tmp)
    print(
        json.dumps(
            {
                "soak_frames": n,
                "soak_s": round(time.perf_counter() - t0, 1),
                "clips": len(clips),
                "clips_complete": sum(c.complete for c in clips),
                "rss_mb_end": round(rss_mb()),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the JPEG->H.264 clip encode (the slow part)")
    ap.add_argument(
        "--bit-rate", type=int, default=4_000_000, help="test clip bit rate (a 1080p camera: 2-8 Mbit/s)"
    )
    ap.add_argument(
        "--soak",
        type=int,
        default=0,
        metavar="FRAMES",
        help="instead: stream this many frames over TCP, check memory stays flat",
    )
    args = ap.parse_args()
    if args.soak:
        soak(args.soak)
        return
    fps = 25
    t0 = time.perf_counter()
    clip = make_test_clip(width=1920, height=1080, fps=fps, gop=50, loops=2, bit_rate=args.bit_rate)
    make_s = time.perf_counter() - t0

    # one streaming pass: capture (demux + decode), two H.264 rings, a remux clip, raw frames into a JPEG ring
    cfg = BufferConfig()
    ring7 = PeakRing(BufferConfig(pre_s=6.0, post_s=1.0, trigger_lag_s=1.0))  # holds >= 7 s
    ring_def = PeakRing(cfg)  # pre 6 s + trigger lag 2 s
    jcfg = BufferConfig(pre_s=6.0, post_s=1.0, trigger_lag_s=1.0)
    jring = PrerollBuffer(jcfg)
    jring.start()  # JPEG worker thread, as in the daemon
    tmp = tempfile.TemporaryDirectory()
    rec = ClipRecorder(PrerollBuffer(cfg), cfg, Path(tmp.name))
    raw_info: StreamInfo | None = None
    i_trig, j_stop = int(12.5 * fps), int(8.5 * fps)
    fut = None
    remux_write_ms = float("nan")
    clip_encode_s = clip_encode_cpu_s = float("nan")
    sizes: list[int] = []
    jpeg_sizes, jpeg_ms = [], []
    cap_s = 0.0
    n = 0
    t_next = time.perf_counter()
    src = FrameSource(SourceConfig(uri=str(clip)))
    for f in src.frames():
        cap_s += time.perf_counter() - t_next
        n += 1
        sizes.extend(p.size for p in f.packets)
        ring7.push(f)
        ring_def.push(f)
        t0 = time.perf_counter()
        rec.push(f)
        if fut is not None and fut.done() and remux_write_ms != remux_write_ms:
            remux_write_ms = (
                time.perf_counter() - t0
            ) * 1000  # the push that completed the clip wrote it inline
        if f.index == i_trig:
            fut = rec.trigger("bench", f.pts_s)
        if f.index < j_stop:  # the same frames as a raw camera would give them
            if raw_info is None:
                raw_info = StreamInfo(
                    session=1,
                    codec=RAW_CODEC,
                    width=f.size[0],
                    height=f.size[1],
                    time_base=f.stream.time_base,
                    fps=float(fps),
                )
            raw = Frame(
                image=f.image,
                index=f.index,
                pts_s=f.pts_s,
                mono=f.mono,
                utc=f.utc,
                stream=raw_info,
                keyframe=True,
            )
            jring.push(raw)
            if f.index % 10 == 0:
                img = f.image
                t0 = time.thread_time()
                ok, jbuf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
                jpeg_ms.append((time.thread_time() - t0) * 1000)
                jpeg_sizes.append(len(jbuf))
        t_next = time.perf_counter()
    jring.drain()
    jpeg_ring_mb = jring.nbytes / MB
    jring_s = jring.duration_s
    jstats = jring.stats
    jwindow = jring.window(-1.0)  # 7 s of JPEG frames
    jring.close()
    rec.close()
    capture_fps = n / cap_s
    duration = n / fps
    stream_mbit = sum(sizes) * 8 / duration / 1e6
    exact7 = sum(sizes[-7 * fps :])  # no B-frames: one packet per frame
    assert fut is not None
    remux_clip = fut.result()
    jclip_frames = 0
    if not args.quick:
        # the whole encode at once, nothing else running: its wall and CPU cost
        t0, c0 = time.perf_counter(), time.process_time()
        jclip_frames = write_clip(jwindow, Path(tmp.name) / "whole.mp4", jcfg).frames
        clip_encode_s, clip_encode_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    tmp.cleanup()
    peak7, held7, peak_def, held_def = ring7.peak, ring7.held_s, ring_def.peak, ring_def.held_s
    jpeg_push_fps = jstats.jpeg_encoded / jstats.jpeg_cpu_s if jstats.jpeg_cpu_s else float("nan")

    # real camera texture: helmet9 frames resized to 1920x1080
    real_dir = shared_dir() / "data" / "helmet9-dev" / "images"
    real_sizes, real_ms = [], []
    for path in sorted(real_dir.glob("*.jpg"))[:20]:
        still = cv2.imread(str(path))
        assert still is not None, path
        img = cv2.resize(still, (1920, 1080))
        t0 = time.thread_time()
        ok, jbuf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        real_ms.append((time.thread_time() - t0) * 1000)
        real_sizes.append(len(jbuf))
    quality = cfg.jpeg_quality
    jpeg7_mb = float(np.mean(jpeg_sizes)) * fps * 7 / MB
    jpeg7_real_mb = float(np.mean(real_sizes)) * fps * 7 / MB if real_sizes else float("nan")

    rows = [
        ("test clip", f"{clip.name} ({duration:.1f} s, {stream_mbit:.2f} Mbit/s, made in {make_s:.1f} s)"),
        ("capture 1080p (demux + decode; BGR only on use)", f"{capture_fps:.1f} frames/s"),
        ("H.264 ring, 7 s window (peak)", f"{peak7 / MB:.2f} MB holding {held7:.2f} s"),
        ("H.264 ring, default pre 6 s + lag 2 s (peak)", f"{peak_def / MB:.2f} MB holding {held_def:.2f} s"),
        ("H.264 bytes of exactly 7 s", f"{exact7 / MB:.2f} MB"),
        (
            "clip remux [t-6, t+1]",
            f"{remux_write_ms:.0f} ms, {remux_clip.frames} frames, {remux_clip.duration_s:.2f} s",
        ),
        (
            f"JPEG q{quality} 1080p (upscaled clip)",
            f"{np.mean(jpeg_sizes) / 1024:.0f} KiB/frame, {np.mean(jpeg_ms):.1f} CPU ms/frame",
        ),
        (
            f"JPEG q{quality} 1080p (helmet9 texture)",
            f"{np.mean(real_sizes) / 1024:.0f} KiB/frame, {np.mean(real_ms):.1f} CPU ms/frame",
        ),
        (
            "JPEG ring, 7 s at 25 fps",
            f"{jpeg7_mb:.1f} MB (upscaled) / {jpeg7_real_mb:.1f} MB (real texture); "
            f"measured ring {jpeg_ring_mb:.1f} MB holding {jring_s:.2f} s",
        ),
        ("JPEG worker capacity", f"{jpeg_push_fps:.1f} frames per CPU second (needs 25)"),
        (
            "JPEG -> H.264 clip (7 s, libx264 " + jcfg.clip_preset + ")",
            "skipped (--quick)"
            if args.quick
            else f"{clip_encode_s:.1f} s wall, {clip_encode_cpu_s:.1f} CPU s for {jclip_frames} frames",
        ),
    ]
    w = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    print(
        json.dumps(
            {
                "ringbuffer_mb_7s": round(peak7 / MB, 2),
                "ringbuffer_mb_default": round(peak_def / MB, 2),
                "ringbuffer_mb_7s_jpeg": round(max(jpeg7_mb, jpeg7_real_mb), 1),
                "stream_mbit_s": round(stream_mbit, 2),
                "capture_fps_1080p": round(capture_fps, 1),
                "clip_remux_ms": round(remux_write_ms, 1),
                "jpeg_encode_cpu_ms_1080p": round(float(np.mean(real_ms + jpeg_ms)), 2),
                "jpeg_worker_fps": round(jpeg_push_fps, 1),
                "jpeg_clip_encode_s_7s": None if args.quick else round(clip_encode_s, 2),
                "jpeg_clip_encode_cpu_s_7s": None if args.quick else round(clip_encode_cpu_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
