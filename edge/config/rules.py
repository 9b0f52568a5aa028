"""``rules``: one section per violation rule."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge.config.base import Section


class NoHelmetRuleConfig(Section):
    enabled: bool = True
    min_observations: int = Field(3, ge=1, le=100, description="In-zone head classifications needed before deciding.")
    min_fraction: float = Field(0.6, gt=0, le=1, description="Share of in-zone observations that must say 'no helmet'.")
    min_confidence: float = Field(0.5, gt=0, lt=1, description="Mean no-helmet confidence over those observations.")
    min_speed_mps: float = Field(0.8, ge=0, le=30, description="Ground speed that separates a rider from a pedestrian.")


class WrongWayRuleConfig(Section):
    enabled: bool = False
    lane_heading_deg: float = Field(0.0, ge=-360, le=360, description="Legal direction of travel on the ground plane, degrees (0 = +y, 90 = +x).")
    tolerance_deg: float = Field(60.0, gt=0, lt=180, description="Headings further than 180-tolerance from the legal one are 'opposed'.")
    min_distance_m: float = Field(3.0, gt=0, le=100, description="Ground distance travelled against the lane before deciding.")


class SignalConfig(Section):
    source: Literal["gpio", "serial", "image"] = "image"
    gpio_pin: str | None = Field(None, description="gpiozero pin name (e.g. 'GPIO17' or 'BOARD11') that is active while red.")
    serial_port: str | None = Field(None, description="Serial device or pyserial URL carrying signal state lines ('RED'/'GREEN'/'AMBER').")
    serial_baud: int = Field(9600, gt=0)
    region: tuple[int, int, int, int] | None = Field(None, description="Image region (x, y, w, h) of the red lamp of the signal head.")
    red_threshold: float = Field(0.35, gt=0, lt=1, description="Share of the region's pixels that must be lit red.")


class RedLightRuleConfig(Section):
    enabled: bool = False
    stop_line: tuple[tuple[float, float], tuple[float, float]] | None = Field(None, description="Two ground points (metres) of the stop line.")
    signal: SignalConfig = Field(default_factory=SignalConfig)


class RulesConfig(Section):
    no_helmet: NoHelmetRuleConfig = Field(default_factory=NoHelmetRuleConfig)
    wrong_way: WrongWayRuleConfig = Field(default_factory=WrongWayRuleConfig)
    red_light: RedLightRuleConfig = Field(default_factory=RedLightRuleConfig)
