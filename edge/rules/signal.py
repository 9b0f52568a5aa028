"""Traffic-signal state for the red-light rule: one small class per source, one interface.

``GpioSignal`` reads a gpiozero input that is active while red, ``SerialSignal`` reads state lines
('RED' / 'GREEN' / 'AMBER') from the signal controller over pyserial, ``ImageSignal`` tests the
share of lit red pixels in the image region of the signal head's red lamp. ``signal_from_config``
picks one by ``rules.red_light.signal.source``.
"""

from __future__ import annotations

import bisect
from collections import deque
from enum import Enum
from typing import Any, Protocol

import cv2
import numpy as np

from edge.config.rules import SignalConfig


class SignalState(str, Enum):
    red = "red"
    amber = "amber"
    green = "green"
    not_red = "not_red"  #: the image test can tell 'red lamp lit' from 'not lit' only
    unknown = "unknown"


class SignalInput(Protocol):
    def observe(self, image: np.ndarray | None, t_s: float) -> None:
        """Take in what is new (a detection frame, serial lines, the pin); never blocks."""

    def state_at(self, t_s: float) -> SignalState:
        """The state that held at ``t_s`` (``unknown`` if none is known or it is stale)."""

    def close(self) -> None: ...


class _StateHistory:
    """Recent (t_s, state) changes, to look up the state at a crossing time."""

    def __init__(self, stale_s: float, keep: int = 512):
        self.stale_s = stale_s
        self._t: deque[float] = deque(maxlen=keep)
        self._s: deque[SignalState] = deque(maxlen=keep)
        self._last_seen: deque[float] = deque(maxlen=keep)

    def record(self, t_s: float, state: SignalState) -> None:
        if self._s and self._s[-1] == state:
            self._last_seen[-1] = t_s
            return
        self._t.append(t_s)
        self._s.append(state)
        self._last_seen.append(t_s)

    def state_at(self, t_s: float) -> SignalState:
        i = bisect.bisect_right(list(self._t), t_s) - 1
        if i < 0:
            return SignalState.unknown
        seen = self._last_seen[i] if i == len(self._t) - 1 else self._t[i + 1]
        if t_s - seen > self.stale_s:
            return SignalState.unknown
        return self._s[i]


class GpioSignal:
    """A gpiozero input wired to the controller's red output (active while red)."""

    def __init__(self, pin: str, active_high: bool = True, pin_factory: Any = None):
        from gpiozero import DigitalInputDevice

        self.device = DigitalInputDevice(pin, pull_up=None, active_state=active_high, pin_factory=pin_factory)
        self._history = _StateHistory(stale_s=float("inf"))

    def observe(self, image: np.ndarray | None, t_s: float) -> None:
        self._history.record(t_s, SignalState.red if self.device.is_active else SignalState.not_red)

    def state_at(self, t_s: float) -> SignalState:
        return self._history.state_at(t_s)

    def close(self) -> None:
        self.device.close()


_SERIAL_WORDS = {
    "RED": SignalState.red,
    "R": SignalState.red,
    "GREEN": SignalState.green,
    "G": SignalState.green,
    "AMBER": SignalState.amber,
    "YELLOW": SignalState.amber,
    "A": SignalState.amber,
    "Y": SignalState.amber,
}


class SerialSignal:
    """State lines from the signal controller over a serial port (or any pyserial URL, e.g. ``loop://``)."""

    def __init__(self, port: str, baud: int = 9600, stale_s: float = 5.0):
        import serial

        self.port = serial.serial_for_url(port, baudrate=baud, timeout=0)
        self._buf = b""
        self._history = _StateHistory(stale_s)
        self.bad_lines = 0

    def observe(self, image: np.ndarray | None, t_s: float) -> None:
        waiting = self.port.in_waiting
        if waiting:
            self._buf += self.port.read(waiting)
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            word = raw.strip().decode("ascii", errors="replace").upper()
            if not word:
                continue
            state = _SERIAL_WORDS.get(word)
            if state is None:
                self.bad_lines += 1
                continue
            self._history.record(t_s, state)

    def state_at(self, t_s: float) -> SignalState:
        return self._history.state_at(t_s)

    def close(self) -> None:
        self.port.close()


class ImageSignal:
    """Colour test on the image region (x, y, w, h) of the signal head's red lamp."""

    def __init__(self, region: tuple[int, int, int, int], red_threshold: float = 0.35, stale_s: float = 5.0):
        self.region = region
        self.red_threshold = red_threshold
        self._history = _StateHistory(stale_s)
        self.last_red_share: float | None = None

    @staticmethod
    def red_share(patch: np.ndarray) -> float:
        """Share of pixels that are saturated, bright and red."""
        if patch.size == 0:
            return 0.0
        hsv = cv2.cvtColor(patch, cv2.COLOR_BGR2HSV)
        h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
        red = ((h <= 10) | (h >= 170)) & (s >= 90) & (v >= 120)
        return float(red.mean())

    def observe(self, image: np.ndarray | None, t_s: float) -> None:
        if image is None:
            return
        x, y, w, h = self.region
        patch = image[max(0, y) : y + h, max(0, x) : x + w]
        if patch.size == 0:
            self._history.record(t_s, SignalState.unknown)
            return
        share = self.red_share(patch)
        self.last_red_share = share
        self._history.record(t_s, SignalState.red if share >= self.red_threshold else SignalState.not_red)

    def state_at(self, t_s: float) -> SignalState:
        return self._history.state_at(t_s)

    def close(self) -> None:
        pass


def signal_from_config(cfg: SignalConfig, pin_factory: Any = None) -> SignalInput:
    """The :class:`SignalInput` named by ``signal.source``."""
    if cfg.source == "gpio":
        assert cfg.gpio_pin is not None
        return GpioSignal(cfg.gpio_pin, cfg.gpio_active_high, pin_factory)
    if cfg.source == "serial":
        assert cfg.serial_port is not None
        return SerialSignal(cfg.serial_port, cfg.serial_baud, cfg.stale_s)
    assert cfg.region is not None
    return ImageSignal(cfg.region, cfg.red_threshold, cfg.stale_s)
