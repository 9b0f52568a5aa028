"""``speaker``, ``lights`` and ``time_switch``: persuasion on the spot.

The speaker plays a prompt pack (one folder per language under ``audio_prompts/``), the lights
(laser projector, strobe) are relays on GPIO or outputs of an RS-485 sound-and-light controller,
and the time switch keeps every output quiet outside its daily windows.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from pydantic import Field, field_validator, model_validator

from anqi_contract.config import Section

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
LANG_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,16})*$"
VIOLATION_TYPES = ("no_helmet", "wrong_way", "red_light", "passenger")
ViolationName = Literal["no_helmet", "wrong_way", "red_light", "passenger"]


def _all_violations() -> list[ViolationName]:
    return ["no_helmet", "wrong_way", "red_light", "passenger"]


def _default_priority() -> list[ViolationName]:
    return ["red_light", "wrong_way", "no_helmet", "passenger"]


def parse_hex_frame(text: str) -> bytes:
    """``"A0 01 01 A2"`` (spaces, commas, colons or nothing between bytes) -> ``b"\\xa0\\x01\\x01\\xa2"``."""
    compact = re.sub(r"[\s,:]", "", text)
    if compact.lower().startswith("0x"):
        raise ValueError(f"write bytes as plain hex pairs without 0x, e.g. 'A0 01 01 A2' (got {text!r})")
    if not compact or len(compact) % 2 or not re.fullmatch(r"[0-9A-Fa-f]+", compact):
        raise ValueError(f"not a hex byte string like 'A0 01 01 A2' (got {text!r})")
    return bytes.fromhex(compact)


class TimeWindow(Section):
    start: str = Field(..., pattern=HHMM, description="HH:MM local time the window opens.")
    end: str = Field(
        ...,
        pattern=HHMM,
        description="HH:MM local time it closes; before start means past midnight; equal to start means all day.",
    )


class VolumeWindow(TimeWindow):
    volume: float = Field(
        ..., ge=0, le=1, description="Playback gain (0..1) inside this window, e.g. quieter at night."
    )


class SpeakerConfig(Section):
    enabled: bool = True
    backend: Literal["sounddevice", "none"] = Field(
        "sounddevice", description="'sounddevice' plays through PortAudio; 'none' keeps the speaker off."
    )
    device: str | int | None = Field(
        None, description="PortAudio output device name (substring) or index; None = system default."
    )
    languages: list[str] = Field(
        default_factory=lambda: ["zh-cmn"],
        min_length=1,
        max_length=4,
        description="Prompt packs played in this order, one after the other, as one prompt.",
    )
    prompts_dir: str | None = Field(
        None,
        description="Folder with one sub-folder per language, searched before the shipped audio_prompts/; relative to the config file.",
    )
    volume: float = Field(1.0, ge=0, le=1, description="Playback gain outside every volume window.")
    volume_windows: list[VolumeWindow] = Field(
        default_factory=list,
        max_length=24,
        description="Daily windows with their own gain; the first matching window wins.",
    )
    cooldown_track_s: float = Field(
        30.0, ge=0, le=3600, description="A track (rider) is prompted at most once in this time."
    )
    cooldown_global_s: float = Field(
        1.0,
        ge=0,
        le=600,
        description="With barge_in off: silence kept after a prompt ends before the next may start (3 s left half of a crowd unprompted: benchmarks/prompt_latency.py --mode crowd).",
    )
    barge_in: bool = Field(
        True,
        description="A new rider's prompt cuts the prompt playing: at once when it is the same message (it starts again; the first rider hears the restart), else as soon as the playing one has said its first clause (its first pause, e.g. 2.0 s into the 3.6 s Mandarin no-helmet prompt); no cooldown_global_s silence is kept. Off: it waits for the end plus cooldown_global_s.",
    )
    max_delay_s: float = Field(
        3.0,
        gt=0,
        le=60,
        description="A request not started this long after the violation decision is dropped (the rider has gone).",
    )
    gap_s: float = Field(0.3, ge=0, le=5, description="Silence between the languages of one prompt.")
    priority: list[ViolationName] = Field(
        default_factory=_default_priority,
        min_length=1,
        description="Violation types, most urgent first: when requests pile up, the most urgent one is played and the rest coalesced.",
    )
    sample_rate: int | None = Field(
        None,
        ge=8000,
        le=192000,
        description="Output rate in Hz; None = the device's default rate. Prompts are resampled at load.",
    )
    channels: Literal[1, 2] | None = Field(
        None, description="Output channels; None = mono if the device takes it, else stereo."
    )
    latency: Literal["low", "high"] | float = Field(
        "high",
        description="PortAudio output latency: 'low', 'high' (about 0.1 s: rides out CPU spikes from detection without clicks) or seconds.",
    )
    retry_s: float = Field(
        30.0,
        ge=0.5,
        le=3600,
        description="While the output is down, a new prompt re-opens it (re-scanning the devices) at most this often.",
    )

    @field_validator("latency")
    @classmethod
    def _latency_range(cls, v: str | float) -> str | float:
        if isinstance(v, float) and not 0.005 <= v <= 1.0:
            raise ValueError(f"seconds must be within 0.005..1.0 (got {v:g})")
        return v

    @field_validator("languages")
    @classmethod
    def _lang_names(cls, v: list[str]) -> list[str]:
        for lang in v:
            if not re.fullmatch(LANG_PATTERN, lang):
                raise ValueError(
                    f"language {lang!r} is not a pack name like 'zh-cmn', 'zh-yue' or 'wuu-huzhou'"
                )
        if len(set(v)) != len(v):
            raise ValueError(f"language listed twice: {v}")
        return v


GpioPinFactory = Literal["auto", "lgpio", "rpigpio", "pigpio", "native", "mock"]


class GpioLightsConfig(Section):
    pin_factory: GpioPinFactory = Field(
        "auto",
        description="gpiozero pin factory; 'auto' lets gpiozero pick (GPIOZERO_PIN_FACTORY), 'mock' drives no hardware (bench runs).",
    )


class Rs485Config(Section):
    port: str = Field(
        "/dev/ttyUSB0",
        description="Serial device of the RS-485 adapter, or a pyserial URL (loop://, socket://host:port, rfc2217://...).",
    )
    baud: int = Field(9600, ge=300, le=921600)
    parity: Literal["N", "E", "O", "M", "S"] = Field(
        "N", description="N(one), E(ven), O(dd), M(ark), S(pace)."
    )
    stop_bits: float = Field(1, description="1, 1.5 or 2.")
    byte_size: Literal[5, 6, 7, 8] = 8

    @field_validator("stop_bits")
    @classmethod
    def _stop_bits(cls, v: float) -> float:
        if v not in (1, 1.5, 2):
            raise ValueError(f"must be 1, 1.5 or 2 (got {v:g})")
        return v

    write_timeout_s: float = Field(
        0.5, gt=0, le=10, description="A frame not written in this time marks the controller down."
    )


class LightOutputConfig(Section):
    enabled: bool = True
    pin: str | int | None = Field(
        None, description="gpio backend: gpiozero pin name of the relay ('GPIO17', 'BOARD11', 'BCM17' or 17)."
    )
    active_high: bool = Field(
        True,
        description="gpio backend: True if the relay closes when the pin is high; False for active-low relay boards.",
    )
    on_frame: str | None = Field(
        None, description="rs485 backend: bytes (hex) that switch this output on, e.g. 'A0 01 01 A2'."
    )
    off_frame: str | None = Field(
        None, description="rs485 backend: bytes (hex) that switch this output off, e.g. 'A0 01 00 A1'."
    )
    on_time_s: float | None = Field(
        None,
        gt=0,
        le=600,
        description="Seconds on per trigger; None = lights.on_time_s. A new trigger while on extends it.",
    )
    triggers: list[ViolationName] = Field(
        default_factory=_all_violations, description="Violation types that switch this output on."
    )

    @field_validator("pin")
    @classmethod
    def _pin_name(cls, v: str | int | None) -> str | int | None:
        if v is None:
            return v
        if isinstance(v, int):
            if not 0 <= v <= 53:
                raise ValueError(f"GPIO number must be 0..53 (got {v})")
            return v
        name = v.strip().upper()  # gpiozero's names are upper case
        if not re.fullmatch(r"(GPIO|BCM|BOARD|J8:|WPI)\d{1,2}|\d{1,2}", name):
            raise ValueError(
                f"not a gpiozero pin name like 'GPIO17', 'BCM17', 'BOARD11', 'J8:11' or 17 (got {v!r})"
            )
        return name

    @field_validator("on_frame", "off_frame")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None:
            parse_hex_frame(v)
        return v


def _default_outputs() -> dict[str, LightOutputConfig]:
    return {
        "laser": LightOutputConfig.model_validate(
            {"pin": "GPIO17", "on_frame": "A0 01 01 A2", "off_frame": "A0 01 00 A1"}
        ),
        "strobe": LightOutputConfig.model_validate(
            {"pin": "GPIO27", "on_frame": "A0 02 01 A3", "off_frame": "A0 02 00 A2"}
        ),
    }


class LightsConfig(Section):
    enabled: bool = False
    backend: Literal["gpio", "rs485", "none"] = Field(
        "gpio",
        description="'gpio': relays on GPIO pins (gpiozero); 'rs485': a serial sound-and-light controller (pyserial); 'none': no lights.",
    )
    on_time_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="Seconds an output stays on after a trigger (per output: outputs.<name>.on_time_s).",
    )
    retry_s: float = Field(
        30.0,
        ge=0.5,
        le=3600,
        description="While an output is down (adapter unplugged), a trigger re-opens it at most this often.",
    )
    gpio: GpioLightsConfig = Field(default_factory=GpioLightsConfig)
    rs485: Rs485Config = Field(default_factory=Rs485Config)
    outputs: dict[str, LightOutputConfig] = Field(
        default_factory=_default_outputs, description="Named outputs (laser, strobe, ...)."
    )

    @field_validator("outputs")
    @classmethod
    def _output_names(cls, v: dict[str, LightOutputConfig]) -> dict[str, LightOutputConfig]:
        for name in v:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
                raise ValueError(
                    f"output name {name!r} must be lower-case letters, digits, '_' (e.g. 'laser')"
                )
        return v

    @model_validator(mode="after")
    def _backend_fields(self) -> LightsConfig:
        if not self.enabled or self.backend == "none":
            return self
        problems = []
        for name, out in self.outputs.items():
            if not out.enabled:
                continue
            if self.backend == "gpio" and out.pin is None:
                problems.append(f"outputs.{name}.pin is required with backend 'gpio'")
            if self.backend == "rs485" and (out.on_frame is None or out.off_frame is None):
                problems.append(f"outputs.{name}.on_frame and off_frame are required with backend 'rs485'")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TimeSwitchConfig(Section):
    enabled: bool = Field(True, description="False: outputs active at all hours.")
    windows: list[TimeWindow] = Field(
        default_factory=lambda: [TimeWindow(start="07:00", end="20:00")],
        max_length=24,
        description="Daily windows (local time, device.timezone) in which outputs are active.",
    )
    holidays: list[date] = Field(
        default_factory=list,
        description="Dates (YYYY-MM-DD) on which holiday_windows apply instead of windows.",
    )
    holiday_windows: list[TimeWindow] = Field(
        default_factory=list, max_length=24, description="Windows on holidays; empty = outputs quiet all day."
    )
