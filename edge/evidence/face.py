"""Face capture for violating riders: faces are looked for only in head / upper-body crops of
tracked riders (cost follows riders), and the best one per track is kept by size, sharpness
(variance of the Laplacian) and frontalness (symmetry of the 5 landmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import cv2
import numpy as np

from edge.track import Track

Box = tuple[float, float, float, float]

SHARPNESS_PX = 64  #: faces are compared for sharpness at this size


class FoundFace(Protocol):
    """A face as ``edge.detect.faces.Face`` gives it, in the coordinates of the image searched."""

    @property
    def box(self) -> np.ndarray: ...  # (4,) xyxy

    @property
    def landmarks(
        self,
    ) -> np.ndarray: ...  # (5, 2): right eye, left eye, nose tip, right and left mouth corner

    @property
    def score(self) -> float: ...


class FaceFinder(Protocol):
    """What face capture needs of ``edge.detect.faces.FaceDetector``."""

    def detect(self, image_bgr: np.ndarray, min_face_px: int | None = None) -> Sequence[FoundFace]: ...


@dataclass(frozen=True)
class FaceQuality:
    size_px: int
    sharpness: float  #: variance of the Laplacian of the grey face crop
    frontalness: float  #: 1 = landmarks symmetric (looking at the camera), 0 = profile
    score: float  #: combined, 0..1

    @staticmethod
    def measure(
        face_crop: np.ndarray, size_px: int, landmarks: np.ndarray | None, ref_size_px: float = 48.0
    ) -> FaceQuality:
        grey = cv2.cvtColor(face_crop, cv2.COLOR_BGR2GRAY) if face_crop.ndim == 3 else face_crop
        # measured at one normalised size: the Laplacian's variance depends on scale, and a tiny
        # face blown up to that size is (rightly) soft
        sharp = (
            float(
                cv2.Laplacian(
                    cv2.resize(
                        grey,
                        (SHARPNESS_PX, SHARPNESS_PX),
                        interpolation=cv2.INTER_AREA if min(grey.shape) > SHARPNESS_PX else cv2.INTER_LINEAR,
                    ),
                    cv2.CV_64F,
                ).var()
            )
            if grey.size
            else 0.0
        )
        front = frontalness(landmarks) if landmarks is not None else 0.5
        size_s = min(1.0, size_px / ref_size_px)
        sharp_s = sharp / (sharp + 200.0)
        score = 0.35 * size_s + 0.35 * sharp_s + 0.30 * front
        return FaceQuality(size_px, sharp, front, float(min(1.0, max(0.0, score))))


def frontalness(landmarks: np.ndarray) -> float:
    """1 when the nose sits midway between the eyes and between the mouth corners, towards 0 in profile."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if len(lm) < 5:
        return 0.5
    reye, leye, nose, rmouth, lmouth = lm[:5]
    eye_d = float(np.linalg.norm(leye - reye))
    if eye_d < 1e-6:
        return 0.0
    eye_mid = (reye + leye) / 2
    mouth_mid = (rmouth + lmouth) / 2
    off_eyes = abs(float(nose[0] - eye_mid[0])) / eye_d
    off_mouth = abs(float(nose[0] - mouth_mid[0])) / eye_d
    return float(max(0.0, 1.0 - (off_eyes + off_mouth)))


@dataclass
class FaceCandidate:
    """The best face seen so far for one track."""

    track_id: int
    t_s: float
    utc: datetime
    box: Box  #: full-frame pixels
    score: float
    quality: FaceQuality
    crop: np.ndarray  #: the face with a margin (BGR)
    landmarks: np.ndarray | None  #: full-frame pixels
    frame: np.ndarray | None  #: the context frame (copy) when kept


@dataclass
class _TrackFaces:
    crops_tried: int = 0
    faces_seen: int = 0
    too_small: int = 0
    best: FaceCandidate | None = None
    moving_away: int = 0
    approaching: int = 0
    others_faces: int = 0  #: faces found in the search region but off this track's head


#: how far (in head sizes, each side) a face's centre may lie off the track's head box and still be its face
OWN_FACE_GROW = 0.5
#: the same for one occupant of a vehicle with several: tighter, the next head is close
OCCUPANT_FACE_GROW = 0.3


def search_region(track: Track, width: int, height: int, head: Box | None = None) -> Box | None:
    """Where to look for the face of a track: around ``head`` (one occupant's head when the vehicle
    carries more than one person) or its head box, else the top of its rider box."""
    last = track.last
    head = head if head is not None else last.head_box
    if head is not None:
        # generous around the head box, more above it: detectors place small heads off (hair, chin, collar)
        x0, y0, x1, y1 = head
        w, h = x1 - x0, y1 - y0
        s = max(w, h)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        r = (
            max(-0.5, cx - 1.5 * s),
            max(-0.5, cy - 2.5 * s),
            min(width, cx + 1.5 * s),
            min(height, cy + 1.5 * s),
        )
    else:
        x0, y0, x1, y1 = last.box
        bw, bh = x1 - x0, y1 - y0
        r = (
            max(0, x0 - 0.1 * bw),
            max(0, y0 - 0.05 * bh),
            min(width, x1 + 0.1 * bw),
            min(height, y0 + 0.4 * bh),
        )
    r = (max(0.0, r[0]), max(0.0, r[1]), r[2], r[3])
    if r[2] - r[0] < 4 or r[3] - r[1] < 4:
        return None
    return r


class FaceCapture:
    """Keeps the best face per track. Call :meth:`offer` for tracks worth a face (in the zone or
    violating) on detection frames; :meth:`result` when the evidence is assembled."""

    def __init__(
        self,
        finder: FaceFinder,
        min_face_px: int = 16,
        score_threshold: float = 0.6,
        min_search_px: int = 48,
    ):
        self.finder = finder
        self.min_face_px = min_face_px
        self.score_threshold = score_threshold
        self.min_search_px = min_search_px
        #: per track (the rider, or the driver of a vehicle with more people) and per (track, "passenger")
        self._tracks: dict[int | tuple[int, str], _TrackFaces] = {}
        self.crops_run = 0

    def offer(
        self,
        track: Track,
        image: np.ndarray,
        t_s: float,
        utc: datetime,
        heading_away: bool | None = None,
        head: Box | None = None,
        slot: str = "",
        heads_seen: np.ndarray | None = None,
    ) -> FaceCandidate | None:
        """Look for the track's face in this frame; returns the new best candidate if this frame gave one.
        ``head`` and ``slot``: the face of one occupant of a vehicle with several (``slot="passenger"``
        keeps the passenger's best face apart from the driver's). ``heads_seen``: every head box detected
        in this frame, ``(M, 4)``; a face nearer another person's head than this track's is not its face."""
        if track.track_id is None:
            return None
        key: int | tuple[int, str] = (track.track_id, slot) if slot else track.track_id
        st = self._tracks.setdefault(key, _TrackFaces())
        if heading_away is True:
            st.moving_away += 1
        elif heading_away is False:
            st.approaching += 1
        h, w = image.shape[:2]
        region = search_region(track, w, h, head)
        if region is None:
            return None
        x0, y0, x1, y1 = (int(round(v)) for v in region)
        crop = image[y0:y1, x0:x1]
        if crop.size == 0:
            return None
        # small crops are upscaled: face detectors miss faces below ~20 px
        side = max(crop.shape[:2])
        scale = max(1.0, self.min_search_px / side) if side > 0 else 1.0
        if scale > 1.0:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        st.crops_tried += 1
        self.crops_run += 1
        faces = [f for f in self.finder.detect(crop, min_face_px=4) if f.score >= self.score_threshold]
        if not faces:
            return None
        st.faces_seen += 1
        best_here: FaceCandidate | None = None
        # The search region is generous (a small head's box may sit on the hair or the collar), so it can hold
        # another person's face: a fellow occupant's, or a rider's just behind or beside this one (the reversed
        # demo clip: the helmeted woman's face, 1.3 heads above teal-jacket's head, won the wrong_way event).
        # A face is this track's only when its centre lies on the track's own head box, grown a little.
        own = head if head is not None else track.last.head_box
        grow = OCCUPANT_FACE_GROW if head is not None else OWN_FACE_GROW
        for f in faces:
            fx0, fy0, fx1, fy1 = (float(v) / scale for v in f.box)
            box = (fx0 + x0, fy0 + y0, fx1 + x0, fy1 + y0)
            if own is not None and (
                not _centre_near(box, own, grow) or _nearer_other_head(box, own, heads_seen)
            ):
                st.others_faces += 1
                continue
            size = int(round(max(box[2] - box[0], box[3] - box[1])))
            if size < self.min_face_px:
                st.too_small += 1
                continue
            lm = (
                None
                if f.landmarks is None
                else np.asarray(f.landmarks, dtype=np.float64).reshape(-1, 2) / scale + np.array([x0, y0])
            )
            face_crop = crop_face(image, box)
            q = FaceQuality.measure(face_crop, size, lm)
            cand = FaceCandidate(track.track_id, t_s, utc, box, float(f.score), q, face_crop, lm, None)
            if best_here is None or cand.quality.score > best_here.quality.score:
                best_here = cand
        if best_here is None:
            return None
        if st.best is None or best_here.quality.score > st.best.quality.score:
            best_here.frame = (
                image.copy()
            )  # the embedding aligns on the full frame; saving it is the assembler's choice
            st.best = best_here
            return best_here
        return None

    def best(self, track_id: int, slot: str = "") -> FaceCandidate | None:
        st = self._tracks.get((track_id, slot) if slot else track_id)
        return st.best if st else None

    def no_face_reason(self, track_id: int, slot: str = "") -> str:
        """Why the track (or its ``slot`` occupant) has no usable face, in words for the event."""
        st = self._tracks.get((track_id, slot) if slot else track_id)
        if st is None or st.crops_tried == 0:
            return "rider never in view long enough for a face search"
        if st.too_small and st.faces_seen:
            return f"face too small (under {self.min_face_px} px)"
        if st.others_faces and st.faces_seen:
            return "the faces found near the rider were other people's (off the rider's head)"
        if st.moving_away > st.approaching:
            return "rider seen from behind"
        return f"no face detected in {st.crops_tried} head crops (face turned away or covered)"

    def forget(self, track_ids: Sequence[int]) -> None:
        for tid in track_ids:
            self._tracks.pop(tid, None)
            self._tracks.pop((tid, "passenger"), None)

    def tracked(self) -> list[int]:
        return [k for k in self._tracks if isinstance(k, int)]


def _centre_near(box: Box, head: Box, grow: float) -> bool:
    """Is ``box``'s centre inside ``head`` grown by ``grow`` of its size on every side?"""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    w, h = head[2] - head[0], head[3] - head[1]
    return head[0] - grow * w <= cx <= head[2] + grow * w and head[1] - grow * h <= cy <= head[3] + grow * h


def _head_distance(cx: float, cy: float, head: np.ndarray) -> float:
    """Distance of a point from a head box's centre, in that head's sizes."""
    x0, y0, x1, y1 = (float(v) for v in head[:4])
    return float(np.hypot(cx - (x0 + x1) / 2, cy - (y0 + y1) / 2) / max(x1 - x0, y1 - y0, 1.0))


def _nearer_other_head(box: Box, own: Box, heads_seen: np.ndarray | None) -> bool:
    """Does another person's head of this frame hold ``box``'s centre nearer than ``own`` does, in head
    sizes? Then the face is that person's: a rider just behind or beside this one. A box whose centre lies
    on ``own`` (or that holds ``own``'s centre) is a second box of the same head (the detector and the
    heatmap box a head twice at times, one on the hair, one loosely beside it), not another person."""
    if heads_seen is None or len(heads_seen) == 0:
        return False
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    o = np.asarray(own, np.float32)
    hs = np.asarray(heads_seen, np.float32).reshape(-1, 4)
    hx, hy = (hs[:, 0] + hs[:, 2]) / 2, (hs[:, 1] + hs[:, 3]) / 2
    ox, oy = (o[0] + o[2]) / 2, (o[1] + o[3]) / 2
    on_own = (o[0] <= hx) & (hx <= o[2]) & (o[1] <= hy) & (hy <= o[3])
    holds_own = (hs[:, 0] <= ox) & (ox <= hs[:, 2]) & (hs[:, 1] <= oy) & (oy <= hs[:, 3])
    mine = _head_distance(cx, cy, o)
    return any(_head_distance(cx, cy, h) < mine for h in hs[~on_own & ~holds_own])


def crop_face(image: np.ndarray, box: Box, margin: float = 0.25) -> np.ndarray:
    """The face box with ``margin`` of its size around it, clipped to the image (a copy)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    mw, mh = (x1 - x0) * margin, (y1 - y0) * margin
    a = (
        int(max(0, np.floor(x0 - mw))),
        int(max(0, np.floor(y0 - mh))),
        int(min(w, np.ceil(x1 + mw))),
        int(min(h, np.ceil(y1 + mh))),
    )
    return image[a[1] : a[3], a[0] : a[2]].copy()
