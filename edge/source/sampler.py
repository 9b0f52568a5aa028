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
    """Bounded hand-over from capture to detection: ``put`` never blocks; when full the oldest
    sampled frame is dropped (and counted), so detection always works on the newest frames."""

    def __init__(self, maxsize: int = 2):
        if maxsize < 1:
            raise ValueError(f"source.detect_queue must be >= 1 (got {maxsize})")
        self._items: deque[Frame] = deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if len(self._items) >= self._maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(frame)
            self.put_count += 1
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest waiting frame; None on timeout or once closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        """No more frames: wakes every waiting ``get`` (they return what is left, then None)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
