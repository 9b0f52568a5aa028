"""The violation event: defined once, used by the edge (producer) and central_sync (consumer).

Bump :data:`SCHEMA_VERSION` on any incompatible change; consumers reject versions they do not
know with :class:`UnsupportedSchemaVersion` (a clear log line, never a crash). The JSON Schema
exported from this model lives in ``config/schema/event.v1.json`` (``anqi-edge schema``).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION: Final = 1

#: what a media file is: the best face crop, the context frame, or the video clip
MediaKind = Literal["face", "context", "clip"]


class ViolationType(str, Enum):
    no_helmet = "no_helmet"
    wrong_way = "wrong_way"
    red_light = "red_light"
    passenger = "passenger"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MediaRef(_Model):
    name: str = Field(
        ..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", description="File name, unique within the event."
    )
    kind: MediaKind
    content_type: str
    size: int = Field(..., ge=0)
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    sealed_to: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Key id of the central key the file is sealed to (anqi_contract.sealed); size and sha256 are then "
        "those of the sealed bytes that travel, content_type that of the file inside.",
    )


class FaceInfo(_Model):
    found: bool
    reason: str | None = Field(
        None, description="Why no usable face was captured (e.g. 'rider seen from behind')."
    )
    quality: float | None = Field(
        None, ge=0, le=1, description="Combined size / sharpness / frontalness score."
    )
    size_px: int | None = Field(None, ge=0)
    embedding_model: str | None = None
    embedding: list[float] | None = Field(None, description="L2-normalised face embedding (never logged).")
    embedding_sealed: str | None = Field(
        None,
        max_length=4096,
        description="The embedding sealed to central's key (base64, anqi_contract.sealed); ``embedding`` is then absent.",
    )


class ViolationEvent(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: uuid.UUID = Field(
        default_factory=uuid.uuid4, description="Stable id; consumers are idempotent on it."
    )
    device_id: str
    site_id: str
    point_id: str
    violation_type: ViolationType
    time: AwareDatetime = Field(..., description="UTC time the rule decided the violation.")
    first_seen: AwareDatetime | None = Field(None, description="UTC time the track was first seen.")
    track_id: int = Field(..., ge=0)
    confidence: float = Field(..., ge=0, le=1)
    zone_distance_m: float | None = Field(None, ge=0)
    speed_mps: float | None = Field(None, ge=0)
    heading_deg: float | None = None
    face: FaceInfo
    clip_start: AwareDatetime | None = None
    clip_end: AwareDatetime | None = None
    media: list[MediaRef] = Field(default_factory=list)
    detail: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Rule-specific figures."
    )

    @field_validator("time", "first_seen", "clip_start", "clip_end")
    @classmethod
    def _to_utc(cls, v: datetime | None) -> datetime | None:
        return v.astimezone(timezone.utc) if v is not None else None

    def to_json(self) -> str:
        return self.model_dump_json()

    def log_fields(self) -> dict[str, Any]:
        """What may go into a log line: no embedding, no face data."""
        return {
            "event_id": str(self.event_id),
            "type": self.violation_type.value,
            "track": self.track_id,
            "conf": round(self.confidence, 3),
            "dist_m": None if self.zone_distance_m is None else round(self.zone_distance_m, 1),
            "face": self.face.found,
            "media": len(self.media),
        }


class UnsupportedSchemaVersion(ValueError):
    """An event whose ``schema_version`` this build does not know."""


def parse_event(payload: bytes | str | dict[str, Any]) -> ViolationEvent:
    """Parse an event from JSON; raises :class:`UnsupportedSchemaVersion` or pydantic's ValidationError."""
    if isinstance(payload, (bytes, str)):
        try:  # the common case in one pass of pydantic's own JSON parser (5x faster than json.loads + validate)
            return ViolationEvent.model_validate_json(payload)
        except ValueError:
            pass  # parsed again below, so that the error says what is wrong (schema version first)
    data = json.loads(payload) if isinstance(payload, (bytes, str)) else payload
    if not isinstance(data, dict):
        raise ValueError("event payload is not a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UnsupportedSchemaVersion(
            f"event schema_version {version!r} is not supported (this build reads {SCHEMA_VERSION})"
        )
    return ViolationEvent.model_validate(data)


def json_schema() -> dict[str, Any]:
    schema = ViolationEvent.model_json_schema()
    schema["$id"] = f"https://anqi.example/schema/event.v{SCHEMA_VERSION}.json"
    return schema
