"""``track``: multi-object tracking of riders."""

from __future__ import annotations

from pydantic import Field, model_validator

from anqi_contract.config import Section


class TrackConfig(Section):
    high_conf: float = Field(
        0.5, gt=0, lt=1, description="Detections above this start and extend tracks (ByteTrack first pass)."
    )
    low_conf: float = Field(
        0.15, gt=0, lt=1, description="Detections above this only extend existing tracks (second pass)."
    )
    match_iou: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Smallest IoU between a predicted track box and a detection to match them.",
    )
    max_scale_change: float = Field(
        1.6,
        gt=1,
        le=5,
        description="A detection more than this many times taller or shorter than a track's predicted box is not that track.",
    )
    head_gate: float = Field(
        1.0,
        gt=0,
        le=5,
        description="A detected head matches a track when its centre lies within this many head sizes of the track's predicted head.",
    )
    head_gate_growth: float = Field(
        0.5,
        ge=0,
        le=10,
        description="The head gate widens by this many head sizes per second the track has gone unseen (its position is less certain).",
    )
    appearance_min: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="A detection whose clothes' colours (hue x saturation histogram below the head) match a track's less than this (Bhattacharyya coefficient) is not that track; 0 = motion only.",
    )
    relink_gate: float = Field(
        1.0,
        ge=0,
        le=10,
        description="A new track continues a lost one (not yet closed) when its first head lies within this many head sizes of where the lost head would be, growing by as many per second unseen, in the same clothes (relink_alike); 0 = off.",
    )
    relink_alike: float = Field(
        0.75,
        ge=0,
        lt=1,
        description="Clothes' colour histograms (Bhattacharyya coefficient) must match at least this much for relink_gate.",
    )
    max_lost_s: float = Field(1.5, gt=0, le=30, description="A track unseen this long is closed.")
    min_hits: int = Field(2, ge=1, le=30, description="Detections needed before a track counts.")
    head_only_tracks: bool = Field(
        True,
        description="A head with no rider box around it becomes a rider of its own (frontal cameras: the body is often hidden by the bike).",
    )
    head_to_body: float = Field(
        7.5,
        ge=2,
        le=12,
        description="Height of a rider (head top to wheel contact) in head heights, to place the ground point of a head-only track: an upright cyclist's head top is about at standing height, 7-8 heads for adults (was 6.5, which put riders 15 % too far).",
    )
    motion_window_s: float = Field(
        1.0,
        ge=0.1,
        le=10,
        description="Ground speed and heading are fitted over this many seconds of a track's recent positions.",
    )
    history_s: float = Field(
        30.0, ge=1, le=600, description="Seconds of per-track history kept (positions and helmet votes)."
    )

    @model_validator(mode="after")
    def _low_below_high(self) -> TrackConfig:
        if self.low_conf > self.high_conf:
            raise ValueError(
                f"track.low_conf must be <= track.high_conf (got {self.low_conf} > {self.high_conf})"
            )
        return self
