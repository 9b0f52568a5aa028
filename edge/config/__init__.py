"""Site configuration: one YAML per site, validated into typed sections at start.

Each top-level key maps to one pipeline stage (``source``, ``buffer``, ``detect``, ``track``,
``zone``, ``rules``, ``face``, ``speaker``, ``lights``, ``time_switch``, ``relay``, ``privacy``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from edge.config.actuators import LightsConfig, SpeakerConfig, TimeSwitchConfig
from edge.config.base import Section
from edge.config.buffer import BufferConfig
from edge.config.detect import DetectConfig
from edge.config.device import DeviceConfig
from edge.config.face import FaceConfig
from edge.config.privacy import PrivacyConfig
from edge.config.relay import RelayConfig
from edge.config.rules import RulesConfig
from edge.config.source import SourceConfig
from edge.config.track import TrackConfig
from edge.config.zone import ZoneConfig

__all__ = ["ConfigError", "EdgeConfig", "load_config", "parse_config", "read_yaml_file"]


class EdgeConfig(Section):
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    source: SourceConfig = Field(default_factory=SourceConfig)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    detect: DetectConfig = Field(default_factory=DetectConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)
    zone: ZoneConfig = Field(default_factory=ZoneConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    face: FaceConfig = Field(default_factory=FaceConfig)
    speaker: SpeakerConfig = Field(default_factory=SpeakerConfig)
    lights: LightsConfig = Field(default_factory=LightsConfig)
    time_switch: TimeSwitchConfig = Field(default_factory=TimeSwitchConfig)
    relay: RelayConfig = Field(default_factory=RelayConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)

    #: folder of the YAML file; relative paths in the config are resolved against it
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    def resolve(self, p: Path | str) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def data_dir(self) -> Path:
        return self.resolve(self.device.data_dir)


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` holds one line per problem, each naming file and key."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def format_validation_error(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        msg = e["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            if msg.startswith(prefix):
                msg = msg[len(prefix) :]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see config/edge.example.yaml)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in ("value_error",) and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{_loc(e['loc'])}: {msg}")
    return lines


def parse_config(
    data: dict[str, Any] | None, source: str = "<config>", base_dir: Path | None = None
) -> EdgeConfig:
    """Validate a mapping into an :class:`EdgeConfig`; raises :class:`ConfigError` listing every problem."""
    data = dict(data or {})
    if "base_dir" in data:
        raise ConfigError(
            source, ["base_dir: unknown key (check the spelling; see config/edge.example.yaml)"]
        )
    try:
        return EdgeConfig(**data, base_dir=base_dir or Path.cwd())
    except ValidationError as err:
        raise ConfigError(source, format_validation_error(err)) from None


def read_yaml_file(path: Path | str) -> dict[str, Any] | None:
    """The mapping in a YAML config file; :class:`ConfigError` naming the file (and line) otherwise."""
    path = Path(path)
    name = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(name, [f"file not found: {path}"]) from None
    except IsADirectoryError:
        raise ConfigError(name, [f"{path} is a folder, not a YAML file"]) from None
    except OSError as e:
        raise ConfigError(name, [f"cannot read {path}: {e.strerror}"]) from None
    if b"\0" in raw[:8192]:
        raise ConfigError(name, [f"{path} is a binary file, not YAML text"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(
            name,
            [
                f"line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                "save the file as UTF-8 (a GBK/GB2312 file: iconv -f GBK -t UTF-8)"
            ],
        ) from None
    text = text.removeprefix("\ufeff")  # a UTF-8 BOM (Windows editors) is harmless
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(name, [f"{where}not valid YAML ({getattr(e, 'problem', e)})"]) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(name, [f"(top level): must be a mapping of sections, got {type(data).__name__}"])
    return data


def load_config(path: Path | str) -> EdgeConfig:
    path = Path(path)
    return parse_config(read_yaml_file(path), path.name, path.resolve().parent)
