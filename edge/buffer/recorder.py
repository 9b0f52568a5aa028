"""``ClipRecorder``: the evidence clip of a violation, from ``pre_s`` before to ``post_s`` after.

At :meth:`ClipRecorder.trigger` the recorder takes the pre-roll from the ring (starting at the
keyframe at or before ``t - pre_s``) and keeps appending every new packet of the same session
until one lies past ``t + post_s``; then the clip is written (remux for compressed sources,
H.264 encode for raw/JPEG ones) on the recorder's writer thread, and the trigger's ``Future``
resolves with a :class:`Clip` only after the file is closed and renamed into place.

Remuxed clips keep the whole group from that keyframe (a decoder needs it) but, with
``buffer.clip_exact_start`` (default), an MP4 edit list hides the frames before ``t - pre_s``:
the file shows [t - pre_s, t + post_s] to within one frame, never less (no Frigate-style clip
shorter than its pre-roll because recordings are cut at keyframes). Streams with B-frames may show
up to their reorder depth of extra frames at the end (reference frames the last shown ones need).

Overlapping violations: each trigger gets its own file covering its own window; the packets are
shared (references to the same bytes), so overlap costs no memory and no frame is dropped.
A clip ends early, with what exists (``complete=False``), when the stream ends (:meth:`flush`)
or its session ends (reconnect: the next session has new codec parameters).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from anqi_contract.logs import log
from edge.buffer.mp4 import write_clip
from edge.buffer.preroll import FrameStamp, PrerollBuffer
from edge.config.buffer import BufferConfig
from edge.health import Health
from edge.source import EncodedPacket, Frame, StreamInfo

logger = logging.getLogger("edge.buffer")

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")
_EPS = 1e-6


@dataclass(frozen=True)
class Clip:
    """A written clip. ``start_*``/``end_*`` is the window the file actually shows: from its first
    frame to the end of its last frame (last frame's time + one frame interval), on the source
    timeline (``*_pts_s``) and in UTC (for the event's ``clip_start`` / ``clip_end``)."""

    key: str
    path: Path
    trigger_pts_s: float
    start_pts_s: float
    end_pts_s: float
    start_utc: datetime
    end_utc: datetime
    frames: int
    size: int
    codec: str
    remuxed: bool
    #: True when the file covers [t - pre_s, t + post_s] in full
    complete: bool
    #: why not complete ("" when complete): "stream start", "stream ended", "session ended", ...
    note: str = ""
    #: stream time of the keyframe the file's bitstream starts at (<= start_pts_s; earlier frames are hidden)
    keyframe_pts_s: float | None = None

    @property
    def duration_s(self) -> float:
        return self.end_pts_s - self.start_pts_s


@dataclass(eq=False)
class _Pending:
    key: str
    path: Path
    t: float
    end_s: float
    anchor: FrameStamp | None
    future: Future[Clip]
    session: StreamInfo | None = None
    packets: list[EncodedPacket] = field(default_factory=list)
    note: str = ""


class ClipRecorder:
    """Cuts violation clips out of a :class:`PrerollBuffer`.

    Args:
        buffer: the ring the frames go to (the recorder subscribes to its packets).
        cfg: the ``buffer`` section (``pre_s``, ``post_s``, clip encoder settings).
        out_dir: where ``<key>.mp4`` files go unless ``trigger`` names a path.
        health: ``clips`` component: degraded when a clip could not be written.

    Push every frame with :meth:`push` (it feeds the buffer). Call :meth:`start` to write clips on
    the recorder's own thread (the daemon does); without it clips are written inline by ``push``,
    ``trigger`` or ``flush`` (tests, replay).
    """

    def __init__(
        self,
        buffer: PrerollBuffer,
        cfg: BufferConfig,
        out_dir: Path,
        *,
        health: Health | None = None,
        component: str = "clips",
    ):
        self.buffer = buffer
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.health = health
        self.component = component
        self._pending: list[_Pending] = []
        self._ready: list[_Pending] = []
        self._jobs: queue.Queue[_Pending | None] | None = None
        self._writer: threading.Thread | None = None
        self.written = 0
        self.failed = 0
        buffer.subscribe(self._on_packet)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the writer thread (and the buffer's JPEG worker). Idempotent."""
        self.buffer.start()
        if self._writer is None:
            self._jobs = queue.Queue()
            self._writer = threading.Thread(target=self._write_loop, name="anqi-clip-writer", daemon=True)
            self._writer.start()

    def close(self) -> None:
        """End of stream: finish pending clips with what exists, write everything, stop threads."""
        self.flush()
        if self._writer is not None and self._jobs is not None:
            self._jobs.put(None)
            self._writer.join()
            self._writer = None
            self._jobs = None
        self.buffer.close()

    # ------------------------------------------------------------------ input
    def push(self, frame: Frame) -> None:
        """Hand one frame (every frame) to the buffer; finished clips are written/queued."""
        self.buffer.push(frame)
        self._dispatch()

    def trigger(
        self,
        key: str,
        at_pts_s: float | None = None,
        *,
        at_mono: float | None = None,
        path: Path | None = None,
    ) -> Future[Clip]:
        """Start the clip of a violation decided at stream time ``at_pts_s`` (the frame's ``pts_s``),
        or at monotonic time ``at_mono`` (mapped to the last frame captured by then), or, with
        neither, at the newest frame. Returns a Future resolved once ``<key>.mp4`` is complete.
        """
        if not _KEY.match(key):
            raise ValueError(f"clip key {key!r}: use letters, digits, '_', '-', '.' (max 101 characters)")
        fut: Future[Clip] = Future()
        with self.buffer.lock:
            if at_pts_s is None and at_mono is not None:
                stamp = self.buffer.stamp_at_mono(at_mono)
                at_pts_s = stamp.pts_s if stamp else None
            if at_pts_s is None:
                at_pts_s = self.buffer.newest_pts_s
            t = float(at_pts_s) if at_pts_s is not None else 0.0
            p = _Pending(
                key=key,
                path=path or self.out_dir / f"{key}.mp4",
                t=t,
                end_s=t + self.cfg.post_s,
                anchor=self.buffer.stamp_at_pts(t),
                future=fut,
            )
            window = self.buffer.window(t - self.cfg.pre_s, t)
            done = False
            if window:
                p.session = window[0].stream
                for pkt in window:
                    if self._append(p, pkt):
                        done = True
                        break
            (self._ready if done else self._pending).append(p)
            log(
                logger,
                "clip_triggered",
                key=key,
                t=round(t, 3),
                preroll_s=round(t - window[0].pts_s, 3) if window else 0.0,
                pending=len(self._pending),
            )
        self._dispatch()
        return fut

    def flush(self) -> None:
        """End of stream: every pending clip is finished with the video that exists."""
        self.buffer.drain()
        with self.buffer.lock:
            for p in self._pending:
                p.note = p.note or "stream ended"
            self._ready.extend(self._pending)
            self._pending = []
        self._dispatch()
        if self._jobs is not None:
            self._jobs.join()

    @property
    def pending(self) -> int:
        with self.buffer.lock:
            return len(self._pending) + len(self._ready)

    # ------------------------------------------------------------------ packet flow (buffer lock held)
    def _append(self, p: _Pending, pkt: EncodedPacket) -> bool:
        """Add a packet to a pending clip; True once the clip has everything it needs."""
        if p.session is None:
            if not pkt.keyframe:
                return False
            p.session = pkt.stream
            p.note = p.note or "stream start"
        elif pkt.stream is not p.session:
            p.note = p.note or "session ended"
            return True
        if pkt.dts_s > p.end_s + _EPS:
            p.packets.append(pkt)  # trimmed again at write time; marks the end as reached
            return True
        p.packets.append(pkt)
        return False

    def _on_packet(self, pkt: EncodedPacket) -> None:
        if not self._pending:
            return
        keep: list[_Pending] = []
        for p in self._pending:
            if self._append(p, pkt):
                self._ready.append(p)
            else:
                keep.append(p)
        self._pending = keep

    # ------------------------------------------------------------------ writing
    def _dispatch(self) -> None:
        with self.buffer.lock:
            ready, self._ready = self._ready, []
        for p in ready:
            if self._jobs is not None:
                self._jobs.put(p)
            else:
                self._write(p)

    def _write_loop(self) -> None:
        assert self._jobs is not None
        jobs = self._jobs
        while True:
            p = jobs.get()
            try:
                if p is None:
                    return
                self._write(p)
            finally:
                jobs.task_done()

    def _write(self, p: _Pending) -> None:
        try:
            clip = self._write_clip(p)
        except Exception as e:
            self.failed += 1
            log(
                logger,
                "clip_failed",
                level=logging.ERROR,
                key=p.key,
                path=str(p.path),
                error=f"{type(e).__name__}: {e}",
            )
            if self.health is not None:
                self.health.set(self.component, "degraded", f"clip {p.key} not written: {e}")
            p.future.set_exception(e)
            return
        self.written += 1
        log(
            logger,
            "clip_written",
            key=clip.key,
            path=str(clip.path),
            start_s=round(clip.start_pts_s, 3),
            end_s=round(clip.end_pts_s, 3),
            frames=clip.frames,
            bytes=clip.size,
            complete=clip.complete,
            note=clip.note,
        )
        if self.health is not None:
            self.health.set(
                self.component, "up", f"last clip {clip.key}", written=self.written, failed=self.failed
            )
        p.future.set_result(clip)

    def _write_clip(self, p: _Pending) -> Clip:
        packets = _trim(p.packets, p.end_s)
        if not packets:
            raise ValueError(f"no video for clip {p.key} (no keyframe in the buffer around t={p.t:.3f} s)")
        w = write_clip(
            packets, p.path, self.cfg, show_from_s=p.t - self.cfg.pre_s if self.cfg.clip_exact_start else None
        )
        start, end = w.first_pts_s, w.last_pts_s + w.frame_interval_s
        anchor = p.anchor or FrameStamp(p.t, 0.0, datetime.now().astimezone(), 0)
        head_ok = start <= p.t - self.cfg.pre_s + _EPS
        tail_ok = w.last_pts_s >= p.end_s - w.frame_interval_s - _EPS
        full = head_ok and tail_ok
        notes = (
            []
            if head_ok
            else ["pre-roll starts at the first keyframe held (stream start, reconnect or buffer.max_mb)"]
        )
        if not tail_ok:
            notes.append(p.note if p.note and p.note != "stream start" else "post-roll short")
        note = "; ".join(notes)
        return Clip(
            key=p.key,
            path=w.path,
            trigger_pts_s=p.t,
            start_pts_s=start,
            end_pts_s=end,
            start_utc=anchor.utc_at(start),
            end_utc=anchor.utc_at(end),
            frames=w.frames,
            size=w.size,
            codec=w.codec,
            remuxed=w.remuxed,
            complete=full,
            note=note,
            keyframe_pts_s=w.decoded_from_pts_s,
        )


def _trim(packets: list[EncodedPacket], end_s: float) -> list[EncodedPacket]:
    """Drop the tail of packets (decode order) that only show frames after ``end_s``.

    Keeps every packet up to the last one whose frame is at or before ``end_s``; reference frames
    decoded before it stay even when shown later (B-frame streams), since the kept frames need them.
    """
    last = -1
    for i, pkt in enumerate(packets):
        if pkt.pts_s <= end_s + _EPS:
            last = i
    return packets[: last + 1]
