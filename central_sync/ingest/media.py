"""Evidence files: chunks verified (SHA-256 per chunk and per file) and reassembled, sealed files opened on
receipt, written durably into ``media.dir`` (atomic rename: two consumers writing one file is harmless)."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from pathlib import Path

from anqi_contract import protocol as P
from anqi_contract.event import MediaRef
from anqi_contract.fsutil import write_atomic
from anqi_contract.logs import log
from anqi_contract.sealed import KeyRing, SealError, is_sealed
from central_sync.config import MediaConfig
from central_sync.ingest.registry import DeviceRegistry
from central_sync.ingest.stats import ConsumerStats

logger = logging.getLogger("anqi.central.consumer")


class MediaFiles:
    """Where a verified file of an event lives: ``<media.dir>/<event_id>/<name>``."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, event_id: uuid.UUID | str, name: str) -> Path:
        return self.root / str(event_id) / name

    @staticmethod
    def sealed_digest_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.sealed-sha256")

    def matches(self, path: Path, ref: MediaRef) -> bool:
        """The stored file is the one the event names (for a sealed file: the sealed bytes that were opened)."""
        if not path.is_file():
            return False
        if ref.sealed_to is not None:
            d = self.sealed_digest_path(path)
            return d.is_file() and d.read_text(encoding="ascii", errors="replace").strip() == ref.sha256
        return P.sha256_file(path) == ref.sha256

    def write(self, path: Path, data: bytes, sealed_sha256: str | None) -> None:
        """Durable before it is linked and acked as complete (the edge deletes its copy on that ack); a file that
        was opened keeps the digest of the sealed bytes the event names beside it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(
            path,
            data,
            tmp=path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"),
            sync_dir=True,
        )
        if sealed_sha256 is not None:
            write_atomic(self.sealed_digest_path(path), sealed_sha256, sync_dir=True)


class MediaReceiver:
    """Media chunks in (network thread), verified files out into :class:`MediaFiles`."""

    def __init__(
        self,
        media: MediaConfig,
        files: MediaFiles,
        registry: DeviceRegistry,
        keyring: KeyRing,
        require_sealed: bool,
        stats: ConsumerStats,
    ):
        self.max_file_bytes = media.max_event_media_mb * (1 << 20)
        self.files = files
        self.registry = registry
        self.keyring = keyring
        self.require_sealed = require_sealed  # sealing.require_sealed
        self.stats = stats
        self.assembler = P.MediaAssembler(
            max_bytes=int(media.max_event_media_mb * 4) << 20, max_idle_s=media.assembly_timeout_s
        )

    def receive(self, topic: P.Topic, payload: bytes) -> uuid.UUID | None:
        """One chunk; returns the event id when it completed a file that is now stored (else ``None``)."""
        try:
            problem = self.registry.problem(topic)
            if problem:
                raise P.ProtocolError(problem)
            chunk = P.decode_chunk(payload, topic)
            if chunk.header.size > self.max_file_bytes:
                raise P.ProtocolError(
                    f"media {chunk.header.name} of {chunk.header.size} bytes exceeds media.max_event_media_mb"
                )
            done = self.assembler.add(chunk)
        except P.ProtocolError as e:
            self.stats.corrupt_chunks += 1
            log(
                logger,
                "media_chunk_rejected",
                logging.WARNING,
                event_id=str(topic.event_id),
                name=topic.name,
                device=topic.device,
                error=str(e)[:300],
            )
            return None
        if done is None:
            return None
        data = done.data
        if is_sealed(data):
            try:  # opened on receipt: what central keeps and shows is the evidence itself
                data = self.keyring.open(data)
            except SealError as e:
                self.stats.count_error()
                log(
                    logger,
                    "media_open_failed",
                    logging.ERROR,
                    event_id=str(done.event_id),
                    name=done.name,
                    device=topic.device,
                    error=str(e)[:300],
                )
                return None
        elif self.require_sealed:
            self.stats.count_error()
            log(
                logger,
                "media_unsealed_refused",
                logging.ERROR,
                event_id=str(done.event_id),
                name=done.name,
                device=topic.device,
            )
            return None
        self.files.write(
            self.files.path(done.event_id, done.name), data, done.sha256 if data is not done.data else None
        )
        self.stats.media_files += 1
        log(logger, "media_verified", event_id=str(done.event_id), name=done.name, bytes=len(done.data))
        return done.event_id

    def expire(self) -> None:
        """Drop assemblies idle for longer than ``media.assembly_timeout_s``."""
        self.assembler.expire()
