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
