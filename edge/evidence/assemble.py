"""Builds the :class:`ViolationEvent` of a violation from its evidence (face, violation frame, clip) and writes the files."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from anqi_contract.event import FaceInfo, MediaRef, ViolationEvent
from anqi_contract.logs import log
from anqi_contract.sealed import Sealer, parse_public_key
from edge.config.device import DeviceConfig
from edge.config.privacy import SealConfig
from edge.evidence.face import FaceCandidate
from edge.evidence.files import encode_jpeg, media_ref, write_media
from edge.evidence.snapshot import ViolationFrame
from edge.rules import Violation

logger = logging.getLogger("edge.evidence")


class FaceEmbedding(Protocol):
    """What the event needs of ``edge.detect.faces.FaceEmbedder`` (adapted in :mod:`edge.evidence.adapters`)."""

    model_name: str

    def embed(
        self, frame: np.ndarray, box: tuple[float, float, float, float], landmarks: np.ndarray | None
    ) -> np.ndarray: ...


class ClipLike(Protocol):
    """What the event needs of ``edge.buffer.Clip``."""

    path: Path
    start_utc: datetime
    end_utc: datetime
    complete: bool
    note: str


@dataclass
class Evidence:
    """Everything gathered for one violation, ready for ``Outbox.add(event, media)``."""

    event: ViolationEvent
    media: dict[str, Path] = field(default_factory=dict)


class BystanderBlur(Protocol):
    """Blurs every face in a frame but the violator's (:class:`edge.evidence.privacy.FaceBlur`)."""

    def blur_others(
        self,
        image: np.ndarray,
        keep: tuple[float, float, float, float] | None,
        also_keep: Sequence[tuple[float, float, float, float]] = (),
    ) -> np.ndarray: ...


class EventAssembler:
    """Turns a violation plus its face and clip into an event and its files under ``work_dir/<event_id>/``.

    With ``seal`` (``privacy.seal`` with a public key) every file and the embedding are sealed to central's key
    before they are written (:mod:`anqi_contract.sealed`); with ``blur`` the frames that are shown (context.jpg,
    violation.jpg) have every face but the violator's blurred."""

    def __init__(
        self,
        device: DeviceConfig,
        work_dir: Path,
        embedder: FaceEmbedding | None = None,
        save_context: bool = True,
        seal: SealConfig | None = None,
        blur: BystanderBlur | None = None,
    ):
        self.device = device
        self.work_dir = work_dir
        self.embedder = embedder
        self.save_context = save_context
        self.seal = seal if seal is not None and seal.enabled else None
        self.blur = blur
        self._sealers: dict[str, Sealer] = {}

    def sealer(self) -> Sealer | None:
        """The sealer for now (the next key once ``privacy.seal.next_from`` has passed)."""
        if self.seal is None:
            return None
        kid, pk = self.seal.current()  # type: ignore[misc]
        if kid not in self._sealers:
            self._sealers[kid] = Sealer(kid, parse_public_key(pk))
        return self._sealers[kid]

    def _blurred(
        self,
        image: np.ndarray,
        keep: tuple[float, float, float, float] | None,
        also_keep: Sequence[tuple[float, float, float, float]] = (),
    ) -> np.ndarray:
        if self.blur is None:
            return image
        return (
            self.blur.blur_others(image, keep, also_keep) if also_keep else self.blur.blur_others(image, keep)
        )

    def assemble(
        self,
        violation: Violation,
        first_seen: datetime | None,
        face: FaceCandidate | None,
        no_face_reason: str | None,
        clip: ClipLike | None,
        clip_problem: str | None = None,
        extra: dict[str, float | int | str | bool] | None = None,
        event_id: uuid.UUID | None = None,
        violation_frame: ViolationFrame | None = None,
        other_faces: dict[str, FaceCandidate] | None = None,
        prewritten: Sequence[tuple[Path, MediaRef]] = (),
    ) -> Evidence:
        """Write the files under ``work_dir/<event_id>/`` and build the event (same id on a retry).

        Media, in this order: ``face.jpg`` (face), ``context.jpg`` (the face's frame, context), the faces of
        the vehicle's other occupants (``other_faces``: ``face_passenger.jpg`` / ``face_driver.jpg``, face),
        ``violation.jpg`` (the deciding frame with the violator marked, context; or ``prewritten``, the files
        written when the rule decided), the clip."""
        event_id = event_id or uuid.uuid4()
        folder = self.work_dir / str(event_id)
        folder.mkdir(parents=True, exist_ok=True)
        media: dict[str, Path] = {}
        refs: list[MediaRef] = []
        sealer = self.sealer()
        detail: dict[str, float | int | str | bool] = {**violation.detail, **(extra or {})}
        face_info = FaceInfo(found=False, reason=no_face_reason or "no face captured")
        if face is not None:
            embedding: list[float] | None = None
            embedding_sealed: str | None = None
            model: str | None = None
            if self.embedder is not None and face.frame is not None:
                try:
                    vec = np.asarray(
                        self.embedder.embed(face.frame, face.box, face.landmarks), dtype=np.float64
                    ).ravel()
                    n = float(np.linalg.norm(vec))
                    if n > 0 and np.isfinite(vec).all():
                        model = self.embedder.model_name
                        if sealer is not None:
                            embedding_sealed = sealer.seal_embedding(vec / n)
                        else:
                            embedding = [float(v) for v in vec / n]
                except Exception as e:  # an embedding failure must not lose the face photo
                    log(
                        logger,
                        "face_embedding_failed",
                        logging.WARNING,
                        track=violation.track_id,
                        error=str(e),
                    )
                    detail["embedding_error"] = type(e).__name__
            face_info = FaceInfo(
                found=True,
                quality=round(face.quality.score, 4),
                size_px=face.quality.size_px,
                embedding_model=model,
                embedding=embedding,
                embedding_sealed=embedding_sealed,
            )
            p, ref = write_media(folder / "face.jpg", encode_jpeg(face.crop, 92, "face.jpg"), "face", sealer)
            media["face.jpg"] = p
            refs.append(ref)
            detail["face_sharpness"] = round(face.quality.sharpness, 1)
            detail["face_frontalness"] = round(face.quality.frontalness, 3)
            detail["face_score"] = round(face.score, 3)
            detail["face_box"] = ",".join(f"{v:.1f}" for v in face.box)  # where, in its frame ...
            detail["face_t_s"] = round(face.t_s, 3)  # ... and when (stream seconds): whose face it is
            if self.save_context and face.frame is not None:
                shown = self._blurred(face.frame, face.box)
                p, ref = write_media(
                    folder / "context.jpg", encode_jpeg(shown, 88, "context.jpg"), "context", sealer
                )
                media["context.jpg"] = p
                refs.append(ref)
        for name, other in sorted((other_faces or {}).items()):
            # the other people on the vehicle: a passenger event shows who was carried, a passenger's
            # no-helmet event who carried them (the event's own face and embedding stay the violator's)
            p, ref = write_media(folder / name, encode_jpeg(other.crop, 92, name), "face", sealer)
            media[name] = p
            refs.append(ref)
        if violation_frame is not None:
            try:
                keep = _face_around(violation_frame.head_box) or _head_of(violation_frame.box)
                shown = self._blurred(violation_frame.image, keep, violation_frame.occupants)
                marked = violation_frame.render(shown)
                preview = _preview(violation_frame, shown, keep)
            except Exception as e:  # a frame that cannot be drawn on must not hold the event back
                log(
                    logger,
                    "violation_frame_failed",
                    logging.WARNING,
                    track=violation.track_id,
                    error=f"{type(e).__name__}: {e}"[:200],
                )
                detail["violation_frame_error"] = type(e).__name__
            else:
                # OSError (disk full): the caller retries
                p, ref = write_media(
                    folder / "violation.jpg", encode_jpeg(marked, 88, "violation.jpg"), "context", sealer
                )
                media["violation.jpg"] = p
                refs.append(ref)
                p, ref = write_media(folder / PREVIEW, encode_jpeg(preview, 80, PREVIEW), "context", sealer)
                media[PREVIEW] = p
                refs.append(ref)
        for p, ref in prewritten:  # written at decision time (violation.jpg): already in the folder
            media[ref.name] = p
            refs.append(ref)
        clip_start = clip_end = None
        if clip is not None:
            name = "clip" + clip.path.suffix.lower()
            if sealer is not None:
                # the clip was encoded in RAM (privacy.seal.clip_scratch_dir): sealed here, the clear file removed
                p, ref = write_media(folder / name, clip.path.read_bytes(), "clip", sealer)
                if clip.path.resolve() != p.resolve():
                    clip.path.unlink(missing_ok=True)
                media[name] = p
                refs.append(ref)
            else:
                media[name] = clip.path
                refs.append(media_ref(clip.path, "clip", name))
            clip_start, clip_end = clip.start_utc, clip.end_utc
            if not clip.complete:
                detail["clip_note"] = clip.note or "incomplete"
        elif clip_problem:
            detail["clip_note"] = clip_problem[:200]
        event = ViolationEvent(
            event_id=event_id,
            device_id=self.device.device_id,
            site_id=self.device.site_id,
            point_id=self.device.point_id,
            violation_type=violation.type,
            time=violation.utc,
            first_seen=first_seen,
            track_id=violation.track_id,
            confidence=float(min(1.0, max(0.0, violation.confidence))),
            zone_distance_m=None
            if violation.zone_distance_m is None
            else round(float(violation.zone_distance_m), 2),
            speed_mps=None if violation.speed_mps is None else round(float(violation.speed_mps), 2),
            heading_deg=None if violation.heading_deg is None else round(float(violation.heading_deg), 1),
            face=face_info,
            clip_start=clip_start,
            clip_end=clip_end,
            media=refs,
            detail=detail,
        )
        return Evidence(event, media)


def _face_around(
    head: tuple[float, float, float, float] | None,
) -> tuple[float, float, float, float] | None:
    """Where the violator's face can be around the judged head box: the box a detector draws on a head
    may sit on the hair or the face (up to a head height apart), so the region reaches one head height
    below it and a quarter width aside; the face found there is the violator's and is not blurred."""
    if head is None:
        return None
    x0, y0, x1, y1 = head
    w, h = x1 - x0, y1 - y0
    return (x0 - 0.25 * w, y0, x1 + 0.25 * w, y1 + h)


#: the deciding frame for screens seen by many (the cockpit on the police big screen): every face blurred
PREVIEW = "preview.jpg"
PREVIEW_MAX_W = 640


def _preview(
    vf: ViolationFrame, shown: np.ndarray, keep: tuple[float, float, float, float] | None
) -> np.ndarray:
    """``shown`` (bystanders blurred as configured) with the violator's face region and the other occupants' blurred
    too: by where the judged heads are, not by a face detector that may miss a face; marked like violation.jpg,
    at most PREVIEW_MAX_W wide."""
    import cv2

    from edge.evidence.privacy import blur_box

    out = shown.copy()
    for region in (keep, *(_face_around(o) for o in vf.occupants)):
        if region is not None:
            blur_box(out, region, margin=0.1)
    out = vf.render(out)
    h, w = out.shape[:2]
    if w > PREVIEW_MAX_W:
        out = cv2.resize(
            out, (PREVIEW_MAX_W, max(1, round(h * PREVIEW_MAX_W / w))), interpolation=cv2.INTER_AREA
        )
    return out


def _head_of(box: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
    """Without a judged head: the top third of the rider's box is where the violator's face can be."""
    if box is None:
        return None
    x0, y0, x1, y1 = box
    return (x0, y0, x1, y0 + (y1 - y0) / 3.0)
