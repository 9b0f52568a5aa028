"""Hand detection a steady ``detect_fps`` of frames without ever slowing capture down."""

from __future__ import annotations

import threading
from collections import deque

from edge.source.frame import Frame


class DetectSampler:
    """Picks frames for detection at ``detect_fps`` on the stream timeline (``Frame.pts_s``).

    A frame is taken when at least one sampling interval (minus a quarter of a frame, for jitter)
    has passed since the last taken frame, so a 25 fps camera at ``detect_fps=8`` yields 8.3 fps
    (every third frame) and a 30 fps file 7.5 fps... 10 fps (alternating 3 and 4). Timeline jumps
    backwards (a new session) restart the sampling.
    """

    def __init__(self, detect_fps: float):
        if detect_fps <= 0:
            raise ValueError(f"source.detect_fps must be > 0 (got {detect_fps})")
        self.interval_s = 1.0 / detect_fps
        self._last: float | None = None

    def want(self, frame: Frame) -> bool:
        t = frame.pts_s
        tolerance = 0.25 / frame.stream.fps if frame.stream.fps > 0 else 0.0
        if self._last is None or t < self._last or t - self._last >= self.interval_s - tolerance:
            self._last = t
            return True
        return False


class DetectQueue:
    """Bounded hand-over from capture to detection. ``drop_oldest`` (cameras, paced files): ``put`` never
    blocks; when full the oldest sampled frame is dropped (and counted), so detection always works on the
    newest frames. Otherwise (a file read as fast as it decodes) ``put`` waits for room, so every sampled
    frame is detected and capture waits for detection. :meth:`close` ends the stream either way."""

    def __init__(self, maxsize: int = 2, drop_oldest: bool = True):
        if maxsize < 1:
            raise ValueError(f"source.detect_queue must be >= 1 (got {maxsize})")
        self._items: deque[Frame] = deque()
        self._maxsize = maxsize
        self.drop_oldest = drop_oldest
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, frame: Frame, stop: threading.Event | None = None) -> None:
        """Queue ``frame``; without ``drop_oldest`` wait for room, giving the frame up once ``stop`` is set."""
        with self._cond:
            if self.drop_oldest:
                if len(self._items) >= self._maxsize:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while stop is None or not stop.is_set():
                    if len(self._items) < self._maxsize:
                        break
                    self._cond.wait(0.5)
                else:
                    return  # stopped while waiting: the frame is given up
            self._items.append(frame)
            self.put_count += 1
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest waiting frame; None on timeout or once closed and empty (then :attr:`drained`)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if not self._items:
                return None
            frame = self._items.popleft()
            self._cond.notify_all()  # a put waiting for room
            return frame

    def close(self) -> None:
        """No more frames: wakes every waiting ``get`` (they return what is left, then None)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def drained(self) -> bool:
        """Closed and empty: no frame will come any more."""
        with self._cond:
            return self._closed and not self._items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
