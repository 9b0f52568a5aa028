"""The output of every rule: one :class:`Violation` per track and type."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from anqi_contract.event import ViolationType
from edge.track import Track


@dataclass(frozen=True)
class Violation:
    type: ViolationType
    track_id: int
    t_s: float  #: source time (stream seconds) of the frame on which the rule decided
    mono: float  #: time.monotonic() when that frame was captured (latency accounting)
    utc: datetime
    confidence: float
    zone_distance_m: float | None
    speed_mps: float | None
    heading_deg: float | None
    detail: dict[str, float | int | str | bool] = field(default_factory=dict)


class Rule(Protocol):
    """A violation rule: looks at one updated track, returns at most one violation per track over its life."""

    type: ViolationType

    def check(self, track: Track) -> Violation | None: ...

    def forget(self, track_ids: set[int]) -> None:
        """Drop what the rule keeps about tracks that ended."""


class OncePerTrack:
    """Remembers which tracks a rule already reported (a rule yields at most one violation per track)."""

    def __init__(self) -> None:
        self._fired: set[int] = set()

    def fired(self, track_id: int) -> bool:
        return track_id in self._fired

    def mark(self, track_id: int) -> None:
        self._fired.add(track_id)

    def forget(self, track_ids: set[int]) -> None:
        self._fired -= track_ids
