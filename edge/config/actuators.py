"""``speaker``, ``lights`` and ``time_switch``: persuasion on the spot."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge.config.base import Section


class SpeakerConfig(Section):
    enabled: bool = True
    backend: Literal["sounddevice", "none"] = Field("sounddevice", description="'sounddevice' plays through PortAudio; 'none' keeps the speaker off.")
    device: str | int | None = Field(None, description="PortAudio output device name or index; None = system default.")
    languages: list[str] = Field(default_factory=lambda: ["zh-cmn"], min_length=1, description="Prompt packs played in this order.")
    prompts_dir: str | None = Field(None, description="Folder holding one sub-folder per language; default: the shipped audio_prompts/.")
    volume: float = Field(1.0, ge=0, le=1)
    cooldown_track_s: float = Field(30.0, ge=0, le=3600)
    cooldown_global_s: float = Field(3.0, ge=0, le=600)


class LightsConfig(Section):
    enabled: bool = False
    backend: Literal["gpio", "rs485", "none"] = "gpio"
    on_time_s: float = Field(5.0, gt=0, le=600)


class TimeWindow(Section):
    start: str = Field(..., pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local time")
    end: str = Field(..., pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local time; before start means past midnight")


class TimeSwitchConfig(Section):
    windows: list[TimeWindow] = Field(default_factory=lambda: [TimeWindow(start="07:00", end="20:00")])
