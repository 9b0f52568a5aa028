"""The time switch: actuators are active only inside daily local-time windows.

Semantics (documented in config/edge.example.yaml):

* A window ``start``-``end`` is half-open: active from ``start`` (inclusive) to ``end`` (exclusive).
* ``end`` before ``start`` crosses midnight (``22:00``-``02:00``); ``end`` equal to ``start`` is the
  whole day (24 h from ``start``).
* A window belongs to the day it *starts* on: on a date listed in ``holidays`` the
  ``holiday_windows`` open instead of ``windows``; the part of the previous evening's window that runs
  past midnight into a holiday still runs (it started on a working day), and vice versa.
* Times are local to ``device.timezone``; across a DST change wall-clock times are used as written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from anqi_contract.logs import log
from edge.config.actuators import TimeSwitchConfig, TimeWindow

logger = logging.getLogger("edge.actuators.timeswitch")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _hhmm(text: str) -> time:
    h, m = text.split(":")
    return time(int(h), int(m))


@dataclass(frozen=True)
class DailyWindow:
    """One daily window as minutes after local midnight; ``length_min`` may run past midnight."""

    start_min: int
    length_min: int

    @classmethod
    def from_config(cls, w: TimeWindow) -> DailyWindow:
        s, e = _hhmm(w.start), _hhmm(w.end)
        start = s.hour * 60 + s.minute
        end = e.hour * 60 + e.minute
        length = (end - start) % (24 * 60) or 24 * 60
        return cls(start, length)

    def contains(self, local: datetime, opened_on: date) -> bool:
        """True if the window opened on ``opened_on`` covers the naive local wall time ``local``."""
        opens = datetime.combine(opened_on, time()) + timedelta(minutes=self.start_min)
        return opens <= local < opens + timedelta(minutes=self.length_min)


def in_windows(
    windows: Sequence[DailyWindow],
    local: datetime,
    holiday_windows: Sequence[DailyWindow],
    holidays: frozenset[date],
) -> bool:
    """Whether naive local wall time ``local`` lies in a window that opened today or yesterday."""
    for day in (local.date(), local.date() - timedelta(days=1)):
        todays = holiday_windows if day in holidays else windows
        if any(w.contains(local, day) for w in todays):
            return True
    return False


class TimeSwitch:
    """Time-controlled switch (standard 6.2): ``active`` inside the configured windows.

    Like a gpiozero input device it has one value, :attr:`active`; ``clock`` returns an aware
    datetime (UTC by default) and is injectable for tests and replays.
    """

    def __init__(self, cfg: TimeSwitchConfig, tz: str = "Asia/Shanghai", clock: Clock = utc_now):
        self.enabled = cfg.enabled
        self.tz = ZoneInfo(tz)
        self.windows = tuple(DailyWindow.from_config(w) for w in cfg.windows)
        self.holiday_windows = tuple(DailyWindow.from_config(w) for w in cfg.holiday_windows)
        self.holidays = frozenset(cfg.holidays)
        self.clock = clock
        self._last: bool | None = None

    def local_now(self) -> datetime:
        return self.clock().astimezone(self.tz)

    def is_active_at(self, when: datetime) -> bool:
        if not self.enabled:
            return True
        local = when.astimezone(self.tz).replace(tzinfo=None)
        return in_windows(self.windows, local, self.holiday_windows, self.holidays)

    @property
    def active(self) -> bool:
        """Active now; logs one line each time the state changes."""
        now = self.clock()
        value = self.is_active_at(now)
        if value != self._last:
            if self._last is not None or not value:
                log(
                    logger,
                    "time_switch_changed",
                    active=value,
                    local=now.astimezone(self.tz).strftime("%Y-%m-%d %H:%M"),
                )
            self._last = value
        return value


def window_value(windows: Sequence[tuple[DailyWindow, float]], local: datetime, default: float) -> float:
    """The value of the first window (opened today or yesterday) covering ``local``, else ``default``."""
    for w, value in windows:
        if w.contains(local, local.date()) or w.contains(local, local.date() - timedelta(days=1)):
            return value
    return default
