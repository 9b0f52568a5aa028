"""``FrameSource``: open a file, network stream, V4L2 device or GStreamer pipeline, timestamp every
frame, survive drops.

Compressed sources (files, RTSP and other URLs) are demuxed with PyAV: every packet goes on with
the frames (``Frame.packets``) so the ring buffer keeps encoded video and clips are remuxed.
Raw sources (V4L2, GStreamer appsink) are read with OpenCV; the buffer JPEG-encodes their frames.

The capture loop (:meth:`FrameSource.frames`) never raises for a bad source: a failure to open,
a dropped stream or a read error is logged, reported to health (``camera`` down) and retried with
exponential backoff; a corrupt packet is skipped and counted. It ends only when :meth:`stop` is
called, at the end of a file, or after ``reconnect_attempts`` failures in a row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from anqi_contract.logs import log
from edge.config.source import SourceConfig
from edge.health import Health, Status
from edge.source.frame import RAW_CODEC, EncodedPacket, Frame, StreamInfo
from edge.source.uri import SourceKind, file_path, guess_kind, redact_uri

logger = logging.getLogger("edge.source")

SourceState = Literal["starting", "up", "down", "ended", "stopped"]
#: the camera component's health status for each source state
_HEALTH_STATUS: dict[SourceState, Status] = {
    "up": "up",
    "down": "down",
    "ended": "off",
    "stopped": "off",
    "starting": "degraded",
}

#: reopen attempts for a file when ``reconnect_attempts`` is null (cameras retry forever)
FILE_ATTEMPTS = 3
#: frames between two updates of the camera's figures in health
HEALTH_EVERY = 250
#: a session must deliver frames this long before its failure counts as new (flapping sources back off)
STABLE_S = 10.0
#: network streams: a decode-time step backwards / forwards beyond these is a discontinuity (reopen)
MAX_BACKWARD_S = 1.0
MAX_FORWARD_S = 30.0
#: log the first N corrupt packets of a session, then every Nth
_CORRUPT_LOG_EVERY = 50


class SourceError(Exception):
    """A source that cannot be opened or stopped delivering (the loop retries it)."""


@dataclass
class SourceStats:
    """Counters of one :class:`FrameSource` (read from any thread; written by the capture loop)."""

    state: SourceState = "starting"
    frames: int = 0
    packets: int = 0
    corrupt_skipped: int = 0
    #: decoded frames dropped because their time was not after the previous frame's (an H.264
    #: decoder that learns of B-frames only after its first output, seen on RTSP cameras)
    out_of_order_dropped: int = 0
    sessions: int = 0
    reconnects: int = 0
    failures_in_row: int = 0
    last_error: str = ""
    next_retry_s: float | None = None
    #: realtime files: how far behind its schedule the last frame / the worst frame came (s)
    realtime_lag_s: float = 0.0
    realtime_lag_max_s: float = 0.0


class FrameSource:
    """Frames from ``cfg.source``: iterate :meth:`frames` in the capture thread.

    Args:
        cfg: the ``source`` section.
        base_dir: folder that a relative file path is relative to (the config file's folder).
        health: where the ``camera`` component's state goes (``up`` / ``down`` with the reason).
        on_state: called with ``(state, detail)`` on every change (e.g. to raise an alarm).
        component: name of the health component.
        cv_backend: OpenCV capture API for raw sources instead of ``CAP_V4L2`` / ``CAP_GSTREAMER``
            (e.g. ``cv2.CAP_FFMPEG`` to read a file as a raw camera in tests).
    """

    def __init__(
        self,
        cfg: SourceConfig,
        *,
        base_dir: Path | None = None,
        health: Health | None = None,
        on_state: Callable[[SourceState, str], None] | None = None,
        component: str = "camera",
        cv_backend: int | None = None,
    ):
        if not cfg.uri.strip():
            raise ValueError(
                "source.uri: empty; name a file, rtsp:// URL, /dev/videoN or a GStreamer pipeline"
            )
        self.cfg = cfg
        self.kind: SourceKind = guess_kind(cfg.uri) if cfg.kind == "auto" else cfg.kind
        self.uri = cfg.uri.strip()
        if self.kind == "file":
            p = Path(file_path(self.uri)).expanduser()
            if not p.is_absolute() and base_dir is not None:
                p = base_dir / p
            self.uri = str(p)
        self.display_uri = redact_uri(self.uri)
        self.health = health
        self.on_state = on_state
        self.component = component
        self.cv_backend = cv_backend
        self.stats = SourceStats()
        self._stop = threading.Event()
        self._index = 0
        self._session = 0
        # continuous timeline across sessions
        self._last_pts_s: float | None = None
        self._last_mono: float | None = None
        self._last_fps = 25.0
        # file sources: one timeline and one wall-clock anchor for the whole file, even after a reopen
        self._file_stream: StreamInfo | None = None
        self._file_utc0: datetime | None = None
        self._file_last_dts: int | None = None
        self._file_last_pts: int | None = None
        self._health_mono = time.monotonic()
        # raw sources: their timeline is the monotonic clock since the first frame ever captured
        self._mono0: float | None = None

    # ------------------------------------------------------------------ control
    @property
    def max_attempts(self) -> int | None:
        """Failures in a row before giving up (None: never give up)."""
        if self.cfg.reconnect_attempts is not None:
            return self.cfg.reconnect_attempts
        return FILE_ATTEMPTS if self.kind == "file" else None

    @property
    def live(self) -> bool:
        return self.kind != "file"

    def stop(self) -> None:
        """Ask the loop to end (thread-safe; interrupts a backoff wait or realtime pacing)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _redact(self, text: str) -> str:
        """FFmpeg's messages quote the URL: never let its password through."""
        return text.replace(self.uri, self.display_uri) if self.uri != self.display_uri else text

    def backoff_s(self, failures: int) -> float:
        """Wait before attempt ``failures + 1``: initial, doubling, capped at ``reconnect_max_s``."""
        return min(self.cfg.reconnect_initial_s * (2.0 ** max(0, failures - 1)), self.cfg.reconnect_max_s)

    def _set_state(self, state: SourceState, detail: str, **info: Any) -> None:
        changed = state != self.stats.state
        self.stats.state = state
        if self.health is not None:
            status = _HEALTH_STATUS[state]
            self.health.set(
                self.component,
                status,
                detail,
                uri=self.display_uri,
                kind=self.kind,
                frames=self.stats.frames,
                reconnects=self.stats.reconnects,
                corrupt_skipped=self.stats.corrupt_skipped,
            )
        if changed and self.on_state is not None:
            try:
                self.on_state(state, detail)
            except Exception:  # a listener's bug must not stop capture
                logger.exception("source on_state callback failed")

    # ------------------------------------------------------------------ the loop
    def frames(self) -> Iterator[Frame]:
        """The capture loop: yields every frame, reconnecting as needed; never raises for the source."""
        self._set_state("starting", f"opening {self.kind} {self.display_uri}")
        failures = 0
        while not self._stop.is_set():
            delivered = 0
            first_frame_mono = 0.0
            error: str | None = None
            try:
                for frame in self._open_session():
                    if delivered == 0:
                        first_frame_mono = time.monotonic()
                        self.stats.next_retry_s = None
                    elif failures and time.monotonic() - first_frame_mono >= STABLE_S:
                        failures = 0  # a session that ran this long was a recovery, not a flap
                        self.stats.failures_in_row = 0
                    delivered += 1
                    if self.health is not None and delivered % HEALTH_EVERY == 0:
                        now = time.monotonic()
                        fps = round(HEALTH_EVERY / max(now - self._health_mono, 1e-6), 2)
                        self.health.update_info(
                            self.component,
                            frames=self.stats.frames,
                            fps=fps,
                            corrupt_skipped=self.stats.corrupt_skipped,
                            reconnects=self.stats.reconnects,
                        )
                        self._health_mono = now
                    yield frame
                    if self._stop.is_set():
                        break
            except SourceError as e:
                error = self._redact(str(e))
            except Exception as e:  # PyAV / OpenCV / OS errors: the source failed, the loop lives on
                if (
                    type(e).__name__ == "ExitError" and self.kind == "rtsp"
                ):  # FFmpeg interrupted by our timeout
                    error = f"stream silent for {self.cfg.read_timeout_s:g} s (source.read_timeout_s) or open timed out"
                else:
                    error = self._redact(f"{type(e).__name__}: {e}")
            if self._stop.is_set():
                break
            if error is None:
                if self.kind == "file":
                    log(logger, "source_ended", uri=self.display_uri, frames=self.stats.frames)
                    self._set_state("ended", "end of file")
                    return
                error = "stream ended"
            failures += 1
            self.stats.failures_in_row = failures
            self.stats.last_error = error
            limit = self.max_attempts
            if limit is not None and failures > limit:
                log(
                    logger,
                    "source_gave_up",
                    level=logging.ERROR,
                    uri=self.display_uri,
                    kind=self.kind,
                    error=error,
                    attempts=failures - 1,
                )
                self._set_state("down", f"gave up after {failures - 1} reopen attempt(s): {error}")
                return
            wait = self.backoff_s(failures)
            self.stats.next_retry_s = wait
            log(
                logger,
                "source_down",
                level=logging.WARNING,
                uri=self.display_uri,
                kind=self.kind,
                error=error,
                failures=failures,
                retry_in_s=wait,
                frames=self.stats.frames,
            )
            self._set_state("down", f"{error}; retry {failures} in {wait:.3g} s")
            if self._stop.wait(wait):
                break
            self.stats.reconnects += 1
        self._set_state("stopped", "stopped")

    def _open_session(self) -> Iterator[Frame]:
        if self.kind in ("file", "rtsp"):
            return self._av_session()
        return self._cv_session()

    # ------------------------------------------------------------------ PyAV: files and network streams
    def _av_options(self) -> tuple[dict[str, str], tuple[float, float] | None]:
        if self.kind != "rtsp":
            return {}, None
        opts: dict[str, str] = {}
        if self.uri.lower().startswith(("rtsp://", "rtsps://")):
            opts["rtsp_transport"] = self.cfg.rtsp_transport
        return opts, (self.cfg.open_timeout_s, self.cfg.read_timeout_s)

    def _av_session(self) -> Iterator[Frame]:
        import av

        if self.kind == "file" and not Path(self.uri).is_file():
            raise SourceError(f"file not found: {self.uri}")
        options, timeout = self._av_options()
        try:
            container = av.open(self.uri, mode="r", options=options, timeout=timeout)
        except av.FFmpegError as e:
            raise SourceError(f"cannot open {self.kind} {self.display_uri}: {e}") from None
        try:
            if not container.streams.video:
                raise SourceError(f"no video stream in {self.display_uri}")
            vstream = container.streams.video[0]
            vstream.thread_type = "AUTO"
            if self.cfg.decode_threads:
                vstream.codec_context.thread_count = self.cfg.decode_threads
            yield from self._av_demux(container, vstream)
        finally:
            container.close()

    def _new_av_stream_info(self, vstream: Any, first_pts: int) -> StreamInfo:
        cc = vstream.codec_context
        rate = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
        fps = float(rate) if rate else 25.0
        if not (1.0 <= fps <= 240.0):
            fps = 25.0
        self._session += 1
        self.stats.sessions += 1
        if self._last_pts_s is None:
            offset = 0.0
        else:
            gap = max(time.monotonic() - (self._last_mono or time.monotonic()), 1.0 / self._last_fps)
            offset = self._last_pts_s + gap
        return StreamInfo(
            session=self._session,
            codec=cc.name,
            width=cc.width,
            height=cc.height,
            time_base=Fraction(vstream.time_base),
            fps=fps,
            first_pts=first_pts,
            pts_offset_s=offset,
        )

    def _av_demux(self, container: Any, vstream: Any) -> Iterator[Frame]:
        import av

        file_mode = self.kind == "file"
        info: StreamInfo | None = self._file_stream if file_mode else None
        resume_dts = self._file_last_dts if file_mode else None
        resume_pts = self._file_last_pts if file_mode else None
        if file_mode and resume_pts is not None:
            log(
                logger,
                "source_resume",
                uri=self.display_uri,
                at_s=info.to_seconds(resume_pts) if info else None,
            )
        pending: list[EncodedPacket] = []
        synth_pts: int | None = None
        last_dts: int | None = None
        corrupt_in_session = 0
        pace_anchor: tuple[float, float] | None = None  # (mono, pts_s) for realtime pacing
        up_reported = False
        cc = vstream.codec_context

        def emit(vf: Any) -> Iterator[Frame]:
            nonlocal pending, up_reported, pace_anchor
            assert info is not None
            pts = vf.pts
            if pts is None:
                pts = pending[-1].pts if pending else (self._file_last_pts or info.first_pts)
            if resume_pts is not None and pts <= resume_pts:
                return
            pts_s = info.to_seconds(pts)
            if self._last_pts_s is not None and pts_s <= self._last_pts_s:
                # Stream time must only increase (the ring buffer and clips rely on it). A decoder
                # that meets B-frames it was not told about (an RTSP camera's SPS without
                # reorder info) hands out its first frames out of order: drop the late one; its
                # packets stay pending and travel with the next frame, so no packet is lost.
                self.stats.out_of_order_dropped += 1
                if self.stats.out_of_order_dropped <= 3:
                    log(
                        logger,
                        "source_frame_out_of_order",
                        level=logging.WARNING,
                        uri=self.display_uri,
                        pts_s=round(pts_s, 3),
                        last_pts_s=round(self._last_pts_s, 3),
                    )
                return
            if self.cfg.realtime and file_mode:
                now = time.monotonic()
                if pace_anchor is None:
                    pace_anchor = (now, pts_s)
                delay = pace_anchor[0] + (pts_s - pace_anchor[1]) - now
                if delay > 0 and self._stop.wait(delay):
                    return
                self.stats.realtime_lag_s = max(0.0, -delay)
                self.stats.realtime_lag_max_s = max(self.stats.realtime_lag_max_s, -delay)
            mono = time.monotonic()
            if file_mode:
                assert self._file_utc0 is not None
                utc = self._file_utc0 + timedelta(seconds=pts_s)
                self._file_last_pts = pts
            else:
                utc = datetime.now(timezone.utc)
            frame = Frame(
                decoded=vf,
                index=self._index,
                pts_s=pts_s,
                mono=mono,
                utc=utc,
                stream=info,
                keyframe=bool(vf.key_frame),
                packets=tuple(pending),
            )
            pending = []
            self._index += 1
            self._last_pts_s, self._last_mono, self._last_fps = pts_s, mono, info.fps
            self.stats.frames += 1
            if not up_reported:
                up_reported = True
                log(
                    logger,
                    "source_up",
                    uri=self.display_uri,
                    kind=self.kind,
                    codec=info.codec,
                    size=f"{info.width}x{info.height}",
                    fps=info.fps,
                    session=info.session,
                )
                self._set_state(
                    "up", f"{self.kind} {info.codec} {info.width}x{info.height} @ {info.fps:.3g} fps"
                )
            yield frame

        if file_mode and resume_pts is not None and info is not None:
            try:
                container.seek(resume_pts, stream=vstream, backward=True, any_frame=False)
            except av.FFmpegError:
                pass  # read from the start; already-delivered frames are skipped below

        failure: Exception | None = None
        try:
            for pkt in container.demux(vstream):
                if self._stop.is_set():
                    return
                if pkt.size == 0:  # demuxer's flush marker
                    continue
                pts = pkt.pts if pkt.pts is not None else pkt.dts
                dts = pkt.dts if pkt.dts is not None else pkt.pts
                if pts is None or dts is None:
                    synth = (synth_pts or 0) + max(
                        1, int(round(1 / (float(vstream.time_base) * (info.fps if info else 25.0))))
                    )
                    pts = dts = synth
                synth_pts = pts
                if not file_mode and last_dts is not None:
                    jump_s = float((dts - last_dts) * vstream.time_base)
                    if jump_s < -MAX_BACKWARD_S or jump_s > MAX_FORWARD_S:
                        # camera clock reset, RTP resync: start a clean session on a new timeline
                        raise SourceError(f"timestamp jump of {jump_s:+.3f} s in the stream")
                last_dts = dts
                if info is None:
                    first = vstream.start_time if (file_mode and vstream.start_time is not None) else dts
                    info = self._new_av_stream_info(vstream, int(first))
                    if file_mode:
                        self._file_stream = info
                        self._file_utc0 = datetime.now(timezone.utc)
                if info.template is None and pkt.is_keyframe:
                    try:
                        info.template = StreamInfo.make_template(vstream, pkt)
                    except av.FFmpegError as e:
                        log(logger, "source_template_failed", level=logging.WARNING, error=str(e))
                forward = resume_dts is None or dts > resume_dts
                if forward:
                    self.stats.packets += 1
                    ep = EncodedPacket(
                        data=bytes(pkt),
                        pts=int(pts),
                        dts=int(dts),
                        duration=int(pkt.duration or 0),
                        keyframe=bool(pkt.is_keyframe),
                        stream=info,
                    )
                    pending.append(ep)
                    if file_mode:
                        self._file_last_dts = int(dts)
                try:
                    decoded = cc.decode(pkt)
                except (
                    av.error.InvalidDataError,
                    av.error.PatchWelcomeError,
                    av.error.BugError,
                    ValueError,
                ) as e:
                    corrupt_in_session += 1
                    self.stats.corrupt_skipped += 1
                    if corrupt_in_session <= 3 or corrupt_in_session % _CORRUPT_LOG_EVERY == 0:
                        log(
                            logger,
                            "source_corrupt_packet",
                            level=logging.WARNING,
                            uri=self.display_uri,
                            pts_s=round(info.to_seconds(int(pts)), 3),
                            error=self._redact(str(e)),
                            skipped=self.stats.corrupt_skipped,
                        )
                    continue
                for vf in decoded:
                    yield from emit(vf)
        except (av.FFmpegError, OSError, SourceError) as e:
            failure = e  # the stream broke: still hand on the frames (and packets) the decoder holds

        # end of the demuxer: flush the decoder's delayed frames
        try:
            for vf in cc.decode(None):
                yield from emit(vf)
        except av.FFmpegError as e:
            log(logger, "source_flush_failed", level=logging.WARNING, error=self._redact(str(e)))
        if failure is not None:
            raise failure
        expected = int(vstream.frames or 0)
        if file_mode and expected and self.stats.frames < expected - 1:
            log(
                logger,
                "source_file_short",
                level=logging.WARNING,
                uri=self.display_uri,
                frames=self.stats.frames,
                expected=expected,
                corrupt_skipped=self.stats.corrupt_skipped,
            )

    # ------------------------------------------------------------------ OpenCV: V4L2 and GStreamer
    def _cv_session(self) -> Iterator[Frame]:
        import cv2

        if self.kind == "gstreamer":
            if self.cv_backend is None and not _cv_has_gstreamer():
                raise SourceError(
                    "this OpenCV build has no GStreamer support (pip wheels do not; use the distribution's python3-opencv)"
                )
            cap = cv2.VideoCapture(
                self.uri, cv2.CAP_GSTREAMER if self.cv_backend is None else self.cv_backend
            )
        else:
            dev: int | str = int(self.uri) if self.uri.isdigit() else self.uri
            if isinstance(dev, str) and not Path(dev).exists():
                raise SourceError(f"no such device: {dev}")
            cap = cv2.VideoCapture(dev, cv2.CAP_V4L2 if self.cv_backend is None else self.cv_backend)
            if self.cfg.capture_width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.capture_width)
            if self.cfg.capture_height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.capture_height)
            if self.cfg.capture_fps:
                cap.set(cv2.CAP_PROP_FPS, self.cfg.capture_fps)
        try:
            if not cap.isOpened():
                raise SourceError(f"cannot open {self.kind} {self.display_uri}")
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            fps = fps if 1.0 <= fps <= 240.0 else 25.0
            info: StreamInfo | None = None
            while not self._stop.is_set():
                ok, image = cap.read()
                if not ok or image is None:
                    raise SourceError(f"{self.kind} {self.display_uri} delivered no frame")
                mono = time.monotonic()
                if image.ndim == 2:
                    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
                if info is None:
                    self._session += 1
                    self.stats.sessions += 1
                    # raw sources: the timeline is the monotonic clock since the first frame
                    info = StreamInfo(
                        session=self._session,
                        codec=RAW_CODEC,
                        width=image.shape[1],
                        height=image.shape[0],
                        time_base=Fraction(1, 90000),
                        fps=fps,
                    )
                    if self._mono0 is None:
                        self._mono0 = mono
                    log(
                        logger,
                        "source_up",
                        uri=self.display_uri,
                        kind=self.kind,
                        codec=RAW_CODEC,
                        size=f"{info.width}x{info.height}",
                        fps=fps,
                        session=info.session,
                    )
                    self._set_state("up", f"{self.kind} {info.width}x{info.height} @ {fps:.3g} fps")
                image = np.ascontiguousarray(image)
                image.flags.writeable = False
                pts_s = mono - (self._mono0 or mono)
                frame = Frame(
                    image=image,
                    index=self._index,
                    pts_s=pts_s,
                    mono=mono,
                    utc=datetime.now(timezone.utc),
                    stream=info,
                    keyframe=True,
                )
                self._index += 1
                self._last_pts_s, self._last_mono, self._last_fps = pts_s, mono, fps
                self.stats.frames += 1
                yield frame
        finally:
            cap.release()


def _cv_has_gstreamer() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def check_config(cfg: Any) -> list[str]:
    """``anqi-edge validate``: the source names an existing file / device and a usable kind."""
    src: SourceConfig = cfg.source
    problems: list[str] = []
    if not src.uri.strip():
        return ["source.uri: empty; name a file, rtsp:// URL, /dev/videoN or a GStreamer pipeline"]
    kind = guess_kind(src.uri) if src.kind == "auto" else src.kind
    if kind == "file":
        p = Path(file_path(src.uri)).expanduser()
        base = getattr(cfg, "base_dir", None)
        if not p.is_absolute() and base is not None:
            p = Path(base) / p
        if not p.is_file():
            problems.append(f"source.uri: file not found: {p}")
    elif kind == "v4l2":
        if not src.uri.strip().isdigit() and not Path(src.uri.strip()).exists():
            problems.append(f"source.uri: no such device: {src.uri.strip()}")
    elif kind == "gstreamer" and not _cv_has_gstreamer():
        problems.append(
            "source.uri: a GStreamer pipeline needs OpenCV built with GStreamer (this one is not)"
        )
    return problems
