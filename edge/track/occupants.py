"""The people on one two-wheeler: which heads belong to which rider box.

A rider box (the detector's ``rider`` class: person + vehicle) holds its occupants' heads in its upper
part: a head belongs to a box when its centre is horizontally inside the box, ``top_from``..``top_to``
of the box height below its top edge, and its size fits the box. Of those, the box's best head (high
in the box, near its horizontal centre) and every head within ``max_spacing`` head widths of it
(centre to centre) are the box's occupants.

A head may be an occupant of more than one box: labellers and the detector trained on their labels
often draw one rider box per *person*, two overlapping boxes for a rider and a pillion (helmet9-dev:
most of its two-head boxes have a twin), and on frontal cameras the boxes made from heads
(``detect.riders_from_heads``) are one per head. Each such box sees both people; the rule set then
reports one person once (``edge.rules.SameOccupantGuard``).

Spacing: people on one seat sit one behind the other, their heads touching in the image (helmet9's
labelled pairs: median 0.95, 90 % within 1.46, 95 % within 1.83 head widths); riders on two vehicles
side by side are further apart. 1.6 keeps 9 in 10 labelled pairs of the data this was read from.
Heads overlapping by ``max_overlap`` IoU or more, or with centres closer than 0.4 of a head's width
and height, are one head found twice (the detector's box, a heatmap head and a face proposal around it: detection's NMS
keeps boxes up to 0.5 IoU apart, and a face box inside a head box overlaps little), not two people:
no labelled pair of helmet9 overlaps 0.4 IoU (99th percentile 0.36), 4.7 % sit that close. Size: a head of ``min_head_frac``..``max_head_frac`` of the rider box's height (helmet9's labelled
heads are 0.16-0.39 of their rider box, 1st-99th percentile).

A box cut below a person's head (a detector box round the legs and the vehicle, or one made from a hand
taken for a head) holds that person's hands and knees where heads should be: a head that sits on the
body of a head lying above the box's head band within its width (:func:`on_body_of`: 1.5 to
``body_heads`` head heights below it, at most two head widths aside) and is no larger than it is not
an occupant of the box. A rider in front of another is nearer to the camera, so its head is larger:
it keeps its head (helmet9, crowded queues seen from behind: allowing up to 1.5 times, the rule the
head-only tracks use, took the head of 77 more one-person boxes; up to 1.0, 5).

Measured in ``benchmarks/passenger.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]


def box_text(box: Box | None) -> str | None:
    """``"x0,y0,x1,y1"`` (one decimal), the form boxes take in an event's scalar ``detail``."""
    return None if box is None else ",".join(f"{v:.1f}" for v in box)


def parse_boxes(text: object) -> tuple[Box, ...]:
    """Boxes from an event detail value ``"x0,y0,x1,y1;x0,..."``; () when absent or malformed."""
    if not isinstance(text, str) or not text:
        return ()
    out: list[Box] = []
    for part in text.split(";"):
        try:
            v = tuple(float(x) for x in part.split(","))
        except ValueError:
            return ()
        if len(v) != 4:
            return ()
        out.append((v[0], v[1], v[2], v[3]))
    return tuple(out)


@dataclass(frozen=True)
class OccupantHead:
    """One head seen on a rider box in one frame."""

    box: Box
    score: float
    no_helmet: float | None  #: P(no helmet); None when nothing classified it

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    @property
    def size(self) -> float:
        """sqrt(area): the head's size in pixels (robust to a box cut a little narrow or short)."""
        return math.sqrt(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))


@dataclass(frozen=True)
class OccupantGeometry:
    """Where a rider box's occupants' heads may be (see the module docstring)."""

    top_from: float = -0.1
    top_to: float = 0.5
    min_head_frac: float = 0.08
    max_head_frac: float = 0.6
    max_spacing: float = 1.6
    max_overlap: float = 0.4
    body_heads: float = 6.0
    hang_below: float = 0.6


def rider_occupants(
    riders: np.ndarray,
    heads: np.ndarray,
    head_scores: np.ndarray,
    head_no_helmet: np.ndarray | None = None,
    geometry: OccupantGeometry | None = None,
) -> list[tuple[OccupantHead, ...]]:
    """For each rider box ``(N, 4)`` xyxy, its occupants' heads (from ``heads (M, 4)``), best head first."""
    g = geometry or OccupantGeometry()
    riders = np.asarray(riders, dtype=np.float64).reshape(-1, 4)
    heads = np.asarray(heads, dtype=np.float64).reshape(-1, 4)
    hs = np.asarray(head_scores, dtype=np.float64).reshape(-1)
    nh = (
        np.full(len(heads), np.nan)
        if head_no_helmet is None
        else np.asarray(head_no_helmet, dtype=np.float64).reshape(-1)
    )
    out: list[tuple[OccupantHead, ...]] = [() for _ in range(len(riders))]
    if not len(riders) or not len(heads):
        return out
    hc = np.c_[(heads[:, 0] + heads[:, 2]) / 2, (heads[:, 1] + heads[:, 3]) / 2]
    hh = heads[:, 3] - heads[:, 1]
    rh = np.maximum(riders[:, 3] - riders[:, 1], 1e-6)
    rw = np.maximum(riders[:, 2] - riders[:, 0], 1e-6)
    inside_x = (hc[None, :, 0] >= riders[:, None, 0]) & (hc[None, :, 0] <= riders[:, None, 2])
    rel_y = (hc[None, :, 1] - riders[:, None, 1]) / rh[:, None]
    frac = hh[None, :] / rh[:, None]
    fits = (
        inside_x
        & (rel_y >= g.top_from)
        & (rel_y <= g.top_to)
        & (frac >= g.min_head_frac)
        & (frac <= g.max_head_frac)
    )
    if g.body_heads > 0:
        # a box cut below a person's head (round the legs and the vehicle) holds that person's hands and
        # knees where heads should be: a head on the body of a head that lies above the box's head band
        # (within its width) is not an occupant of that box
        on_body = on_body_of(heads, g.body_heads, 1.0)
        above = inside_x & (rel_y < g.top_from)
        fits &= ~(on_body[None, :, :] & above[:, None, :]).any(axis=2)
    if g.hang_below > 0:
        fits &= ~hangs_below(heads, g.hang_below)[None, :]
    cx = (riders[:, 0] + riders[:, 2]) / 2
    cost = np.abs(rel_y) + np.abs(hc[None, :, 0] - cx[:, None]) / rw[:, None] - 0.1 * hs[None, :]
    for r in range(len(riders)):
        idx = np.nonzero(fits[r])[0]
        if not len(idx):
            continue
        idx = idx[np.argsort(cost[r, idx])]
        best = idx[0]
        width = max(heads[best, 2] - heads[best, 0], 1e-6)
        keep: list[int] = []
        for k in idx:
            w = max(width, heads[k, 2] - heads[k, 0])
            if keep and np.hypot(*(hc[k] - hc[best])) > g.max_spacing * w:
                continue  # too far from the box's best head to share its seat
            if any(_iou(heads[k], heads[j]) >= g.max_overlap or _same_spot(heads[k], heads[j]) for j in keep):
                continue  # the same head found twice (detector + heatmap / face proposal), not two people
            keep.append(int(k))
        out[r] = tuple(
            OccupantHead(
                tuple(float(v) for v in heads[k]),  # type: ignore[arg-type]
                float(hs[k]),
                None if not np.isfinite(nh[k]) else float(nh[k]),
            )
            for k in keep
        )
    return out


def on_body_of(heads: np.ndarray, body_heads: float = 6.0, max_size: float = 1.5) -> np.ndarray:
    """``(M, M)`` bool: ``[k, j]`` when head ``k`` sits where head ``j``'s own body is: from 1.5 head
    heights below a head of about the same size (0.6..1.5 times its height) down to its feet
    (``body_heads``, track.head_to_body), at most two head widths to its side (hands on the handlebar,
    which is about three head widths wide, knees, shoes: what a head detector also fires on in a
    frontal view). Two riders cannot stand on each other: a rider seen below another at the same
    distance is beside or in front, and one in front is nearer, so its head is larger."""
    n = len(heads)
    if n < 2:
        return np.zeros((n, n), dtype=bool)
    cx = (heads[:, 0] + heads[:, 2]) / 2
    cy = (heads[:, 1] + heads[:, 3]) / 2
    w = np.maximum(heads[:, 2] - heads[:, 0], 1e-6)
    h = np.maximum(heads[:, 3] - heads[:, 1], 1e-6)
    dy = (cy[:, None] - cy[None, :]) / h[None, :]  # in the upper head's heights
    size = h[:, None] / h[None, :]
    on: np.ndarray = (
        (dy >= 1.5)
        & (dy <= body_heads)
        & (np.abs(cx[:, None] - cx[None, :]) <= 2.0 * w[None, :])
        & (size >= 0.6)
        & (size <= max_size)
    )
    return on


def hangs_below(heads: np.ndarray, min_dy: float = 0.6) -> np.ndarray:
    """``(M,)`` bool: a head box that overlaps a larger head box and whose centre lies ``min_dy`` or more of
    that box's height below the larger one's centre: the same person's hair, ponytail, neck or collar
    boxed a second time, not a second person. Two people's heads on one seat are at about the same
    height: of helmet9's 348 labelled pairs on one rider box 178 overlap, 2 of them this way; of
    thaigate's 23 labelled rider + pillion pairs none (the smaller head's centre at most 0.48 below)."""
    n = len(heads)
    if n < 2:
        return np.zeros(n, dtype=bool)
    h = np.maximum(heads[:, 3] - heads[:, 1], 1e-6)
    cy = (heads[:, 1] + heads[:, 3]) / 2
    ix = np.minimum(heads[:, None, 2], heads[None, :, 2]) - np.maximum(heads[:, None, 0], heads[None, :, 0])
    iy = np.minimum(heads[:, None, 3], heads[None, :, 3]) - np.maximum(heads[:, None, 1], heads[None, :, 1])
    hang = (
        (ix > 0) & (iy > 0) & (h[:, None] < h[None, :]) & ((cy[:, None] - cy[None, :]) >= min_dy * h[None, :])
    )
    return np.asarray(hang.any(axis=1), dtype=bool)


def below_another_head(heads: np.ndarray, body_heads: float = 6.0) -> np.ndarray:
    """Heads that sit on another head's body (:func:`on_body_of`): such a head makes no rider of its own."""
    return np.asarray(on_body_of(heads, body_heads).any(axis=1), dtype=bool)


def _same_spot(a: np.ndarray, b: np.ndarray, frac: float = 0.4) -> bool:
    """Centres closer than ``frac`` of the larger box's width and of its height: one head boxed twice
    (hair and face, a face proposal inside a head box). Two people's heads that close are rare:
    4.7 % of helmet9's labelled pairs (from behind, one head partly hidden by the other)."""
    w = max(a[2] - a[0], b[2] - b[0], 1e-6)
    h = max(a[3] - a[1], b[3] - b[1], 1e-6)
    return (
        abs((a[0] + a[2]) - (b[0] + b[2])) / 2 < frac * w
        and abs((a[1] + a[3]) - (b[1] + b[3])) / 2 < frac * h
    )


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def order_by_travel(heads: tuple[OccupantHead, ...], direction: tuple[float, float] | None) -> list[int]:
    """Indices of ``heads`` from the front of the vehicle to the back: the driver sits in front.

    When the vehicle crosses the image (``direction`` (dx, dy) mostly sideways, the usual elevated
    roadside view), front and back lie along the direction of travel: the driver's head comes first
    along it. When it comes towards the camera or goes away (mostly down or up the image), front and
    back lie in depth and the image position says little (a passenger's head may sit higher or lower
    than the driver's); the nearer head is the larger one, so coming towards the camera the driver's
    is the largest, going away the smallest. Without a direction (standing, a single frame) the head
    that fits the rider box best (the first) is taken for the driver's."""
    if direction is None or len(heads) < 2 or (direction[0] == 0 and direction[1] == 0):
        return list(range(len(heads)))
    if abs(direction[0]) <= abs(direction[1]):
        towards = direction[1] > 0  # down the image: nearer to an elevated camera
        return sorted(range(len(heads)), key=lambda i: -heads[i].size if towards else heads[i].size)
    dx, dy = direction
    return sorted(range(len(heads)), key=lambda i: -(heads[i].centre[0] * dx + heads[i].centre[1] * dy))
