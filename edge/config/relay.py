"""``relay``: the on-disk outbox and the MQTT link to the central office."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from edge.config.base import Section


class TlsConfig(Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False


class MqttConfig(Section):
    host: str | None = Field(None, description="Broker host; None starts the project's own local mosquitto (development only).")
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password_env: str | None = Field(None, description="Name of the environment variable (or systemd credential) holding the password; never the password itself.")
    tls: TlsConfig | None = None
    topic_prefix: str = Field("anqi/v1", pattern=r"^[^#+\s]+$")
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    keepalive_s: int = Field(30, ge=5, le=3600)
    max_inflight: int = Field(20, ge=1, le=1000)
    media_chunk_kb: int = Field(256, ge=4, le=65536, description="Media above this size are sent in chunks.")


class OutboxConfig(Section):
    max_disk_mb: float = Field(2048, gt=1, description="Disk the outbox and its media may use.")
    max_age_days: float = Field(30, gt=0, description="Acknowledged media older than this are deleted.")
    when_full: Literal["reject_new_media", "drop_oldest_unsent_media"] = Field(
        "reject_new_media",
        description="When the disk budget is used by unsent data: keep old evidence and send new events without media, or the opposite. Never silent: health alarms.",
    )


class RelayConfig(Section):
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    heartbeat_s: float = Field(30.0, ge=1, le=3600)
