"""Evidence files of one event (face JPEG, context JPEG, clip MP4) and their MediaRefs with SHA-256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

from anqi_contract.event import MediaKind, MediaRef, ViolationEvent
from anqi_contract.fsutil import write_atomic
from anqi_contract.sealed import Sealer

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".mp4": "video/mp4",
    ".mkv": "video/x-matroska",
}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def media_ref(path: Path, kind: MediaKind, name: str | None = None) -> MediaRef:
    """A :class:`MediaRef` for an existing file (size and SHA-256 from the file itself)."""
    ctype = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return MediaRef(
        name=name or path.name,
        kind=kind,
        content_type=ctype,
        size=path.stat().st_size,
        sha256=sha256_file(path),
    )


def write_jpeg(path: Path, image: np.ndarray, quality: int = 92) -> Path:
    """Write a JPEG atomically (temp file, fsync, rename); raises OSError naming the file on failure."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"cannot JPEG-encode {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, buf.tobytes())


def encode_jpeg(image: np.ndarray, quality: int = 92, what: str = "image") -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"cannot JPEG-encode {what}")
    return bytes(buf.tobytes())


def write_media(path: Path, data: bytes, kind: str, sealer: Sealer | None = None) -> tuple[Path, MediaRef]:
    """Write one evidence file atomically, sealed to central's key when ``sealer`` is given (the clear bytes
    then never reach the disk); returns the path and its :class:`MediaRef` (size and SHA-256 of what was written)."""
    ctype = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    blob = sealer.seal(data) if sealer is not None else data
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, blob)
    ref = MediaRef(
        name=path.name,
        kind=kind,  # type: ignore[arg-type]
        content_type=ctype,
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
        sealed_to=sealer.key_id if sealer is not None else None,
    )
    return path, ref


def write_event_json(folder: Path, event: ViolationEvent) -> Path:
    """The event as indented JSON, ``<folder>/<event_id>.json`` (a replay's ``events/`` beside its outbox)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{event.event_id}.json"
    path.write_text(json.dumps(json.loads(event.to_json()), indent=2, ensure_ascii=False))
    return path
