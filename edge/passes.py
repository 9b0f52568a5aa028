"""Pass counters of the point (the cockpit's safe-riding rate): rider tracks that passed through the capture
zone per interval, and how many of them got a violation.

A track counts once, in the interval (UTC, aligned to ``interval_s``) of its first frame inside the zone; a
violation decided for it later counts in that same interval. The counter keeps the last ``keep`` intervals;
each heartbeat carries all of them (the current one still counting), so central, which keeps the largest value
it saw per interval, loses nothing to a dropped QoS 0 heartbeat while the interval is still in the ring.
Thread-safe: the pipeline thread counts, the relay's thread reads. :class:`KeptPasses` keeps a live run's
counters across a restart (``passes.json`` in ``device.data_dir``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from anqi_contract.fsutil import write_atomic
from anqi_contract.logs import log

logger = logging.getLogger("edge.daemon")

PASSES_FILE = "passes.json"  #: the pass counters kept across a restart (live mode), in device.data_dir
PASSES_SAVE_S = 300.0  #: how often the heartbeat writes them (and at every stop)


@dataclass
class _Interval:
    riders: int = 0
    violators: set[int] = field(default_factory=set)
    no_helmet: set[int] = field(default_factory=set)
    #: counted before a restart (restored from the state file: the tracks behind them are gone)
    base_violators: int = 0
    base_no_helmet: int = 0


class PassCounter:
    def __init__(self, point_id: str, interval_s: float = 300.0, keep: int = 12):
        if interval_s <= 0 or keep < 1:
            raise ValueError("interval_s must be > 0 and keep >= 1")
        self.point_id, self.interval_s, self.keep = point_id, float(interval_s), keep
        self._lock = threading.Lock()
        self._intervals: OrderedDict[float, _Interval] = OrderedDict()
        self._track_interval: dict[int, float] = {}

    def _start_of(self, utc: datetime) -> float:
        t = utc.timestamp()
        return t - t % self.interval_s

    def seen_in_zone(self, track_id: int, utc: datetime) -> None:
        """A track's frame inside the zone: counts the track once."""
        with self._lock:
            if track_id in self._track_interval:
                return
            start = self._start_of(utc)
            iv = self._intervals.get(start)
            if iv is None:
                iv = self._intervals[start] = _Interval()
                # intervals arrive in time order on a live camera; a replayed file starting earlier is sorted in
                self._intervals = OrderedDict(sorted(self._intervals.items()))
                while len(self._intervals) > self.keep:
                    gone, _ = self._intervals.popitem(last=False)
                    # tracks of an interval that left the ring: nothing of theirs is counted any more
                    for tid in [t for t, st in self._track_interval.items() if st == gone]:
                        del self._track_interval[tid]
            iv.riders += 1
            self._track_interval[track_id] = start

    def violated(self, track_id: int, violation_type: str) -> None:
        """A violation decided for a track: counts in the interval the track was counted in (a track never seen
        inside the zone, or whose interval left the ring, is not counted)."""
        with self._lock:
            start = self._track_interval.get(track_id)
            iv = None if start is None else self._intervals.get(start)
            if iv is None:
                return
            iv.violators.add(track_id)
            if violation_type == "no_helmet":
                iv.no_helmet.add(track_id)

    def forget(self, track_id: int) -> None:
        """The track is over: its evidence is done, no violation comes for it any more."""
        with self._lock:
            self._track_interval.pop(track_id, None)

    def snapshot(self) -> list[dict[str, Any]]:
        """The kept intervals, oldest first, as the heartbeat's ``passes``."""
        with self._lock:
            return [
                {
                    "point_id": self.point_id,
                    "start": start,
                    "end": start + self.interval_s,
                    "riders": iv.riders,
                    "violators": iv.base_violators + len(iv.violators),
                    "no_helmet": iv.base_no_helmet + len(iv.no_helmet),
                }
                for start, iv in self._intervals.items()
            ]

    def save(self, path: Path) -> None:
        """Keep the counters across a restart (the daemon at its stop and every few minutes): a restarted edge
        goes on counting the same interval instead of starting it from zero (central keeps the larger value,
        so the riders of the interval before the restart would otherwise be lost)."""
        write_atomic(
            path,
            json.dumps({"point_id": self.point_id, "interval_s": self.interval_s, "passes": self.snapshot()}),
        )

    def restore(self, path: Path, now: datetime) -> int:
        """The intervals of ``path`` that are still in the ring's hour (same point and interval length);
        a missing or unreadable file restores nothing (logged by the caller). Returns the intervals restored."""
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("point_id") != self.point_id or float(data.get("interval_s", 0)) != self.interval_s:
            return 0
        oldest = now.timestamp() - self.keep * self.interval_s
        n = 0
        with self._lock:
            for p in data.get("passes", []):
                start = float(p["start"])
                if start < oldest or start in self._intervals:
                    continue
                self._intervals[start] = _Interval(
                    riders=int(p["riders"]),
                    base_violators=int(p["violators"]),
                    base_no_helmet=int(p["no_helmet"]),
                )
                n += 1
            self._intervals = OrderedDict(sorted(self._intervals.items())[-self.keep :])
        return n


class KeptPasses:
    """A run's :class:`PassCounter` and its file ``data_dir/passes.json``: read back by :meth:`restore` at start,
    written by :meth:`heartbeat_info` (the relay's thread) every ``PASSES_SAVE_S`` and by :meth:`save` at stop.
    ``keep`` False (a replay of a file): the file is neither read nor written."""

    def __init__(self, counter: PassCounter, data_dir: Path, keep: bool) -> None:
        self.counter = counter
        self.path = data_dir / PASSES_FILE
        self.keep = keep
        self._saved = time.monotonic()

    def restore(self, now: datetime) -> int:
        """A restart goes on counting the current interval; a missing file restores nothing, a torn or
        foreign one is logged and counting starts from zero. Returns the intervals restored."""
        if not self.keep:
            return 0
        try:
            n = self.counter.restore(self.path, now)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as e:
            log(logger, "passes_not_restored", logging.WARNING, error=f"{type(e).__name__}: {e}"[:200])
            return 0
        if n:
            log(logger, "passes_restored", intervals=n)
        return n

    def save(self, every_s: float = 0.0) -> None:
        """The counters to the file, unless they were saved less than ``every_s`` ago."""
        if not self.keep or time.monotonic() - self._saved < every_s:
            return
        self._saved = time.monotonic()
        try:
            self.counter.save(self.path)
        except OSError as e:  # disk full: the counts still go out with the heartbeats
            log(logger, "passes_not_saved", logging.WARNING, error=str(e)[:200])

    def heartbeat_info(self) -> dict[str, Any]:
        """What the relay's heartbeat adds: the pass counters (saved on the way every ``PASSES_SAVE_S``)."""
        self.save(every_s=PASSES_SAVE_S)
        return {"passes": self.counter.snapshot()}
