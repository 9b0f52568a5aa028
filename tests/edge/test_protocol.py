"""Wire protocol: topics, payload codecs and media reassembly (edge and central share these)."""

from __future__ import annotations

import hashlib
import os
import random
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from anqi_contract import protocol as P
from anqi_contract.event import FaceInfo, UnsupportedSchemaVersion, ViolationEvent, ViolationType

EID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def _event() -> ViolationEvent:
    return ViolationEvent(
        device_id="dev-1",
        site_id="site-a",
        point_id="p1",
        violation_type=ViolationType.no_helmet,
        time=datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc),
        track_id=7,
        confidence=0.9,
        face=FaceInfo(found=False, reason="rider seen from behind"),
    )


@pytest.mark.parametrize(
    "kind, extra, expected",
    [
        ("event", {}, "anqi/v1/site-a/dev-1/event"),
        ("status", {}, "anqi/v1/site-a/dev-1/status"),
        ("heartbeat", {}, "anqi/v1/site-a/dev-1/heartbeat"),
        ("ack", {}, "anqi/v1/site-a/dev-1/ack"),
        ("media", {"event_id": EID, "name": "face.jpg"}, f"anqi/v1/site-a/dev-1/media/{EID}/face.jpg"),
    ],
)
def test_topics_build_and_parse_back(kind: str, extra: dict[str, object], expected: str) -> None:
    t = P.topic_for("anqi/v1", "site-a", "dev-1", kind, **extra)  # type: ignore[arg-type]
    assert t == expected
    parsed = P.parse_topic(t, "anqi/v1")
    assert (parsed.site, parsed.device, parsed.kind.value) == ("site-a", "dev-1", kind)
    assert str(parsed) == t
    if kind == "media":
        assert parsed.event_id == EID and parsed.name == "face.jpg"


@pytest.mark.parametrize(
    "topic",
    [
        "other/v1/site-a/dev-1/event",  # wrong prefix
        "anqi/v1/site-a/dev-1",  # no kind
        "anqi/v1/site-a/dev-1/video",  # unknown kind
        "anqi/v1/site-a/dev-1/event/extra",  # trailing segment
        "anqi/v1/site-a/dev-1/media/not-a-uuid/face.jpg",
        f"anqi/v1/site-a/dev-1/media/{EID}",  # no name
        "anqi/v1/site-a//event",  # empty device
    ],
)
def test_parse_topic_rejects_foreign_topics(topic: str) -> None:
    with pytest.raises(P.ProtocolError):
        P.parse_topic(topic, "anqi/v1")


@pytest.mark.parametrize("device", ["a/b", "a+b", "#", ""])
def test_topic_builder_refuses_wildcards_in_ids(device: str) -> None:
    with pytest.raises(P.ProtocolError):
        P.event_topic("anqi/v1", "site-a", device)


def test_filters_cover_every_device_and_shared_subscription_syntax() -> None:
    f = P.central_filters("anqi/v1")
    assert f[P.TopicKind.event] == "anqi/v1/+/+/event"
    assert f[P.TopicKind.media] == "anqi/v1/+/+/media/#"
    assert P.shared_subscription("central", f[P.TopicKind.event]) == "$share/central/anqi/v1/+/+/event"
    assert P.device_filter("anqi/v1", "s", "d", "ack") == "anqi/v1/s/d/ack"


def test_event_round_trip_and_version_rejection() -> None:
    ev = _event()
    assert P.decode_event(P.encode_event(ev)) == ev
    bad = P.encode_event(ev).replace(b'"schema_version":1', b'"schema_version":99')
    with pytest.raises(UnsupportedSchemaVersion):
        P.decode_event(bad)
    with pytest.raises(P.ProtocolError):
        P.decode_event(b"{not json")
    with pytest.raises(P.ProtocolError):
        P.decode_event(b'{"schema_version": 1}')


def test_acks_travel_alone_or_as_a_batch() -> None:
    one = P.Ack(event_id=EID, status="stored", media_complete=True)
    assert P.encode_acks([one]) == P.encode_ack(one)  # a single ack keeps the single-ack form
    assert P.decode_acks(P.encode_ack(one)) == [one]
    many = [
        P.Ack(
            event_id=uuid.uuid4(),
            status="stored",
            media_complete=i % 2 == 0,
            missing_media=[] if i % 2 == 0 else ["acks"],
        )
        for i in range(5)
    ] + [P.Ack(event_id=uuid.uuid4(), status="rejected", reason="unknown point")]
    assert P.decode_acks(P.encode_acks(many)) == many
    with pytest.raises(P.ProtocolError, match=r"ack batch payload invalid at acks\.1\.status"):
        P.decode_acks(
            b'{"v": 1, "acks": [{"event_id": "%s", "status": "stored"}, {"event_id": "%s", "status": "maybe"}]}'
            % (str(EID).encode(), str(EID).encode())
        )
    with pytest.raises(P.ProtocolError, match="ack batch"):
        P.decode_acks(b'{"v": 1, "acks": []}')
    with pytest.raises(
        P.ProtocolError, match=r"ack payload invalid at status"
    ):  # not a batch: the single ack's error
        P.decode_acks(b'{"event_id": "12345678-1234-5678-1234-567812345678", "status": "maybe"}')
    with pytest.raises(ValueError):
        P.AckBatch(acks=[one] * (P.ACK_BATCH_MAX + 1))


def test_ack_heartbeat_status_round_trip_and_invalid_payloads() -> None:
    ack = P.Ack(event_id=EID, status="stored", media_complete=True)
    assert P.decode_ack(P.encode_ack(ack)) == ack
    rej = P.Ack(event_id=EID, status="rejected", reason="schema_version 2 unknown")
    assert P.decode_ack(P.encode_ack(rej)).reason == "schema_version 2 unknown"
    hb = P.Heartbeat(device_id="d", time=1.0, uptime_s=5, queue_depth=3, temperature_c=51.5)
    assert P.decode_heartbeat(P.encode_heartbeat(hb)) == hb
    st = P.DeviceStatus(state="offline")
    assert P.decode_status(P.encode_status(st)).state == "offline"
    with pytest.raises(P.ProtocolError, match="status"):
        P.decode_status(b'{"state": "sleeping"}')
    with pytest.raises(P.ProtocolError, match="ack"):
        P.decode_ack(b'{"event_id": "12345678-1234-5678-1234-567812345678", "status": "maybe"}')
    with pytest.raises(P.ProtocolError):
        P.decode_ack(b"\xff\xfe")


def _chunks(data: bytes, size: int, name: str = "clip.mp4") -> list[bytes]:
    return [payload for _, payload in P.iter_media_chunks(EID, name, data, size)]


def test_small_file_is_one_chunk_with_header() -> None:
    data = b"jpegdata"
    (payload,) = _chunks(data, 1024)
    chunk = P.decode_chunk(payload)
    assert chunk.header.count == 1 and chunk.header.size == len(data) and chunk.data == data
    assert chunk.header.sha256 == hashlib.sha256(data).hexdigest()
    assert P.MediaAssembler().add(chunk).data == data  # type: ignore[union-attr]


def test_empty_file_round_trips() -> None:
    (payload,) = _chunks(b"", 16)
    got = P.MediaAssembler().add(P.decode_chunk(payload))
    assert got is not None and got.data == b""


def test_file_chunks_read_from_disk_match_bytes_chunks(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    f = tmp_path / "clip.mp4"
    f.write_bytes(data)
    from_file = [p for _, p in P.iter_media_chunks(EID, "clip.mp4", f, 4096)]
    assert from_file == _chunks(data, 4096)
    assert len(from_file) == P.chunk_count(len(data), 4096) == 3


def test_reassembly_tolerates_shuffled_and_duplicated_chunks() -> None:
    data = os.urandom(50_000)
    payloads = _chunks(data, 4096)
    stream = payloads + payloads[3:7]
    random.Random(1).shuffle(stream)
    asm = P.MediaAssembler()
    topic = P.media_topic("anqi/v1", "s", "d", EID, "clip.mp4")
    results = [asm.add_payload(topic, p) for p in stream]
    done = [r for r in results if r is not None]
    assert len(done) == 1 and done[0].data == data
    assert asm.duplicates == 4 and asm.pending_bytes == 0
    assert asm.is_complete(EID, "clip.mp4")
    assert asm.add_payload(topic, payloads[0]) is None  # a late duplicate after completion


def test_corrupt_chunk_is_rejected_and_a_clean_resend_completes() -> None:
    data = os.urandom(20_000)
    payloads = _chunks(data, 4096)
    asm = P.MediaAssembler()
    corrupt = bytearray(payloads[2])
    corrupt[-1] ^= 0xFF
    for p in payloads[:2]:
        assert asm.add(P.decode_chunk(p)) is None
    with pytest.raises(P.ProtocolError, match="chunk SHA-256"):
        asm.add(P.decode_chunk(bytes(corrupt)))
    got = [asm.add(P.decode_chunk(p)) for p in payloads[2:]]
    assert got[-1] is not None and got[-1].data == data


def test_whole_file_digest_mismatch_is_rejected() -> None:
    data = os.urandom(9000)
    wrong = hashlib.sha256(b"other").hexdigest()
    payloads = [p for _, p in P.iter_media_chunks(EID, "c.bin", data, 4096, sha256=wrong)]
    asm = P.MediaAssembler()
    for p in payloads[:-1]:
        asm.add(P.decode_chunk(p))
    with pytest.raises(P.ProtocolError, match="whole-file"):
        asm.add(P.decode_chunk(payloads[-1]))
    assert asm.pending_bytes == 0


@pytest.mark.parametrize(
    "mangle, match",
    [
        (lambda b: b"XXXX" + b[4:], "AQM1"),
        (lambda b: b[:5], "AQM1"),
        (lambda b: b[:4] + b"\xff\xff" + b[6:], "shorter"),
        (lambda b: b[:6] + b"[" + b[7:], "header invalid"),
    ],
)
def test_decode_chunk_rejects_malformed_payloads(mangle: Callable[[bytes], bytes], match: str) -> None:
    (payload,) = _chunks(b"abc", 16)
    with pytest.raises(P.ProtocolError, match=match):
        P.decode_chunk(mangle(payload))


def test_chunk_on_wrong_topic_is_rejected() -> None:
    (payload,) = _chunks(b"abc", 16, name="face.jpg")
    other = P.parse_topic(P.media_topic("anqi/v1", "s", "d", EID, "clip.mp4"))
    with pytest.raises(P.ProtocolError, match="does not match its topic"):
        P.decode_chunk(payload, other)


def test_contradicting_headers_for_same_file_are_rejected() -> None:
    a = _chunks(os.urandom(9000), 4096)
    b = _chunks(os.urandom(9000), 4096)
    asm = P.MediaAssembler()
    asm.add(P.decode_chunk(a[0]))
    with pytest.raises(P.ProtocolError, match="contradicts"):
        asm.add(P.decode_chunk(b[1]))


def test_assembler_memory_is_bounded_and_idle_partials_expire() -> None:
    asm = P.MediaAssembler(max_bytes=10_000, max_idle_s=5)
    for i in range(5):
        eid = uuid.UUID(int=i)
        first = next(P.iter_media_chunks(eid, "clip.mp4", os.urandom(20_000), 4096))[1]
        asm.add(P.decode_chunk(first))
    assert asm.pending_bytes <= 10_000 and asm.evicted >= 1
    import time

    held = len(asm.pending())
    assert held >= 1 and asm.expire(now=time.monotonic() + 10) == held
    assert asm.pending_bytes == 0 and asm.pending() == []
