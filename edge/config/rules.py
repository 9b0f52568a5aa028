"""``rules``: one section per violation rule."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from anqi_contract.config import Section


class NoHelmetRuleConfig(Section):
    enabled: bool = True
    min_observations: int = Field(
        3, ge=1, le=100, description="In-zone head classifications needed before deciding."
    )
    min_observed_s: float = Field(
        0.25,
        ge=0,
        le=10,
        description="Those classifications must span at least this long (the same evidence at any detection rate: 3 frames at 25 fps are 0.08 s of one pose).",
    )
    min_fraction: float = Field(
        0.6, gt=0, le=1, description="Share of in-zone observations that must say 'no helmet'."
    )
    min_confidence: float = Field(
        0.5, gt=0, lt=1, description="Mean no-helmet confidence over those observations."
    )
    vote_threshold: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="A head observation votes 'no helmet' when its no-helmet probability is at least this.",
    )
    min_speed_mps: float = Field(
        0.8,
        ge=0,
        le=30,
        description="Ground speed that separates a rider from a pedestrian; 0 = no motion check (an uncalibrated zone measures no speed).",
    )
    min_image_motion: float = Field(
        1.0,
        ge=0,
        le=20,
        description="Where no ground speed is measured (zone.calibrated false), a rider seen only as a head must move this many head sizes per second in the image (drift or growth) to be a rider, not a still head-like object (a sign, foliage); 0 = no check.",
    )
    max_speed_mps: float = Field(
        15.0,
        gt=0,
        le=60,
        description="Faster ground motion is a tracking error (a track jumping between heads or noise), not a rider: not decided while it lasts.",
    )
    rider_box_is_bike: bool = Field(
        True,
        description="A track built from the detector's rider class (a person on a two-wheeler) counts as riding even below min_speed_mps.",
    )


class PassengerRuleConfig(Section):
    """违规载人: more people on one two-wheeler than the site allows (``edge.rules.passenger``)."""

    enabled: bool = True
    max_occupants: int = Field(
        1,
        ge=1,
        le=4,
        description="Adults allowed on one two-wheeler (1: the rider alone); more is a 'passenger' violation.",
    )
    allow_child_seat: bool = Field(
        False,
        description="One child in a child seat is allowed on top of max_occupants: a head clearly smaller than the "
        "driver's (see child_size_ratio) in front of or behind them is not counted.",
    )
    child_size_ratio: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="A head whose size (sqrt of its box area) is at most this share of the driver's counts as a child's "
        "(helmet9: 1 % of labelled adult pairs fall below 0.65, 5 % below 0.75).",
    )
    min_observations: int = Field(
        3, ge=1, le=100, description="In-zone frames with the vehicle's heads counted before deciding."
    )
    min_observed_s: float = Field(
        0.25, ge=0, le=10, description="Those frames must span at least this long (not one pose seen thrice)."
    )
    min_fraction: float = Field(
        0.6,
        gt=0.5,
        le=1,
        description="Share of those frames that must show the decided number of occupants or more (the majority).",
    )
    min_speed_mps: float = Field(
        0.8,
        ge=0,
        le=30,
        description="Where the zone measures ground speed (zone.calibrated), the vehicle must move at least this fast when "
        "the passenger is decided: people standing together by a parked or waiting two-wheeler (a rider at a red light "
        "with a pedestrian beside them) ride nowhere; decided when it moves off inside the band. 0 = no check; "
        "without ground speed (an uncalibrated zone) there is no check: a vehicle coming straight at the camera "
        "moves too little in the image to tell from a still one.",
    )
    passenger_helmet: bool = Field(
        True,
        description="The no-helmet rule also judges each passenger's head: a bare-headed passenger is a no_helmet "
        "event of its own with detail.role = passenger (needs rules.no_helmet.enabled).",
    )


class WrongWayRuleConfig(Section):
    enabled: bool = False
    lane_heading_deg: float = Field(
        0.0,
        ge=-360,
        le=360,
        description="Legal direction of travel on the ground plane, degrees (0 = +y, 90 = +x).",
    )
    tolerance_deg: float = Field(
        60.0,
        gt=0,
        lt=180,
        description="Headings further than 180-tolerance from the legal one are 'opposed'.",
    )
    min_distance_m: float = Field(
        3.0, gt=0, le=100, description="Ground distance travelled against the lane before deciding."
    )
    min_speed_mps: float = Field(
        0.8, ge=0, le=30, description="Slower tracks (standing, pushing) are not judged."
    )
    max_speed_mps: float = Field(
        15.0,
        gt=0,
        le=60,
        description="Faster ground motion is a tracking error (a track jumped between riders), not a rider.",
    )
    window_s: float = Field(
        2.0, ge=0.5, le=10, description="Motion against the lane is fitted over this much recent track."
    )
    min_samples: int = Field(
        6,
        ge=3,
        le=100,
        description="Ground points needed in the window before judging (one noisy point cannot decide).",
    )
    min_band_s: float = Field(
        0.6,
        ge=0,
        le=10,
        description="The judged points lie inside the capture band and span at least this long: a direction is read only where distances are measured well.",
    )
    min_steady: float = Field(
        0.7,
        ge=0.5,
        le=1,
        description="Share of pairs of judged points (earlier, later) ordered against the lane: a rider moves steadily, ranging noise goes back and forth (the pairwise counterpart of the Theil-Sen fit).",
    )


class SignalConfig(Section):
    source: Literal["gpio", "serial", "image"] = "image"
    gpio_pin: str | None = Field(
        None, description="gpiozero pin name (e.g. 'GPIO17' or 'BOARD11') that is active while red."
    )
    gpio_active_high: bool = Field(
        True, description="The red input reads high (True) or low (False) while the signal is red."
    )
    serial_port: str | None = Field(
        None, description="Serial device or pyserial URL carrying signal state lines ('RED'/'GREEN'/'AMBER')."
    )
    serial_baud: int = Field(9600, gt=0)
    region: tuple[int, int, int, int] | None = Field(
        None,
        description="Image region (x, y, w, h) of the red lamp of the signal head, in full-frame pixels.",
    )
    red_threshold: float = Field(
        0.35, gt=0, lt=1, description="Share of the region's pixels that must be lit red."
    )
    stale_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="A signal state older than this is unknown (no decision is made on it).",
    )

    @model_validator(mode="after")
    def _source_has_its_setting(self) -> SignalConfig:
        need = {"gpio": "gpio_pin", "serial": "serial_port", "image": "region"}[self.source]
        if getattr(self, need) is None:
            raise ValueError(f"signal.{need} is required when signal.source is {self.source!r}")
        return self


class RedLightRuleConfig(Section):
    enabled: bool = False
    stop_line: tuple[tuple[float, float], tuple[float, float]] | None = Field(
        None, description="Two ground points (metres) of the stop line."
    )
    min_cross_m: float = Field(
        0.3,
        ge=0,
        le=10,
        description="A track must be this far on each side of the stop line to count as crossing it (debounce).",
    )
    direction_deg: float | None = Field(
        None,
        ge=-360,
        le=360,
        description="Direction of travel the signal controls (ground heading, 0 = +y); crossings more than 90 deg off it are not judged. None: both ways.",
    )
    signal: SignalConfig | None = Field(
        None, description="Where the signal state comes from; required when the rule is enabled."
    )

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> RedLightRuleConfig:
        if self.enabled and self.stop_line is None:
            raise ValueError("rules.red_light.stop_line is required when the rule is enabled")
        if self.enabled and self.signal is None:
            raise ValueError("rules.red_light.signal is required when the rule is enabled")
        return self


class RulesConfig(Section):
    evidence_wait_s: float = Field(
        3.0,
        ge=0,
        le=60,
        description="After a rule decides, face capture keeps looking for a better face of the rider this long (or until its track ends) before the event is committed; prompts are not delayed by it.",
    )
    violation_frame: bool = Field(
        True,
        description="Save the frame the rule decided on, the rider box (and the judged head) drawn, as the event's violation.jpg: "
        "the still a reviewer checks, with or without a face.",
    )
    same_rider_gap_s: float = Field(
        2.0,
        ge=0,
        le=30,
        description="A track that starts within this many seconds after a reported track was last seen, where that rider would be by now "
        "(within same_rider_m), is the same rider re-tracked: its violation of the same type is not reported again. 0 = off.",
    )
    same_rider_m: float = Field(
        3.0, gt=0, le=50, description="Ground distance (metres) for same_rider_gap_s."
    )
    same_rider_alike: float = Field(
        0.75,
        ge=0,
        lt=1,
        description="...and only when their clothes' colour histograms match at least this much (Bhattacharyya coefficient; riders in single file pass the same ground points one after another). 0 = position only.",
    )
    no_helmet: NoHelmetRuleConfig = Field(default_factory=NoHelmetRuleConfig)
    passenger: PassengerRuleConfig = Field(default_factory=PassengerRuleConfig)
    wrong_way: WrongWayRuleConfig = Field(default_factory=WrongWayRuleConfig)
    red_light: RedLightRuleConfig = Field(default_factory=RedLightRuleConfig)
