"""Evidence of a violation: the best face of the rider, the deciding frame, the clip, and the event that refers to them."""

from edge.evidence.assemble import ClipLike, EventAssembler, Evidence, FaceEmbedding
from edge.evidence.collector import EvidenceCollector, PendingEvent, ViolationRecord
from edge.evidence.face import (
    FaceCandidate,
    FaceCapture,
    FaceFinder,
    FaceQuality,
    crop_face,
    frontalness,
    search_region,
)
from edge.evidence.files import media_ref, sha256_file, write_event_json, write_jpeg
from edge.evidence.snapshot import ViolationFrame

__all__ = [
    "ClipLike",
    "EventAssembler",
    "Evidence",
    "EvidenceCollector",
    "FaceCandidate",
    "FaceCapture",
    "FaceEmbedding",
    "FaceFinder",
    "FaceQuality",
    "PendingEvent",
    "ViolationFrame",
    "ViolationRecord",
    "crop_face",
    "frontalness",
    "media_ref",
    "search_region",
    "sha256_file",
    "write_event_json",
    "write_jpeg",
]
