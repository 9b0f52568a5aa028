"""``anqi-edge test-camera``: the installer's check of the camera stream, before anything else runs.

Reads the configured source (or ``--uri``) for a few seconds and prints what the appliance will
work with: codec, size, frame rate (nominal and measured), keyframe interval, bit rate, and the
pre-roll memory this stream needs. ``--snapshot`` saves a frame for ``anqi-edge calibrate``;
``--clip`` writes the last seconds as an evidence clip would be (remuxed, no re-encode).
Exit status 1 when no frame arrived.
"""

from __future__ import annotations

import sys
import time
from itertools import pairwise
from pathlib import Path

import click

from edge.cli.common import config_or_exit


@click.command("test-camera")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Site config (its source and buffer sections).",
)
@click.option(
    "--uri",
    default=None,
    help="Open this instead of source.uri (file, rtsp:// URL, /dev/videoN, GStreamer pipeline).",
)
@click.option(
    "--seconds", default=10.0, show_default=True, type=click.FloatRange(0.5, 600), help="How long to read."
)
@click.option(
    "--snapshot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the last frame as JPEG (for calibrate).",
)
@click.option(
    "--clip",
    "clip_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the last pre_s + post_s seconds as an MP4 clip.",
)
def test_camera(
    config: Path | None, uri: str | None, seconds: float, snapshot: Path | None, clip_path: Path | None
) -> None:
    """Read the camera for a few seconds and report its stream (codec, size, fps, keyframes, bit rate)."""
    import cv2

    from edge.buffer import ClipRecorder, PrerollBuffer
    from edge.source import Frame, FrameSource

    cfg = config_or_exit(config, log_level="ERROR")
    src_cfg = cfg.source.model_copy(update={"uri": uri} if uri else {})
    if src_cfg.reconnect_attempts is None:
        src_cfg = src_cfg.model_copy(update={"reconnect_attempts": 2})
    try:
        source = FrameSource(src_cfg, base_dir=cfg.base_dir)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    buf_cfg = cfg.buffer
    clips_dir = clip_path.parent if clip_path else Path(".")
    recorder = ClipRecorder(PrerollBuffer(buf_cfg), buf_cfg, clips_dir)
    click.echo(f"opening {source.kind} {source.display_uri} ...")
    t0 = time.monotonic()
    first: Frame | None = None
    last: Frame | None = None
    keyframe_pts: list[float] = []
    nbytes = 0
    for frame in source.frames():
        first = first or frame
        last = frame
        recorder.push(frame)
        for p in frame.packets:
            nbytes += p.size
            if p.keyframe:
                keyframe_pts.append(p.pts_s)
        if time.monotonic() - t0 >= seconds:
            source.stop()
    if first is None or last is None:
        recorder.close()
        click.echo(f"no frame: {source.stats.last_error or 'the source delivered nothing'}", err=True)
        sys.exit(1)
    wall = time.monotonic() - t0
    span = max(last.pts_s - first.pts_s, 1e-6)
    n = source.stats.frames
    info = last.stream
    w, h = last.size
    click.echo(
        f"stream     {info.codec} {w}x{h}, nominal {info.fps:.2f} fps, {n} frames in {span:.2f} s of video "
        f"({(n - 1) / span:.2f} fps), read in {wall:.2f} s"
    )
    if keyframe_pts:
        gaps = [b - a for a, b in pairwise(keyframe_pts)]
        gop = f"every {sum(gaps) / len(gaps):.2f} s" if gaps else "one seen"
        click.echo(f"keyframes  {len(keyframe_pts)}, {gop}")
        click.echo(f"bit rate   {nbytes * 8 / span / 1e6:.2f} Mbit/s")
    else:
        click.echo("keyframes  raw source: every frame is kept as JPEG")
    buf = recorder.buffer
    click.echo(
        f"pre-roll   {buf.nbytes / 2**20:.2f} MB holding {buf.duration_s:.2f} s (buffer.max_mb {buf_cfg.max_mb:g})"
    )
    if source.stats.corrupt_skipped or source.stats.reconnects:
        click.echo(
            f"problems   {source.stats.corrupt_skipped} corrupt packet(s) skipped, {source.stats.reconnects} reconnect(s)"
        )
    if snapshot:
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(snapshot), last.image):
            raise click.ClickException(f"cannot write {snapshot}")
        click.echo(f"snapshot   {snapshot}")
    if clip_path:
        at = max(first.pts_s, last.pts_s - buf_cfg.post_s)
        fut = recorder.trigger(clip_path.stem, at, path=clip_path)
        recorder.close()
        try:
            clip = fut.result()
        except Exception as e:
            raise click.ClickException(f"clip not written: {e}") from None
        click.echo(
            f"clip       {clip.path}: {clip.frames} frames, {clip.duration_s:.2f} s, {clip.size / 2**20:.2f} MB"
            f"{'' if clip.complete else ' (' + clip.note + ')'}"
        )
    else:
        recorder.close()
