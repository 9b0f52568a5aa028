"""``track``: multi-object tracking of riders."""

from __future__ import annotations

from pydantic import Field

from edge.config.base import Section


class TrackConfig(Section):
    high_conf: float = Field(0.5, gt=0, lt=1, description="Detections above this start and extend tracks (ByteTrack first pass).")
    low_conf: float = Field(0.15, gt=0, lt=1, description="Detections above this only extend existing tracks (second pass).")
    match_iou: float = Field(0.2, gt=0, lt=1)
    max_lost_s: float = Field(1.5, gt=0, le=30, description="A track unseen this long is closed.")
    min_hits: int = Field(2, ge=1, le=30, description="Detections needed before a track counts.")
