"""The AnQi wire protocol between an edge appliance and the central office, defined once.

Both sides import this module: the edge (:mod:`edge.relay`) to publish, ``central_sync`` to
consume. It works on MQTT 3.1.1 as well as 5 (nothing relies on MQTT 5 user properties): every
piece of metadata is in the topic or in the payload. Full description: ``docs/TOPICS.md``.

Topics (``prefix`` is ``relay.mqtt.topic_prefix``, ``anqi/v1`` by default)::

    {prefix}/{site}/{device}/event                      edge -> central  QoS 1  JSON ViolationEvent
    {prefix}/{site}/{device}/media/{event_id}/{name}    edge -> central  QoS 1  binary chunk (header + bytes)
    {prefix}/{site}/{device}/status                     edge -> central  QoS 1  retained JSON {"state": online|offline}, Last Will
    {prefix}/{site}/{device}/heartbeat                  edge -> central  QoS 0  JSON Heartbeat (with pass counters;
                                                                              the last one at a clean stop QoS 1)
    {prefix}/{site}/{device}/ack                        central -> edge  QoS 1  JSON Ack

Media chunk payload (one MQTT message per chunk; a file not above the chunk size is one chunk)::

    b"AQM1" | header length (uint16, big-endian) | header (UTF-8 JSON, ChunkHeader) | chunk bytes

The header carries ``event_id``, ``name``, ``index`` (from 0), ``count``, ``offset``, ``size``
(whole file), ``sha256`` (whole file) and ``chunk_sha256``. :class:`MediaAssembler` verifies
both digests, rejects corrupt chunks, and tolerates duplicates and any arrival order.

Order on the edge: all media chunks of an event are published before the event itself; the
central side stores the event idempotently on ``event_id`` and answers with an :class:`Ack`
(``stored`` + ``media_complete``) or ``rejected`` + ``reason``. Only a ``stored`` ack with
``media_complete`` lets the edge forget the evidence; a broker PUBACK only proves the broker has it.
"""

from __future__ import annotations

import hashlib
import struct
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from anqi_contract.event import ViolationEvent, parse_event

__all__ = [
    "PROTOCOL_VERSION",
    "MEDIA_MAGIC",
    "TopicKind",
    "Topic",
    "ProtocolError",
    "topic_for",
    "event_topic",
    "media_topic",
    "status_topic",
    "heartbeat_topic",
    "ack_topic",
    "parse_topic",
    "device_filter",
    "central_filters",
    "shared_subscription",
    "encode_event",
    "decode_event",
    "ChunkHeader",
    "MediaChunk",
    "encode_chunk",
    "decode_chunk",
    "iter_media_chunks",
    "chunk_count",
    "sha256_file",
    "DeviceStatus",
    "encode_status",
    "decode_status",
    "Heartbeat",
    "PassCount",
    "PASSES_MAX",
    "encode_heartbeat",
    "decode_heartbeat",
    "Ack",
    "AckBatch",
    "ACK_BATCH_MAX",
    "encode_ack",
    "decode_ack",
    "encode_acks",
    "decode_acks",
    "AssembledMedia",
    "MediaAssembler",
]

PROTOCOL_VERSION = 1
MEDIA_MAGIC = b"AQM1"
_HEADER_LEN = struct.Struct(">H")
#: the id patterns of edge.config.device / anqi_contract.event.MediaRef: no '/', '+', '#' can appear
_SEGMENT_FORBIDDEN = set("/+#\0 ")


class ProtocolError(ValueError):
    """A topic or payload that does not follow this protocol (say which and why; never crash)."""


class TopicKind(str, Enum):
    event = "event"
    media = "media"
    status = "status"
    heartbeat = "heartbeat"
    ack = "ack"


@dataclass(frozen=True)
class Topic:
    """A parsed AnQi topic. ``event_id`` and ``name`` are set for media topics only."""

    prefix: str
    site: str
    device: str
    kind: TopicKind
    event_id: uuid.UUID | None = None
    name: str | None = None

    def __str__(self) -> str:
        return topic_for(self.prefix, self.site, self.device, self.kind, self.event_id, self.name)


def _segment(value: str, what: str) -> str:
    if not value or any(c in _SEGMENT_FORBIDDEN for c in value):
        raise ProtocolError(
            f"{what} {value!r} cannot be a topic segment (empty, or contains '/', '+', '#', space)"
        )
    return value


def _prefix(prefix: str) -> str:
    p = prefix.strip("/")
    if not p or any(c in "+#" for c in p):
        raise ProtocolError(f"topic prefix {prefix!r} is empty or contains a wildcard")
    return p


def topic_for(
    prefix: str,
    site: str,
    device: str,
    kind: TopicKind | str,
    event_id: uuid.UUID | str | None = None,
    name: str | None = None,
) -> str:
    kind = TopicKind(kind)
    base = f"{_prefix(prefix)}/{_segment(site, 'site')}/{_segment(device, 'device')}/{kind.value}"
    if kind is TopicKind.media:
        if event_id is None or name is None:
            raise ProtocolError("a media topic needs event_id and name")
        return f"{base}/{uuid.UUID(str(event_id))}/{_segment(name, 'media name')}"
    return base


def event_topic(prefix: str, site: str, device: str) -> str:
    return topic_for(prefix, site, device, TopicKind.event)


def media_topic(prefix: str, site: str, device: str, event_id: uuid.UUID | str, name: str) -> str:
    return topic_for(prefix, site, device, TopicKind.media, event_id, name)


def status_topic(prefix: str, site: str, device: str) -> str:
    return topic_for(prefix, site, device, TopicKind.status)


def heartbeat_topic(prefix: str, site: str, device: str) -> str:
    return topic_for(prefix, site, device, TopicKind.heartbeat)


def ack_topic(prefix: str, site: str, device: str) -> str:
    return topic_for(prefix, site, device, TopicKind.ack)


def parse_topic(topic: str, prefix: str = "anqi/v1") -> Topic:
    """Split a concrete topic into its parts; :class:`ProtocolError` when it is not an AnQi topic."""
    p = _prefix(prefix)
    if not topic.startswith(p + "/"):
        raise ProtocolError(f"topic {topic!r} is not under prefix {p!r}")
    parts = topic[len(p) + 1 :].split("/")
    if len(parts) < 3:
        raise ProtocolError(f"topic {topic!r}: expected {p}/<site>/<device>/<kind>[/...]")
    site, device, kind_s, rest = parts[0], parts[1], parts[2], parts[3:]
    _segment(site, "site")
    _segment(device, "device")
    try:
        kind = TopicKind(kind_s)
    except ValueError:
        raise ProtocolError(f"topic {topic!r}: unknown kind {kind_s!r}") from None
    if kind is TopicKind.media:
        if len(rest) != 2:
            raise ProtocolError(f"topic {topic!r}: media topics end in /media/<event_id>/<name>")
        try:
            eid = uuid.UUID(rest[0])
        except ValueError:
            raise ProtocolError(f"topic {topic!r}: {rest[0]!r} is not an event id (UUID)") from None
        return Topic(p, site, device, kind, eid, _segment(rest[1], "media name"))
    if rest:
        raise ProtocolError(f"topic {topic!r}: unexpected segments after {kind.value!r}")
    return Topic(p, site, device, kind)


def device_filter(prefix: str, site: str, device: str, kind: TopicKind | str) -> str:
    """Subscription filter for one device's topics of one kind (media: all its media)."""
    kind = TopicKind(kind)
    base = f"{_prefix(prefix)}/{_segment(site, 'site')}/{_segment(device, 'device')}/{kind.value}"
    return base + "/#" if kind is TopicKind.media else base


def central_filters(prefix: str = "anqi/v1") -> dict[TopicKind, str]:
    """The filters a central consumer subscribes to (every site and device)."""
    p = _prefix(prefix)
    return {
        TopicKind.event: f"{p}/+/+/event",
        TopicKind.media: f"{p}/+/+/media/#",
        TopicKind.status: f"{p}/+/+/status",
        TopicKind.heartbeat: f"{p}/+/+/heartbeat",
    }


def shared_subscription(group: str, topic_filter: str) -> str:
    """MQTT 5 shared subscription (``$share/<group>/<filter>``): consumers in a group split the load."""
    return f"$share/{_segment(group, 'share group')}/{topic_filter}"


# --- events -------------------------------------------------------------------------------------


def encode_event(event: ViolationEvent) -> bytes:
    return event.to_json().encode("utf-8")


def decode_event(payload: bytes) -> ViolationEvent:
    """Parse an event payload. Raises :class:`anqi_contract.event.UnsupportedSchemaVersion` for unknown
    versions and :class:`ProtocolError` for anything else malformed."""
    from anqi_contract.event import UnsupportedSchemaVersion

    try:
        return parse_event(payload)
    except UnsupportedSchemaVersion:
        raise
    except (ValueError, ValidationError) as e:  # JSONDecodeError and ValidationError are ValueErrors
        raise ProtocolError(f"event payload is not a valid event: {e}") from None


# --- media chunks -------------------------------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ChunkHeader(_Wire):
    v: Literal[1] = 1
    event_id: uuid.UUID
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    index: int = Field(..., ge=0)
    count: int = Field(..., ge=1)
    offset: int = Field(..., ge=0)
    size: int = Field(..., ge=0, description="Size of the whole file in bytes.")
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the whole file.")
    chunk_sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$", description="SHA-256 of this chunk's bytes.")


@dataclass(frozen=True)
class MediaChunk:
    header: ChunkHeader
    data: bytes


def chunk_count(size: int, chunk_bytes: int) -> int:
    return max(1, -(-size // chunk_bytes))


def encode_chunk(header: ChunkHeader, data: bytes) -> bytes:
    h = header.model_dump_json().encode("utf-8")
    return MEDIA_MAGIC + _HEADER_LEN.pack(len(h)) + h + data


def decode_chunk(payload: bytes, topic: Topic | None = None) -> MediaChunk:
    """Parse a chunk and check its own digest (and, with ``topic``, that topic and header agree)."""
    payload = bytes(payload)
    if len(payload) < 6 or payload[:4] != MEDIA_MAGIC:
        raise ProtocolError("media payload does not start with the AQM1 header")
    (hlen,) = _HEADER_LEN.unpack_from(payload, 4)
    if len(payload) < 6 + hlen:
        raise ProtocolError("media payload shorter than its header length")
    try:
        header = ChunkHeader.model_validate_json(payload[6 : 6 + hlen])
    except ValidationError as e:
        raise ProtocolError(
            f"media chunk header invalid: {e.errors()[0]['loc']} {e.errors()[0]['msg']}"
        ) from None
    data = payload[6 + hlen :]
    if header.index >= header.count:
        raise ProtocolError(f"media chunk index {header.index} >= count {header.count}")
    if header.offset + len(data) > header.size:
        raise ProtocolError("media chunk extends past the file size in its header")
    if hashlib.sha256(data).hexdigest() != header.chunk_sha256:
        raise ProtocolError(
            f"media chunk {header.name}#{header.index} of {header.event_id}: chunk SHA-256 mismatch (corrupt)"
        )
    if topic is not None and (topic.event_id != header.event_id or topic.name != header.name):
        raise ProtocolError(
            f"media chunk header ({header.event_id}/{header.name}) does not match its topic ({topic.event_id}/{topic.name})"
        )
    return MediaChunk(header, data)


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(block):
            h.update(b)
    return h.hexdigest()


def iter_media_chunks(
    event_id: uuid.UUID | str, name: str, source: Path | bytes, chunk_bytes: int, sha256: str | None = None
) -> Iterator[tuple[ChunkHeader, bytes]]:
    """Yield ``(header, payload)`` for each chunk of a file (read piecewise) or a bytes object.

    ``sha256`` of the whole file may be given (it is in the event's MediaRef); else it is computed.
    """
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be positive")
    eid = uuid.UUID(str(event_id))
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        size, whole = len(data), sha256 or hashlib.sha256(data).hexdigest()
        count = chunk_count(size, chunk_bytes)
        for i in range(count):
            part = data[i * chunk_bytes : (i + 1) * chunk_bytes]
            hdr = ChunkHeader(
                event_id=eid,
                name=name,
                index=i,
                count=count,
                offset=i * chunk_bytes,
                size=size,
                sha256=whole,
                chunk_sha256=hashlib.sha256(part).hexdigest(),
            )
            yield hdr, encode_chunk(hdr, part)
        return
    path = Path(source)
    size = path.stat().st_size
    whole = sha256 or sha256_file(path)
    count = chunk_count(size, chunk_bytes)
    with open(path, "rb") as f:
        for i in range(count):
            part = f.read(chunk_bytes)
            hdr = ChunkHeader(
                event_id=eid,
                name=name,
                index=i,
                count=count,
                offset=i * chunk_bytes,
                size=size,
                sha256=whole,
                chunk_sha256=hashlib.sha256(part).hexdigest(),
            )
            yield hdr, encode_chunk(hdr, part)


# --- status, heartbeat, ack ---------------------------------------------------------------------


class DeviceStatus(_Wire):
    """Retained on ``.../status``: ``online`` at connect, ``offline`` as Last Will and at clean stop."""

    state: Literal["online", "offline"]
    device_id: str | None = None
    time: float | None = Field(
        None, description="Unix time of the message (absent in the Last Will, fixed at connect)."
    )
    version: str | None = None


#: most intervals one heartbeat carries (the edge re-sends its recent intervals: heartbeats are QoS 0)
PASSES_MAX = 288


class PassCount(_Wire):
    """Riders who passed through one point's capture zone in one interval ``[start, end)`` (unix seconds), and
    how many of them the edge decided a violation for. Counted once per rider track, in the interval of its
    first frame inside the zone; a violation decided later still counts in that interval. The edge sends an
    interval again in later heartbeats (counters only grow), so central keeps the largest value it saw:
    a lost heartbeat loses nothing while the interval is still in the edge's ring.

    Safe-riding rate of the point = (riders - violators) / riders; helmet rate = (riders - no_helmet) / riders.
    """

    point_id: str = Field(..., min_length=1, max_length=64)
    start: float = Field(..., ge=0)
    end: float = Field(..., ge=0)
    riders: int = Field(..., ge=0, description="Rider tracks first seen inside the zone in this interval.")
    violators: int = Field(0, ge=0, description="Of these, tracks with at least one violation decided.")
    no_helmet: int = Field(0, ge=0, description="Of these, tracks with a no-helmet violation.")

    @model_validator(mode="after")
    def _consistent(self) -> PassCount:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.violators > self.riders:
            raise ValueError(f"violators ({self.violators}) exceed riders ({self.riders})")
        if self.no_helmet > self.violators:
            raise ValueError(f"no_helmet ({self.no_helmet}) exceeds violators ({self.violators})")
        return self


class Heartbeat(_Wire):
    """Periodic (``relay.heartbeat_s``) on ``.../heartbeat``; fields are None where not available."""

    v: Literal[1] = 1
    device_id: str
    time: float = Field(..., description="Unix time the heartbeat was made.")
    uptime_s: float = Field(..., ge=0)
    fps: float | None = Field(None, ge=0, description="Frames per second the pipeline processes.")
    queue_depth: int = Field(..., ge=0, description="Events in the outbox not yet acknowledged by central.")
    oldest_unsent_age_s: float | None = Field(None, ge=0)
    disk_used_mb: float | None = Field(None, ge=0, description="Disk used by the outbox.")
    disk_free_mb: float | None = Field(None, ge=0, description="Free space on the outbox's file system.")
    temperature_c: float | None = None
    components: dict[str, str] = Field(
        default_factory=dict, description="Health component -> up|down|degraded|off."
    )
    passes: list[PassCount] = Field(
        default_factory=list,
        max_length=PASSES_MAX,
        description="Pass counters of the recent intervals (oldest first; the current one last, still counting).",
    )


class Ack(_Wire):
    """Central's answer on ``.../ack`` for one event (published once stored, idempotently)."""

    v: Literal[1] = 1
    event_id: uuid.UUID
    status: Literal["stored", "rejected"]
    reason: str | None = Field(
        None, description="Why rejected (or what is missing); short, no personal data."
    )
    media_complete: bool = Field(False, description="All media named in the event arrived and verified.")
    missing_media: list[str] = Field(
        default_factory=list, description="Media names central still lacks (edge re-sends them)."
    )


#: most acks in one :class:`AckBatch` message
ACK_BATCH_MAX = 256


class AckBatch(_Wire):
    """Several acks for one device in one message on its ``.../ack`` (central acks a stored batch of events this
    way: one message, one PUBLISH/PUBACK pair on each side, instead of one per event)."""

    v: Literal[1] = 1
    acks: list[Ack] = Field(..., min_length=1, max_length=ACK_BATCH_MAX)


def _encode(model: _Wire) -> bytes:
    return model.model_dump_json(exclude_none=True).encode("utf-8")


def _decode(cls: type[_Wire], payload: bytes, what: str) -> _Wire:
    try:
        return cls.model_validate_json(payload)
    except ValidationError as e:
        first = e.errors()[0]
        raise ProtocolError(
            f"{what} payload invalid at {'.'.join(map(str, first['loc'])) or '(top)'}: {first['msg']}"
        ) from None


def encode_status(status: DeviceStatus) -> bytes:
    return _encode(status)


def decode_status(payload: bytes) -> DeviceStatus:
    return _decode(DeviceStatus, payload, "status")  # type: ignore[return-value]


def encode_heartbeat(hb: Heartbeat) -> bytes:
    return _encode(hb)


def decode_heartbeat(payload: bytes) -> Heartbeat:
    return _decode(Heartbeat, payload, "heartbeat")  # type: ignore[return-value]


def encode_ack(ack: Ack) -> bytes:
    return _encode(ack)


def decode_ack(payload: bytes) -> Ack:
    return _decode(Ack, payload, "ack")  # type: ignore[return-value]


def encode_acks(acks: Sequence[Ack]) -> bytes:
    """One ack as an :class:`Ack`, several (at most :data:`ACK_BATCH_MAX`) as an :class:`AckBatch`."""
    return encode_ack(acks[0]) if len(acks) == 1 else _encode(AckBatch(acks=list(acks)))


def decode_acks(payload: bytes) -> list[Ack]:
    """The acks of an ``.../ack`` message: one :class:`Ack` or an :class:`AckBatch`."""
    try:
        return [decode_ack(payload)]
    except ProtocolError as single:
        try:
            return list(_decode(AckBatch, payload, "ack batch").acks)  # type: ignore[attr-defined]
        except ProtocolError as batch:
            raise (batch if b'"acks"' in payload else single) from None


# --- reassembly ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssembledMedia:
    event_id: uuid.UUID
    name: str
    data: bytes
    sha256: str


@dataclass
class _Partial:
    header: ChunkHeader
    parts: dict[int, bytes]
    stored_bytes: int
    touched: float


class MediaAssembler:
    """Reassembles chunked media in memory, verifying chunk and whole-file SHA-256.

    :meth:`add` returns the :class:`AssembledMedia` when the last missing chunk of a file arrives,
    ``None`` while incomplete or for a duplicate, and raises :class:`ProtocolError` for a corrupt
    chunk (bad digest, or a header that contradicts the chunks already held). A file whose whole
    digest fails is dropped so that a re-send can start clean. Bounded: at most ``max_bytes`` of
    partial data (the least recently touched partial files are evicted first, see :attr:`evicted`)
    and partial files idle longer than ``max_idle_s`` are dropped by :meth:`expire`.
    """

    def __init__(self, max_bytes: int = 256 << 20, max_idle_s: float = 3600.0, remember_done: int = 10_000):
        self.max_bytes = max_bytes
        self.max_idle_s = max_idle_s
        self._partial: OrderedDict[tuple[uuid.UUID, str], _Partial] = OrderedDict()
        self._done: OrderedDict[tuple[uuid.UUID, str], str] = OrderedDict()
        self._remember_done = remember_done
        self._bytes = 0
        self.evicted = 0
        self.duplicates = 0

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def pending(self) -> list[tuple[uuid.UUID, str, int, int]]:
        """``(event_id, name, chunks held, chunk count)`` for each incomplete file."""
        return [(k[0], k[1], len(p.parts), p.header.count) for k, p in self._partial.items()]

    def is_complete(self, event_id: uuid.UUID, name: str) -> bool:
        return (event_id, name) in self._done

    def add_payload(
        self, topic: str | Topic, payload: bytes, prefix: str = "anqi/v1"
    ) -> AssembledMedia | None:
        t = topic if isinstance(topic, Topic) else parse_topic(topic, prefix)
        if t.kind is not TopicKind.media:
            raise ProtocolError(f"topic {t} is not a media topic")
        return self.add(decode_chunk(payload, t))

    def add(self, chunk: MediaChunk) -> AssembledMedia | None:
        h = chunk.header
        key = (h.event_id, h.name)
        if hashlib.sha256(chunk.data).hexdigest() != h.chunk_sha256:
            raise ProtocolError(
                f"media chunk {h.name}#{h.index} of {h.event_id}: chunk SHA-256 mismatch (corrupt)"
            )
        if key in self._done:
            if self._done[key] != h.sha256:
                raise ProtocolError(
                    f"media {h.name} of {h.event_id}: a different file (SHA-256) than the one already assembled"
                )
            self.duplicates += 1
            return None
        p = self._partial.get(key)
        if p is not None and (p.header.sha256, p.header.count, p.header.size) != (h.sha256, h.count, h.size):
            raise ProtocolError(
                f"media {h.name} of {h.event_id}: chunk header contradicts the chunks already held"
            )
        if p is None:
            p = _Partial(h, {}, 0, time.monotonic())
            self._partial[key] = p
        self._partial.move_to_end(key)
        p.touched = time.monotonic()
        if h.index in p.parts:
            self.duplicates += 1
            return None
        p.parts[h.index] = chunk.data
        p.stored_bytes += len(chunk.data)
        self._bytes += len(chunk.data)
        if len(p.parts) < h.count:
            self._evict(keep=key)
            return None
        data = b"".join(p.parts[i] for i in range(h.count))
        self._drop(key)
        digest = hashlib.sha256(data).hexdigest()
        if digest != h.sha256 or len(data) != h.size:
            raise ProtocolError(
                f"media {h.name} of {h.event_id}: whole-file SHA-256 or size mismatch after reassembly (dropped)"
            )
        self._done[key] = digest
        while len(self._done) > self._remember_done:
            self._done.popitem(last=False)
        return AssembledMedia(h.event_id, h.name, data, digest)

    def expire(self, now: float | None = None) -> int:
        """Drop partial files idle for more than ``max_idle_s``; returns how many."""
        now = time.monotonic() if now is None else now
        old = [k for k, p in self._partial.items() if now - p.touched > self.max_idle_s]
        for k in old:
            self._drop(k)
        return len(old)

    def _drop(self, key: tuple[uuid.UUID, str]) -> None:
        p = self._partial.pop(key, None)
        if p is not None:
            self._bytes -= p.stored_bytes

    def _evict(self, keep: tuple[uuid.UUID, str]) -> None:
        while self._bytes > self.max_bytes and len(self._partial) > 1:
            key = next(iter(self._partial))
            if key == keep:
                self._partial.move_to_end(key)
                continue
            self._drop(key)
            self.evicted += 1
