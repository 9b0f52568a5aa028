"""Bystanders blurred: in the frames that are shown (context.jpg, violation.jpg) every face but the violator's.

The faces are found by the same YuNet detector as the violator's face, run at full resolution (a
bystander's face far from the camera is small) once per shown frame, off the frame path: on overlapping
tiles of at most ``tile_px`` square, so that the detector's buffers stay those of one tile (YuNet over a
whole 1080p frame held about 170 MB more for the rest of the run); the tiles overlap by a quarter of a
tile, more than a face at the capture band is tall, and a face seen in two tiles is kept once.
The violator's face is the one that overlaps the box the evidence names (the face box for the face's
frame, the judged head / top of the rider box for the deciding frame); every other face is blurred
beyond recognition (a strong Gaussian blur over the face box grown by a margin). A face YuNet does not
find (turned away, tiny, occluded) cannot be blurred: that limit is the detector's.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edge.evidence.face import FaceFinder

Box = tuple[float, float, float, float]


def _overlap(face: Box, region: Box) -> float:
    """Share of the face box's area inside ``region``."""
    ix = max(0.0, min(face[2], region[2]) - max(face[0], region[0]))
    iy = max(0.0, min(face[3], region[3]) - max(face[1], region[1]))
    area = max(1e-6, (face[2] - face[0]) * (face[3] - face[1]))
    return ix * iy / area


def blur_box(image: np.ndarray, box: Box, margin: float = 0.3) -> None:
    """Blur ``box`` (grown by ``margin`` of its size each side) in place, beyond recognition."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    a, b = max(0, int(x0 - mx)), max(0, int(y0 - my))
    c, d = min(w, int(np.ceil(x1 + mx))), min(h, int(np.ceil(y1 + my)))
    if c <= a or d <= b:
        return
    roi = image[b:d, a:c]
    # pixelate to ~6 cells across the face, then blur: no feature survives either step
    cells = max(1, min(6, roi.shape[1], roi.shape[0]))
    size = (cells, max(1, round(cells * roi.shape[0] / roi.shape[1])))
    small = cv2.resize(roi, size, interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(small, (roi.shape[1], roi.shape[0]), interpolation=cv2.INTER_NEAREST)
    k = max(3, (max(roi.shape[:2]) // 2) | 1)
    image[b:d, a:c] = cv2.GaussianBlur(coarse, (k, k), 0)


def _starts(length: int, tile: int) -> list[int]:
    """Offsets of tiles of ``tile`` px covering ``length`` px, overlapping by at least a quarter of a tile."""
    if length <= tile:
        return [0]
    step = tile - tile // 4
    n = -(-(length - tile) // step) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


class FaceBlur:
    """``blur_others(image, keep)``: a copy of ``image`` with every detected face blurred except the one in ``keep``."""

    def __init__(
        self,
        finder: FaceFinder,
        score_threshold: float = 0.5,
        min_keep_overlap: float = 0.3,
        tile_px: int = 640,
    ):
        self.finder = finder
        self.score_threshold = score_threshold
        self.min_keep_overlap = min_keep_overlap
        self.tile_px = tile_px
        self.last_blurred = 0  #: faces blurred in the last call (for logs and tests)

    def faces(self, image: np.ndarray) -> list[Box]:
        h, w = image.shape[:2]
        found: list[tuple[float, Box]] = []
        for y0 in _starts(h, self.tile_px):
            for x0 in _starts(w, self.tile_px):
                tile = image[y0 : y0 + self.tile_px, x0 : x0 + self.tile_px]
                for f in self.finder.detect(tile, min_face_px=6):
                    if f.score >= self.score_threshold:
                        b = f.box
                        found.append(
                            (
                                float(f.score),
                                (float(b[0]) + x0, float(b[1]) + y0, float(b[2]) + x0, float(b[3]) + y0),
                            )
                        )
        kept: list[Box] = []
        for _, box in sorted(found, key=lambda sb: -sb[0]):
            # the same face from a neighbouring tile (whole there, or cut by this tile's edge): once
            if not any(_overlap(box, k) >= 0.5 or _overlap(k, box) >= 0.5 for k in kept):
                kept.append(box)
        return kept

    def kept_index(self, faces: Sequence[Box], keep: Box | None) -> int | None:
        if keep is None or not faces:
            return None
        scores = [_overlap(f, keep) for f in faces]
        i = int(np.argmax(scores))
        return i if scores[i] >= self.min_keep_overlap else None

    def blur_others(self, image: np.ndarray, keep: Box | None, also_keep: Sequence[Box] = ()) -> np.ndarray:
        """``also_keep``: the heads of the violator's fellow occupants (a passenger event shows them all)."""
        faces = self.faces(image)
        kept = {self.kept_index(faces, b) for b in (keep, *also_keep)}
        out = image.copy()
        n = 0
        for i, f in enumerate(faces):
            if i not in kept:
                blur_box(out, f)
                n += 1
        self.last_blurred = n
        return out
