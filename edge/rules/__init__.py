"""Violation rules, one module each; :class:`RuleSet` runs the enabled ones over updated tracks."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.config import EdgeConfig
from edge.rules.no_helmet import NoHelmetRule
from edge.rules.red_light import RedLightRule
from edge.rules.signal import GpioSignal, ImageSignal, SerialSignal, SignalInput, SignalState, signal_from_config
from edge.rules.violation import Rule, Violation
from edge.rules.wrong_way import WrongWayRule
from edge.track.tracker import Track

__all__ = [
    "check_config",
    "GpioSignal",
    "ImageSignal",
    "NoHelmetRule",
    "RedLightRule",
    "Rule",
    "RuleSet",
    "SerialSignal",
    "SignalInput",
    "SignalState",
    "Violation",
    "WrongWayRule",
    "signal_from_config",
]


class RuleSet:
    """The enabled rules of a site, and the signal input the red-light rule reads."""

    def __init__(self, rules: list[Rule], signal: SignalInput | None = None):
        self.rules = rules
        self.signal = signal

    @classmethod
    def from_config(cls, cfg: EdgeConfig, pin_factory: Any = None) -> "RuleSet":
        window = cfg.track.motion_window_s
        rules: list[Rule] = []
        signal: SignalInput | None = None
        if cfg.rules.no_helmet.enabled:
            rules.append(NoHelmetRule(cfg.rules.no_helmet, window))
        if cfg.rules.wrong_way.enabled:
            rules.append(WrongWayRule(cfg.rules.wrong_way, window))
        if cfg.rules.red_light.enabled:
            assert cfg.rules.red_light.signal is not None  # the config validator guarantees it
            signal = signal_from_config(cfg.rules.red_light.signal, pin_factory)
            rules.append(RedLightRule(cfg.rules.red_light, signal, window))
        return cls(rules, signal)

    def observe_signal(self, image: np.ndarray | None, t_s: float) -> None:
        if self.signal is not None:
            self.signal.observe(image, t_s)

    def check(self, tracks: list[Track]) -> list[Violation]:
        """Violations decided on this update (each rule reports a track at most once)."""
        out: list[Violation] = []
        for t in tracks:
            for rule in self.rules:
                v = rule.check(t)
                if v is not None:
                    out.append(v)
        return out

    def forget(self, track_ids: set[int]) -> None:
        """Tracks that ended: every rule drops its per-track state (ids never come back)."""
        for rule in self.rules:
            rule.forget(track_ids)

    def close(self) -> None:
        if self.signal is not None:
            self.signal.close()


def check_config(cfg: EdgeConfig) -> list[str]:
    """Problems with the devices ``rules`` names (for ``anqi-edge validate``): the signal input's pin
    or serial port, and a stop line of zero length; each ``key.path: message``."""
    rl = cfg.rules.red_light
    if not rl.enabled or rl.signal is None:
        return []
    problems: list[str] = []
    if rl.stop_line is not None and rl.stop_line[0] == rl.stop_line[1]:
        problems.append("rules.red_light.stop_line: the two points are the same")
    sig = rl.signal
    if sig.source == "gpio" and sig.gpio_pin is not None:
        import re

        if not re.fullmatch(r"(GPIO|BCM)?\d{1,2}|BOARD\d{1,2}|J8:\d{1,2}|WPI\d{1,2}", sig.gpio_pin.strip(), re.IGNORECASE):
            problems.append(f"rules.red_light.signal.gpio_pin: {sig.gpio_pin!r} is not a gpiozero pin name (e.g. 'GPIO17', 'BOARD11')")
    elif sig.source == "serial" and sig.serial_port is not None:
        import os

        port = sig.serial_port
        if "://" not in port and not os.path.exists(port):
            problems.append(f"rules.red_light.signal.serial_port: {port} does not exist")
    elif sig.source == "image" and sig.region is not None:
        x, y, w, h = sig.region
        if w <= 0 or h <= 0 or x < 0 or y < 0:
            problems.append(f"rules.red_light.signal.region: {list(sig.region)} must have x, y >= 0 and a positive width and height")
    return problems
