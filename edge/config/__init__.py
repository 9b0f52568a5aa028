"""Site configuration: one YAML per site, validated into typed sections at start.

Each top-level key maps to one pipeline stage (``source``, ``buffer``, ``detect``, ``track``,
``zone``, ``rules``, ``face``, ``speaker``, ``lights``, ``time_switch``, ``relay``, ``privacy``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from anqi_contract.config import ConfigError, Section, format_validation_error, read_yaml_file
from edge.config.actuators import LightsConfig, SpeakerConfig, TimeSwitchConfig
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


def load_config(path: Path | str) -> EdgeConfig:
    path = Path(path)
    return parse_config(read_yaml_file(path), path.name, path.resolve().parent)
