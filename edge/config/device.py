"""``device``: who this appliance is and where it keeps its data."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from anqi_contract.config import Section, known_timezone

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class DeviceConfig(Section):
    device_id: str = Field(
        "anqi-dev-0001",
        pattern=ID_PATTERN,
        description="Unique id of this appliance; part of every MQTT topic.",
    )
    site_id: str = Field("huzhou-demo", pattern=ID_PATTERN, description="Site (installation) id.")
    point_id: str = Field(
        "point-1", pattern=ID_PATTERN, description="Supervision point id (卡口) reported with each event."
    )
    timezone: str = Field("Asia/Shanghai", description="IANA time zone for the time switch and reports.")
    data_dir: Path = Field(
        Path("anqi-data"),
        description="Outbox, evidence and health file; relative paths are relative to the config file.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        return known_timezone(v)
