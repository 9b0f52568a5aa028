"""``relay``: the on-disk outbox and the MQTT link to the central office.

Secrets never live here: ``password_env`` names an environment variable (or a systemd credential
file under ``$CREDENTIALS_DIRECTORY``) that holds the password.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from anqi_contract.config import Section


class TlsConfig(Section):
    ca_file: Path | None = Field(
        None,
        description="CA certificate (PEM) that signed the broker's certificate; None uses the system CAs.",
    )
    cert_file: Path | None = Field(
        None, description="Client certificate (PEM) for mutual TLS; needs key_file."
    )
    key_file: Path | None = Field(None, description="Private key (PEM) of cert_file.")
    insecure_skip_verify: bool = Field(
        False, description="Do not check the broker's host name (testing only; the chain is still verified)."
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together (client certificate and its key)")
        return self


class MqttConfig(Section):
    host: str | None = Field(
        None, description="Broker host; None starts the project's own local mosquitto (development only)."
    )
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is the usual TLS port).")
    username: str | None = Field(
        None, max_length=128, description="Broker user; the deployment ACL expects the device_id."
    )
    password_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="Name of the environment variable (or systemd credential) holding the password; never the password itself.",
    )
    client_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="MQTT client id; default 'anqi-<device_id>'. Must be stable for the persistent session.",
    )
    tls: TlsConfig | None = Field(None, description="TLS settings; None means a plain TCP connection.")
    topic_prefix: str = Field(
        "anqi/v1", pattern=r"^[^#+\s]+$", description="First topic segments; see docs/TOPICS.md."
    )
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        "auto", description="MQTT version; auto tries 5 and falls back to 3.1.1."
    )
    keepalive_s: int = Field(
        30, ge=5, le=3600, description="MQTT keep-alive; the broker sends the Last Will after 1.5x this."
    )
    session_expiry_s: int = Field(
        7 * 86400,
        ge=0,
        le=4294967295,
        description="MQTT 5 session expiry (the broker keeps acks for us while offline).",
    )
    max_inflight: int = Field(
        20, ge=1, le=1000, description="QoS 1 messages published and not yet PUBACKed, at most."
    )
    max_unacked_events: int = Field(
        200,
        ge=1,
        le=100_000,
        description="Events the broker has taken but central not yet acknowledged, at most (flow control: the rest waits on the edge's disk).",
    )
    media_chunk_kb: int = Field(256, ge=4, le=65536, description="Media above this size are sent in chunks.")
    reconnect_min_s: float = Field(
        1.0, ge=0.1, le=60, description="First reconnect delay; doubles up to reconnect_max_s."
    )
    reconnect_max_s: float = Field(60.0, ge=1, le=3600, description="Longest reconnect delay.")

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self


class OutboxConfig(Section):
    path: Path | None = Field(
        None, description="Outbox folder (SQLite file + media); default <device.data_dir>/outbox."
    )
    max_disk_mb: float = Field(2048, gt=1, description="Disk the outbox and its media may use.")
    reserve_mb: float = Field(
        16,
        ge=0,
        le=1024,
        description="Ballast file kept in device.data_dir while there is room and deleted when the disk fills, so the outbox, decision records and health go on (0: none).",
    )
    max_age_days: float = Field(
        30, gt=0, description="Acknowledged media and records older than this are deleted."
    )
    when_full: Literal["reject_new_media", "drop_oldest_unsent_media"] = Field(
        "reject_new_media",
        description="When the disk budget is used by unsent data: keep old evidence and send new events without media, or the opposite. Never silent: health alarms.",
    )
    delete_media_on_ack: bool = Field(
        True,
        description="Delete an event's media as soon as central acknowledged it (privacy, the default); false keeps "
        "them until max_age_days or the disk budget (sealed either way when privacy.seal is set).",
    )
    ack_timeout_s: float = Field(
        300.0,
        ge=1,
        le=7 * 86400,
        description="Re-publish an event that the broker accepted but central has not acknowledged within this time.",
    )
    max_resends: int = Field(
        5, ge=0, le=1000, description="Re-sends of media central reports missing before giving up (alarm)."
    )


class RelayConfig(Section):
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    heartbeat_s: float = Field(
        30.0, ge=1, le=3600, description="Seconds between heartbeats on .../heartbeat."
    )
    pass_interval_s: float = Field(
        300.0,
        ge=10,
        le=3600,
        description="Interval of the pass counters in the heartbeat (riders through the zone, violators): the "
        "cockpit's safe-riding rate. The last hour of intervals is re-sent with every heartbeat.",
    )
    flush_timeout_s: float = Field(
        10.0,
        ge=0,
        le=600,
        description="At stop, wait at most this long for in-flight messages to be acknowledged by the broker.",
    )
    backlog_alarm_s: float = Field(
        3600.0,
        ge=10,
        le=30 * 86400,
        description="Raise the relay_backlog health alarm when an event waits longer than this for central's ack.",
    )
