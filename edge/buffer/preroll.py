"""``PrerollBuffer``: the last seconds of video, kept encoded, bounded in time and bytes.

Compressed sources: the source's packets are kept as they came (decode order), grouped into
keyframe groups (GOPs). The ring drops a whole group only once the *next* group's keyframe is at
or before ``newest - (pre_s + trigger_lag_s)``, so the keyframe at or before any instant of the
retained window is always still there: a clip starting ``pre_s`` before a violation can always
begin at a keyframe at or before that instant (no clip shorter than its pre-roll because of
keyframe cuts).

Raw sources (V4L2, GStreamer): each frame is JPEG-encoded into a one-packet group. After
:meth:`start` the encoding runs on the buffer's own worker thread, so ``push`` costs the capture
thread only a queue put; without ``start`` it happens inline.

The byte bound (``max_mb``) is hard: when exceeded, the oldest groups go (and the shortfall is
reported to health as ``buffer`` degraded); a single group larger than the bound is dropped and
the ring waits for the next keyframe.
"""

from __future__ import annotations

import logging
import queue
import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction

import cv2
import numpy as np

from anqi_contract.logs import log
from edge.config.buffer import BufferConfig
from edge.health import Health
from edge.source import EncodedPacket, Frame, StreamInfo

logger = logging.getLogger("edge.buffer")

JPEG_CODEC = "mjpeg"
JPEG_TIME_BASE = Fraction(1, 90000)
#: frames between two health updates of the buffer's figures
HEALTH_EVERY = 50
#: raw frames waiting for the JPEG worker before ``push`` blocks (backpressure, never a drop)
JPEG_QUEUE_FRAMES = 16

PacketListener = Callable[[EncodedPacket], None]


@dataclass(frozen=True, slots=True)
class FrameStamp:
    """When a frame of the timeline was captured: maps stream time to monotonic and UTC time."""

    pts_s: float
    mono: float
    utc: datetime
    session: int

    def utc_at(self, pts_s: float) -> datetime:
        return self.utc + timedelta(seconds=pts_s - self.pts_s)


@dataclass(slots=True)
class _Group:
    """Packets from one keyframe up to (not including) the next keyframe, one session."""

    stream: StreamInfo
    start_pts_s: float
    packets: list[EncodedPacket] = field(default_factory=list)
    nbytes: int = 0


@dataclass
class BufferStats:
    frames: int = 0
    packets: int = 0
    bytes_in: int = 0
    groups_evicted: int = 0
    #: groups dropped by the byte bound while still inside the time window (pre-roll shortened)
    groups_dropped_for_bytes: int = 0
    #: packets not kept: before a session's first keyframe, or in a group too big for max_mb
    packets_unusable: int = 0
    jpeg_encoded: int = 0
    #: CPU seconds spent in JPEG encoding (the encoding thread's own time)
    jpeg_cpu_s: float = 0.0
    jpeg_waits: int = 0


class PrerollBuffer:
    """Ring of encoded video: push every frame, read a window back with :meth:`window`.

    Thread-safe: ``push`` from the capture thread, ``window`` / ``subscribe`` from any thread.
    Listeners registered with :meth:`subscribe` see every packet after it entered the ring, in
    decode order, under the buffer's lock (they must be quick: append, compare, return).
    """

    def __init__(self, cfg: BufferConfig, *, health: Health | None = None, component: str = "buffer"):
        self.cfg = cfg
        self.retain_s = cfg.pre_s + cfg.trigger_lag_s
        self.max_bytes = int(cfg.max_mb * 1024 * 1024)
        self.health = health
        self.component = component
        self.stats = BufferStats()
        self.lock = threading.RLock()
        self._groups: deque[_Group] = deque()
        self._stamps: deque[FrameStamp] = deque()
        self._nbytes = 0
        self._newest_pts_s: float | None = None
        self._skip_session: int | None = None  # waiting for a keyframe after dropping an oversize group
        self._listeners: list[PacketListener] = []
        self._jpeg_streams: dict[int, StreamInfo] = {}
        self._jpeg_queue: queue.Queue[Frame | None] | None = None
        self._jpeg_thread: threading.Thread | None = None
        self._short_reported = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the JPEG worker thread (only does work for raw sources). Idempotent."""
        if self._jpeg_thread is not None:
            return
        self._jpeg_queue = queue.Queue(maxsize=JPEG_QUEUE_FRAMES)
        self._jpeg_thread = threading.Thread(target=self._jpeg_worker, name="anqi-buffer-jpeg", daemon=True)
        self._jpeg_thread.start()

    def close(self) -> None:
        """Encode what is still queued, then stop the worker."""
        if self._jpeg_thread is None or self._jpeg_queue is None:
            return
        self._jpeg_queue.put(None)
        self._jpeg_thread.join()
        self._jpeg_thread = None
        self._jpeg_queue = None

    def drain(self) -> None:
        """Block until every pushed raw frame is encoded and in the ring."""
        if self._jpeg_queue is not None:
            self._jpeg_queue.join()

    # ------------------------------------------------------------------ input
    def push(self, frame: Frame) -> None:
        """Take one frame (every frame, in capture order). Never drops for lack of time."""
        stamp = FrameStamp(frame.pts_s, frame.mono, frame.utc, frame.session)
        with self.lock:
            self.stats.frames += 1
            if self.health is not None and self.stats.frames % HEALTH_EVERY == 1:
                self._report()
            if self._stamps and stamp.pts_s < self._stamps[-1].pts_s:
                self._stamps.clear()  # the timeline never goes back; defensive
            self._stamps.append(stamp)
            if not frame.stream.is_raw:
                for pkt in frame.packets:
                    self._add(pkt)
                return
        if self._jpeg_queue is not None:
            if self._jpeg_queue.full():
                self.stats.jpeg_waits += 1
            self._jpeg_queue.put(frame)  # blocks when the worker lags: backpressure, never a drop
        else:
            pkt = self._encode_jpeg(frame)
            with self.lock:
                self._add(pkt)

    def _jpeg_worker(self) -> None:
        assert self._jpeg_queue is not None
        q = self._jpeg_queue
        while True:
            frame = q.get()
            try:
                if frame is None:
                    return
                pkt = self._encode_jpeg(frame)
                with self.lock:
                    self._add(pkt)
            except Exception:
                logger.exception("buffer_jpeg_failed")
            finally:
                q.task_done()

    def _encode_jpeg(self, frame: Frame) -> EncodedPacket:
        import time

        t0 = time.thread_time()
        ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if not ok:
            raise ValueError(f"JPEG encoding failed for frame {frame.index}")
        stream = self._jpeg_streams.get(frame.session)
        if stream is None:
            h, w = frame.image.shape[:2]
            stream = StreamInfo(
                session=frame.session,
                codec=JPEG_CODEC,
                width=w,
                height=h,
                time_base=JPEG_TIME_BASE,
                fps=frame.stream.fps,
            )
            self._jpeg_streams = {frame.session: stream}
        pts = int(round(frame.pts_s / JPEG_TIME_BASE))
        self.stats.jpeg_encoded += 1
        self.stats.jpeg_cpu_s += time.thread_time() - t0
        return EncodedPacket(
            data=buf.tobytes(),
            pts=pts,
            dts=pts,
            duration=int(round(1 / (stream.fps * JPEG_TIME_BASE))),
            keyframe=True,
            stream=stream,
        )

    def _add(self, pkt: EncodedPacket) -> None:
        """Append one packet (lock held)."""
        self.stats.packets += 1
        self.stats.bytes_in += pkt.size
        pts_s = pkt.pts_s
        if self._newest_pts_s is None or pts_s > self._newest_pts_s:
            self._newest_pts_s = pts_s
        last = self._groups[-1] if self._groups else None
        if pkt.keyframe:
            self._skip_session = None
            last = _Group(pkt.stream, pts_s)
            self._groups.append(last)
        elif last is None or last.stream is not pkt.stream or self._skip_session == pkt.stream.session:
            last = None  # no keyframe of this session yet: undecodable on its own
        if last is not None:
            last.packets.append(pkt)
            last.nbytes += pkt.size
            self._nbytes += pkt.size
        else:
            self.stats.packets_unusable += 1
        for listener in self._listeners:
            try:
                listener(pkt)
            except Exception:  # a listener's bug must not stop capture or the ring
                logger.exception("buffer_listener_failed")
        self._evict()

    def _evict(self) -> None:
        groups = self._groups
        if self._newest_pts_s is not None:
            horizon = self._newest_pts_s - self.retain_s
            while len(groups) >= 2 and groups[1].start_pts_s <= horizon:
                self._drop_oldest()
                self.stats.groups_evicted += 1
        while self._nbytes > self.max_bytes and groups:
            g = groups[0]
            if len(groups) == 1:
                self._skip_session = g.stream.session
                self.stats.packets_unusable += len(g.packets)
                log(
                    logger,
                    "buffer_group_too_big",
                    level=logging.WARNING,
                    mb=round(g.nbytes / 2**20, 1),
                    max_mb=self.cfg.max_mb,
                )
            self._drop_oldest()
            self.stats.groups_dropped_for_bytes += 1
            if not self._short_reported:
                self._short_reported = True
                log(
                    logger,
                    "buffer_preroll_short",
                    level=logging.WARNING,
                    max_mb=self.cfg.max_mb,
                    retain_s=self.retain_s,
                )
                if self.health is not None:
                    self.health.set(
                        self.component,
                        "degraded",
                        f"buffer.max_mb={self.cfg.max_mb} holds less than {self.retain_s:g} s of video",
                    )
        # stamps: keep those from a little before the oldest kept group
        if groups:
            first = groups[0].start_pts_s - 1.0
            while len(self._stamps) > 1 and self._stamps[1].pts_s <= first:
                self._stamps.popleft()
        else:
            while (
                len(self._stamps) > 1
                and self._newest_pts_s is not None
                and self._stamps[1].pts_s <= self._newest_pts_s - self.retain_s
            ):
                self._stamps.popleft()

    def _report(self) -> None:
        """Buffer figures into health (lock held): ``up`` unless the byte bound has cut the pre-roll."""
        assert self.health is not None
        info = {
            "mb": round(self._nbytes / 2**20, 2),
            "seconds": round(self.duration_s, 2),
            "max_mb": self.cfg.max_mb,
            "dropped_for_bytes": self.stats.groups_dropped_for_bytes,
        }
        if self._short_reported:
            self.health.update_info(self.component, **info)
        else:
            self.health.set(self.component, "up", f"pre-roll {self.retain_s:g} s", **info)

    def _drop_oldest(self) -> None:
        g = self._groups.popleft()
        self._nbytes -= g.nbytes

    # ------------------------------------------------------------------ output
    def subscribe(self, listener: PacketListener) -> None:
        """Call ``listener(packet)`` for every packet added from now on (under the buffer lock)."""
        with self.lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: PacketListener) -> None:
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def window(self, start_pts_s: float, at_pts_s: float | None = None) -> list[EncodedPacket]:
        """Packets (decode order) from the keyframe at or before ``start_pts_s`` to the newest one.

        Only the session that holds ``at_pts_s`` (default: the newest packet) is returned: a clip
        never mixes the codec parameters of two sessions. When the ring does not reach back to
        ``start_pts_s`` (start of the file or stream, reconnect, byte bound) the window starts at the
        session's first keyframe in the ring. Empty when no keyframe is held.
        """
        with self.lock:
            groups = list(self._groups)
            if not groups:
                return []
            at = at_pts_s if at_pts_s is not None else (self._newest_pts_s or 0.0)
            starts = [g.start_pts_s for g in groups]
            i_at = max(0, bisect_right(starts, at) - 1)
            session = groups[i_at].stream
            same = [g for g in groups if g.stream is session]
            chosen = same[0]
            for g in same:
                if g.start_pts_s <= start_pts_s + 1e-9:
                    chosen = g
                else:
                    break
            out: list[EncodedPacket] = []
            take = False
            for g in same:
                take = take or g is chosen
                if take:
                    out.extend(g.packets)
            return out

    def stamp_at_mono(self, mono: float) -> FrameStamp | None:
        """The last frame captured at or before monotonic time ``mono`` (or the first one held)."""
        with self.lock:
            if not self._stamps:
                return None
            best = self._stamps[0]
            for s in self._stamps:
                if s.mono <= mono:
                    best = s
                else:
                    break
            return best

    def stamp_at_pts(self, pts_s: float) -> FrameStamp | None:
        """The frame stamp nearest stream time ``pts_s`` (to map stream time to UTC)."""
        with self.lock:
            if not self._stamps:
                return None
            return min(self._stamps, key=lambda s: abs(s.pts_s - pts_s))

    @property
    def newest_pts_s(self) -> float | None:
        with self.lock:
            return self._newest_pts_s

    @property
    def nbytes(self) -> int:
        """Bytes of encoded video in the ring now."""
        with self.lock:
            return self._nbytes

    @property
    def duration_s(self) -> float:
        """Stream time from the oldest kept keyframe to the newest packet."""
        with self.lock:
            if not self._groups or self._newest_pts_s is None:
                return 0.0
            return self._newest_pts_s - self._groups[0].start_pts_s

    @property
    def oldest_pts_s(self) -> float | None:
        with self.lock:
            return self._groups[0].start_pts_s if self._groups else None

    def __len__(self) -> int:
        with self.lock:
            return sum(len(g.packets) for g in self._groups)


def jpeg_encode_ms(image: np.ndarray, quality: int = 80, repeat: int = 10) -> float:
    """Mean milliseconds for one ``cv2.imencode`` JPEG of ``image`` (for the benchmark)."""
    import time

    t0 = time.perf_counter()
    for _ in range(repeat):
        cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return (time.perf_counter() - t0) / repeat * 1000.0
