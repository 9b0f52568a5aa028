"""ByteTrack-style multi-object tracking of riders (own implementation on scipy's Hungarian solver).

Two-pass association per frame (high-confidence detections against every live track, then
low-confidence detections against the tracks still unmatched that were seen last frame),
constant-velocity box prediction in seconds (detection may run at an uneven rate), stable ids
given when a track is confirmed (``min_hits``), and closing after ``max_lost_s`` unseen.

Heads are attached to rider boxes (head centre inside the upper half of the rider box, the upper
part preferred). A head with no rider box around it becomes a detection of its own with a body
box extrapolated below it (``head_to_body`` head heights): on frontal cameras the body of a rider is
often hidden by the bike and the detector only finds the head.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from edge.config.track import TrackConfig
from edge.track.occupants import OccupantHead, below_another_head, hangs_below, rider_occupants
from edge.zone import CaptureZone, GroundMotion, fit_motion, theil_sen

TrackKind = Literal["rider", "head"]


class DetectionsLike(Protocol):
    """What the tracker reads of ``edge.detect.FrameDetections``."""

    riders: np.ndarray
    rider_scores: np.ndarray
    heads: np.ndarray
    head_scores: np.ndarray
    head_no_helmet: np.ndarray


def _box4(v: Iterable[float]) -> tuple[float, float, float, float]:
    """An ``xyxy`` box (array or sequence) as four Python floats."""
    x0, y0, x1, y1 = (float(c) for c in v)
    return x0, y0, x1, y1


@dataclass(frozen=True)
class TrackPoint:
    """One matched observation of a track."""

    t_s: float  #: source timeline (stream seconds): the clock of all motion and rule timing
    utc: datetime
    box: tuple[float, float, float, float]
    score: float
    kind: TrackKind
    ground: tuple[float, float] | None = None
    distance_m: float | None = None
    in_zone: bool = False
    head_box: tuple[float, float, float, float] | None = None
    head_score: float | None = None
    no_helmet: float | None = None  #: probability that the head wears no helmet (a helmet vote)
    mono: float | None = None  #: time.monotonic() when the frame was captured (latency accounting)
    occupants: tuple[
        OccupantHead, ...
    ] = ()  #: every head on this vehicle in this frame (edge.track.occupants)


@dataclass
class RiderDetection:
    box: np.ndarray
    score: float
    kind: TrackKind
    head_box: np.ndarray | None = None
    head_score: float | None = None
    no_helmet: float | None = None
    look: np.ndarray | None = None  #: colour histogram of the clothes (see :func:`clothes_histogram`)
    occupants: tuple[OccupantHead, ...] = ()


def clothes_box(d: RiderDetection) -> tuple[float, float, float, float]:
    """Where a rider's clothes are: the chest below the head (one to three head heights under its
    top, two head widths wide), else the middle of the rider box. Clothes, unlike a face, look the
    same from any side and at any distance, and riders who pass each other seldom wear the same."""
    if d.head_box is not None:
        x0, y0, x1, y1 = (float(v) for v in d.head_box)
        w, h = x1 - x0, y1 - y0
        cx = (x0 + x1) / 2
        return cx - w, y1 + 0.3 * h, cx + w, y1 + 2.3 * h
    x0, y0, x1, y1 = (float(v) for v in d.box)
    h = y1 - y0
    return x0, y0 + 0.25 * h, x1, y0 + 0.6 * h


def clothes_histogram(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """Normalised hue x saturation x value histogram (16 x 4 x 4) of ``box`` in a BGR image; None when
    too small. Value counts: a black top and a white T-shirt differ only in it."""
    import cv2

    hgt, wid = image.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(wid, int(round(box[2]))), min(hgt, int(round(box[3])))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    hsv = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2HSV)
    hist = (
        cv2.calcHist([hsv], [0, 1, 2], None, [16, 4, 4], [0, 180, 0, 256, 0, 256]).ravel().astype(np.float64)
    )
    total = hist.sum()
    return hist / total if total > 0 else None


def look_alike(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Bhattacharyya coefficient of two clothes histograms (1 = same colours); None if one is missing."""
    if a is None or b is None:
        return None
    return float(np.sqrt(a * b).sum())


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def attach_heads(dets: DetectionsLike, cfg: TrackConfig) -> list[RiderDetection]:
    """Rider boxes with their head (if any), plus head-only riders for heads outside every rider box."""
    riders = np.asarray(dets.riders, dtype=np.float64).reshape(-1, 4)
    rscores = np.asarray(dets.rider_scores, dtype=np.float64).reshape(-1)
    heads = np.asarray(dets.heads, dtype=np.float64).reshape(-1, 4)
    hscores = np.asarray(dets.head_scores, dtype=np.float64).reshape(-1)
    nohelm = np.asarray(dets.head_no_helmet, dtype=np.float64).reshape(-1)
    out = [RiderDetection(riders[i], float(rscores[i]), "rider") for i in range(len(riders))]
    if len(heads) == 0:
        return out
    # the people on each vehicle, from every head box: _one_box_per_head below also merges a pillion's
    # head touching the rider's (helmet9 labelled pairs: the rider boxes' two-head recall 0.87 -> 0.73);
    # rider_occupants has its own rule for a head boxed twice (benchmarks/passenger.py)
    for r, occ in enumerate(rider_occupants(riders, heads, hscores, nohelm)):
        out[r].occupants = occ
    keep = _one_box_per_head(heads, hscores)
    heads, hscores, nohelm = heads[keep], hscores[keep], nohelm[keep]
    hc = np.c_[(heads[:, 0] + heads[:, 2]) / 2, (heads[:, 1] + heads[:, 3]) / 2]
    used_head = np.zeros(len(heads), dtype=bool)
    inside_any = np.zeros(len(heads), dtype=bool)
    if len(riders):
        h = riders[:, 3] - riders[:, 1]
        inside_x = (hc[None, :, 0] >= riders[:, None, 0]) & (hc[None, :, 0] <= riders[:, None, 2])
        rel_y = (hc[None, :, 1] - riders[:, None, 1]) / np.maximum(h[:, None], 1e-6)
        inside = inside_x & (rel_y >= -0.1) & (rel_y <= 0.5)
        inside_any = (inside_x & (rel_y >= -0.1) & (rel_y <= 1.0)).any(axis=0)
        # cost: prefer heads high in the box and horizontally centred, then confident
        cx = (riders[:, 0] + riders[:, 2]) / 2
        w = np.maximum(riders[:, 2] - riders[:, 0], 1e-6)
        cost = np.abs(rel_y) + np.abs(hc[None, :, 0] - cx[:, None]) / w[:, None] - 0.1 * hscores[None, :]
        cost = np.where(inside, cost, 1e6)
        ri, hi = linear_sum_assignment(cost)
        for r, k in zip(ri, hi, strict=True):
            if cost[r, k] < 1e6:
                out[r].head_box, out[r].head_score, out[r].no_helmet = (
                    heads[k],
                    float(hscores[k]),
                    float(nohelm[k]),
                )
                used_head[k] = True
    if cfg.head_only_tracks:
        # a head on another's body (hands, knees), or a smaller box hanging below a head it overlaps (the
        # same person's chin, beard or collar boxed a second time): no rider of its own
        below = below_another_head(heads, cfg.head_to_body) | hangs_below(heads)
        for k in np.nonzero(~used_head & ~inside_any & ~below)[0]:
            x0, y0, x1, y1 = heads[k]
            hw, hh = x1 - x0, y1 - y0
            cxk = (x0 + x1) / 2
            body = np.array([cxk - 1.5 * hw, y0, cxk + 1.5 * hw, y0 + cfg.head_to_body * hh])
            only = OccupantHead(
                (float(x0), float(y0), float(x1), float(y1)),
                float(hscores[k]),
                None if not np.isfinite(nohelm[k]) else float(nohelm[k]),
            )
            out.append(
                RiderDetection(
                    body,
                    float(hscores[k]),
                    "head",
                    heads[k],
                    float(hscores[k]),
                    float(nohelm[k]),
                    occupants=(only,),
                )
            )
    return out


def _one_box_per_head(heads: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of the head boxes to keep: of boxes of about the same size (within 1.4x) whose centres
    are less than one head height apart vertically and half a head width horizontally, only the most
    confident. The proposals (detector, heatmap, face) put several boxes on one head (hair, face,
    chin), too little overlapping for IoU suppression; two real heads of riders at the same distance
    cannot be that close (heads are solid), and a nearer rider's head is larger."""
    n = len(heads)
    if n < 2:
        return np.arange(n)
    cx = (heads[:, 0] + heads[:, 2]) / 2
    cy = (heads[:, 1] + heads[:, 3]) / 2
    w = np.maximum(heads[:, 2] - heads[:, 0], 1e-6)
    h = np.maximum(heads[:, 3] - heads[:, 1], 1e-6)
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    for k in order:
        same = [
            j
            for j in kept
            if (
                abs(cx[k] - cx[j]) < 0.5 * max(w[k], w[j])
                and abs(cy[k] - cy[j]) < 1.5 * max(h[k], h[j])
                and max(h[k], h[j]) / min(h[k], h[j]) <= 1.4
            )
            or _loose_box_of_the_same_head(heads[k], heads[j])
        ]
        if not same:
            kept.append(int(k))
    return np.array(sorted(kept), dtype=int)


def _loose_box_of_the_same_head(a: np.ndarray, b: np.ndarray) -> bool:
    """Is the smaller of two head boxes mostly (>= 60 % of its area) inside the larger, which is at most
    twice its height, with their centres less than half the larger's width apart across? Then the larger
    is a loose box around the same head (the heatmap and the detector box a small head 1.5-2x too large at
    times: the demo clip's teal-jacket got two tracks, one on each box, and two events). A real second head
    that far inside another is hidden behind it and is not detected; a pillion's head beside or above the
    driver's lies mostly outside the driver's box."""
    ha, hb = float(a[3] - a[1]), float(b[3] - b[1])
    small, large = (a, b) if ha <= hb else (b, a)
    hs, hl = min(ha, hb), max(ha, hb)
    if hs <= 0 or hl / hs > 2.0:
        return False
    ix = max(0.0, float(min(small[2], large[2]) - max(small[0], large[0])))
    iy = max(0.0, float(min(small[3], large[3]) - max(small[1], large[1])))
    area = float((small[2] - small[0]) * (small[3] - small[1]))
    across = abs(float(small[0] + small[2] - large[0] - large[2])) / 2
    return area > 0 and ix * iy >= 0.6 * area and across < 0.5 * float(large[2] - large[0])


@dataclass
class Track:
    """A rider followed across frames: box state, history of observations and helmet votes."""

    key: int
    box: np.ndarray  #: last estimated xyxy box
    first_t_s: float
    first_utc: datetime
    last_t_s: float
    history: deque[TrackPoint]
    track_id: int | None = None  #: public id, given at confirmation
    hits: int = 1
    confident_hits: int = 1  #: detections at or above track.high_conf (a track is created by one)
    rider_hits: int = 0
    matched_now: bool = True
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  #: d(cx, cy, w, h)/dt in px/s
    head: np.ndarray | None = None  #: last estimated head box (xyxy), when the track has had one
    head_velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  #: d(cx, cy, w, h)/dt of the head
    head_t_s: float = 0.0  #: when the head was last seen
    head_sizes: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=32))  #: (t_s, height)
    look: np.ndarray | None = None  #: running average of the clothes histogram

    @property
    def confirmed(self) -> bool:
        return self.track_id is not None

    @property
    def kind(self) -> TrackKind:
        return "rider" if self.rider_hits > 0 else "head"

    @property
    def last(self) -> TrackPoint:
        return self.history[-1]

    def predict(self, t_s: float) -> np.ndarray:
        dt = max(0.0, t_s - self.last_t_s)
        cxcywh = _to_cxcywh(self.box) + self.velocity * dt
        cxcywh[2:] = np.maximum(cxcywh[2:], 1.0)
        return _to_xyxy(cxcywh)

    def predict_head(self, t_s: float) -> np.ndarray | None:
        if self.head is None:
            return None
        dt = max(0.0, t_s - self.head_t_s)
        # position only: a head's size changes by a few per cent per tenth of a second (its distance
        # changes slowly), less than one box's noise, so a size trend would only extrapolate the noise
        c = _to_cxcywh(self.head) + np.r_[self.head_velocity[:2], 0.0, 0.0] * dt
        c[2:] = np.maximum(c[2:], 1.0)
        return _to_xyxy(c)

    def _update_head(self, head_box: np.ndarray | None, t_s: float) -> None:
        """The head's own constant-velocity state: association follows the head, the part of a rider
        the detector finds best and the one that moves like the rider (a body box extrapolated from a
        head is three heads wide and six tall, so it overlaps everything near it)."""
        if head_box is None:
            return
        self.head_sizes.append((t_s, float(head_box[3] - head_box[1])))
        z = _to_cxcywh(head_box)
        dt = t_s - self.head_t_s
        if self.head is None or dt <= 1e-6:
            self.head = np.asarray(head_box, dtype=np.float64)
        else:
            pred = _to_cxcywh(self.predict_head(t_s))  # type: ignore[arg-type]
            resid = z - pred
            if not self.head_velocity.any():
                self.head_velocity = (z - _to_cxcywh(self.head)) / dt
                self.head = np.asarray(head_box, dtype=np.float64)
            else:
                self.head = _to_xyxy(pred + 0.7 * resid)
                self.head_velocity = self.head_velocity + 0.3 * resid / dt
        self.head_t_s = t_s

    def head_height_fit(self, t_s: float, window_s: float, min_samples: int = 3) -> float | None:
        """The head's height at ``t_s`` from a robust straight-line fit of 1/height over time: a head
        is rigid and its image height is inversely proportional to its distance, which a rider changes
        at a nearly constant speed over a second. One detection's box is 10-30 % off (head detector,
        heatmap and face proposals draw heads differently); the fit over the window is not."""
        pts = [(t, h) for t, h in self.head_sizes if t >= t_s - window_s and h > 1.0]
        if len(pts) < min_samples:
            return None
        t = np.array([p[0] for p in pts])
        inv = 1.0 / np.array([p[1] for p in pts])
        slope = theil_sen(t, inv)
        level = float(np.median(inv - slope * t))
        v = level + slope * t_s
        return 1.0 / v if v > 1e-6 else None

    def image_motion(self, t_s: float, window_s: float, min_samples: int = 3) -> float | None:
        """How fast the head moves in the image, in head sizes per second, over the last ``window_s``:
        its centre's drift (Theil-Sen) and its growth or shrinking (log size), whichever is larger.
        Needs no calibration: a still head-like object (a sign, foliage) scores near 0, a rider moves
        across or grows as they approach."""
        pts = [
            (p.t_s, p.head_box) for p in self.history if p.head_box is not None and p.t_s >= t_s - window_s
        ]
        if len(pts) < min_samples:
            return None
        t = np.array([p[0] for p in pts])
        c = np.array([_to_cxcywh(np.asarray(p[1])) for p in pts])
        size = float(np.median(np.maximum(c[:, 2], c[:, 3])))
        drift = float(np.hypot(theil_sen(t, c[:, 0]), theil_sen(t, c[:, 1]))) / max(size, 1.0)
        growth = abs(theil_sen(t, np.log(np.maximum(c[:, 3], 1.0))))
        return max(drift, growth)

    def ranging_box(self, t_s: float, head_to_body: float, window_s: float) -> np.ndarray:
        """The box whose bottom centre is the rider's ground point. A rider box as filtered; for a
        rider seen only as a head, the body below the filtered head, ``head_to_body`` fitted head
        heights tall (see :meth:`head_height_fit`), so distance does not jump with each head box."""
        last = self.history[-1]
        if last.kind != "head" or self.head is None:
            return self.box
        h = self.head_height_fit(t_s, window_s)
        if h is None:
            return self.box
        cx = (self.head[0] + self.head[2]) / 2
        w = self.head[2] - self.head[0]
        return np.array([cx - 1.5 * w, self.head[1], cx + 1.5 * w, self.head[1] + head_to_body * h])

    def update(self, det: RiderDetection, point: TrackPoint) -> None:
        self._update_head(det.head_box, point.t_s)
        if det.look is not None:
            self.look = det.look if self.look is None else 0.8 * self.look + 0.2 * det.look
        dt = point.t_s - self.last_t_s
        z = _to_cxcywh(det.box)
        if dt > 1e-6:
            pred = _to_cxcywh(self.predict(point.t_s))
            resid = z - pred
            if self.hits == 1:
                self.velocity = (z - _to_cxcywh(self.box)) / dt
                state = z
            else:
                state = pred + 0.7 * resid
                self.velocity = self.velocity + 0.3 * resid / dt
            self.box = _to_xyxy(state)
        else:
            self.box = np.asarray(det.box, dtype=np.float64)
        self.last_t_s = point.t_s
        self.hits += 1
        self.rider_hits += det.kind == "rider"
        self.history.append(point)

    def take_over(self, new: Track) -> None:
        """Continue this (lost) track with ``new``'s observations and state: the same rider re-found."""
        self.history.extend(new.history)
        self.head_sizes.extend(new.head_sizes)
        self.box, self.velocity, self.last_t_s = new.box, new.velocity, new.last_t_s
        self.head, self.head_velocity, self.head_t_s = new.head, new.head_velocity, new.head_t_s
        self.hits += new.hits
        self.confident_hits += new.confident_hits
        self.rider_hits += new.rider_hits
        self.matched_now = True
        if new.look is not None:
            self.look = new.look if self.look is None else 0.5 * self.look + 0.5 * new.look

    def points(self, since_t_s: float | None = None) -> list[TrackPoint]:
        return [p for p in self.history if since_t_s is None or p.t_s >= since_t_s]

    def head_votes(self, in_zone_only: bool = True) -> list[TrackPoint]:
        """Observations with a helmet classification (optionally only those made in the capture zone)."""
        return [p for p in self.history if p.no_helmet is not None and (p.in_zone or not in_zone_only)]

    def motion(
        self, window_s: float, min_samples: int = 4, in_zone_only: bool = False
    ) -> GroundMotion | None:
        """Ground speed and heading over the last ``window_s`` s; None until ``min_samples`` ground
        points spanning at least a quarter of the window exist (``in_zone_only``: points in the band)."""
        pts = [p for p in self.history if p.ground is not None and (p.in_zone or not in_zone_only)]
        if len(pts) < 2:
            return None
        return fit_motion(
            np.array([p.t_s for p in pts]),
            np.array([p.ground for p in pts]),
            window_s,
            min_samples,
            window_s / 4,
        )


def _cut_by_frame(p: TrackPoint, height: int | None) -> bool:
    """True when the frame edge cuts off what the ground point is measured from: the wheels of a
    rider box (bottom edge), or the top of the head of a head-only rider (its body height is
    estimated from the head's). Such a point gets no ground position rather than a wrong one."""
    if p.kind == "head" and p.head_box is not None:
        return p.head_box[1] <= 1.0
    return height is not None and p.box[3] >= height - 1.0


def _to_cxcywh(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64)
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]])


def _to_xyxy(c: np.ndarray) -> np.ndarray:
    return np.array([c[0] - c[2] / 2, c[1] - c[3] / 2, c[0] + c[2] / 2, c[1] + c[3] / 2])


@dataclass
class TrackerUpdate:
    """Result of one :meth:`RiderTracker.update`."""

    active: list[Track]  #: confirmed tracks matched in this frame
    closed: list[Track]  #: confirmed tracks closed in this frame (unseen for max_lost_s)


class RiderTracker:
    """ByteTrack-style tracker of :class:`RiderDetection` boxes; optionally places them in a :class:`CaptureZone`."""

    def __init__(self, cfg: TrackConfig, zone: CaptureZone | None = None):
        self.cfg = cfg
        self.zone = zone
        self.tracks: list[Track] = []
        self._next_id = 1
        self._keys = itertools.count(1)  # internal keys of tentative tracks (public ids come at confirmation)

    def update(
        self,
        dets: DetectionsLike,
        t_s: float,
        utc: datetime,
        frame_size: tuple[int, int] | None = None,
        mono: float | None = None,
        image: np.ndarray | None = None,
    ) -> TrackerUpdate:
        """One detection frame at source time ``t_s`` (stream seconds; replay runs faster than real time).
        With the frame's ``image``, riders are also told apart by the colours of their clothes."""
        riders = attach_heads(dets, self.cfg)
        if image is not None and self.cfg.appearance_min > 0:
            for d in riders:
                d.look = clothes_histogram(image, clothes_box(d))
        return self.update_detections(riders, t_s, utc, frame_size, mono)

    def update_detections(
        self,
        detections: Iterable[RiderDetection],
        t_s: float,
        utc: datetime,
        frame_size: tuple[int, int] | None = None,
        mono: float | None = None,
    ) -> TrackerUpdate:
        cfg = self.cfg
        dets = [d for d in detections if d.score >= cfg.low_conf]
        high = [i for i, d in enumerate(dets) if d.score >= cfg.high_conf]
        low = [i for i, d in enumerate(dets) if d.score < cfg.high_conf]
        prev_matched = {t.key for t in self.tracks if t.matched_now}
        for t in self.tracks:
            t.matched_now = False
        preds = np.array([t.predict(t_s) for t in self.tracks]).reshape(-1, 4)
        matches: dict[int, int] = {}  # track index -> det index

        def associate(track_idx: list[int], det_idx: list[int]) -> list[int]:
            # matching cascade (DeepSORT): tracks seen on the last detection frame choose first, tracks
            # unseen for a while take what is left. A lost track's prediction is old and its gate wide, so
            # it must not outbid the track that followed a head up to the last frame: at a receding road's
            # vanishing point riders pass the spot where an earlier rider's track was lost
            recent = [i for i in track_idx if self.tracks[i].key in prev_matched]
            older = [i for i in track_idx if self.tracks[i].key not in prev_matched]
            return assign(older, assign(recent, det_idx))

        def assign(track_idx: list[int], det_idx: list[int]) -> list[int]:
            if not track_idx or not det_idx:
                return det_idx
            sim = self._similarity(
                [self.tracks[i] for i in track_idx], preds[track_idx], [dets[j] for j in det_idx], t_s
            )
            rows, cols = linear_sum_assignment(1.0 - sim)
            taken = set()
            for r, c in zip(rows, cols, strict=True):
                if sim[r, c] >= cfg.match_iou:
                    matches[track_idx[r]] = det_idx[c]
                    taken.add(det_idx[c])
            return [j for j in det_idx if j not in taken]

        all_idx = list(range(len(self.tracks)))
        unmatched_high = associate(all_idx, high)
        # second pass: low-confidence detections extend confirmed tracks matched last frame, and those
        # the detector has just missed when their heads match (a head-gated match is specific enough
        # that a weak detection of a followed head is still that head). A tentative track with a head,
        # matched last frame, is kept alive by a weak detection of that head, but only confident
        # detections confirm it (``confident_hits``; ByteTrack drops it): one detection at the edge of
        # high_conf followed by weak ones must not confirm a track - a car's windscreen scored 0.50 once
        # and 0.46-0.49 after became a no-helmet "rider" on the shared clip when its scores moved by 0.01
        # (another machine's kernels, benchmarks/trace_replay.py --jitter) - and a rider whose second
        # detection scores 0.49 instead of 0.54 (emulated arm64) must not lose the track and start again
        # a frame before leaving the band
        second = [
            i
            for i in all_idx
            if i not in matches
            and (
                (
                    self.tracks[i].confirmed
                    and (self.tracks[i].key in prev_matched or self.tracks[i].head is not None)
                )
                or (self.tracks[i].key in prev_matched and self.tracks[i].head is not None)
            )
        ]
        strong = set(matches)  # tracks matched by a confident detection
        associate(second, low)

        size = frame_size
        zone = self.zone.for_frame(*size) if (self.zone is not None and size is not None) else self.zone
        new_dets = [dets[j] for j in unmatched_high]
        matched: list[Track] = []
        confirming: list[Track] = []
        for ti, dj in matches.items():
            t = self.tracks[ti]
            t.update(dets[dj], self._point(dets[dj], t_s, utc, None, 0, mono))
            t.matched_now = True
            matched.append(t)
            if ti in strong:
                t.confident_hits += 1
            if t.track_id is None and t.confident_hits >= cfg.min_hits:
                confirming.append(t)
        for d in new_dets:
            p = self._point(d, t_s, utc, None, 0, mono)
            t = Track(
                next(self._keys),
                np.asarray(d.box, dtype=np.float64),
                t_s,
                utc,
                t_s,
                deque([p]),
                rider_hits=int(d.kind == "rider"),
            )
            t._update_head(d.head_box, t_s)
            t.look = d.look
            if cfg.min_hits <= 1:
                t.track_id = self._take_id()
            self.tracks.append(t)
            matched.append(t)
        # ground points from the filtered boxes (constant-velocity smoothing damps detector jitter,
        # which the homography magnifies far away)
        located = self._locate(
            [t.ranging_box(t_s, cfg.head_to_body, cfg.motion_window_s) for t in matched], zone
        )
        if located is not None:
            height = frame_size[1] if frame_size is not None else None
            for n, t in enumerate(matched):
                if not _cut_by_frame(t.history[-1], height):
                    t.history[-1] = self._point_located(t.history[-1], located, n)
        for t in confirming:
            old = self._relink(t)
            if old is None:
                t.track_id = self._take_id()
            else:
                old.take_over(t)
                self.tracks.remove(t)

        closed: list[Track] = []
        keep: list[Track] = []
        for t in self.tracks:
            if t.matched_now:
                self._trim(t, t_s)
                keep.append(t)
            elif t.track_id is None:
                continue  # ByteTrack: an unconfirmed track that misses a frame is dropped
            elif t_s - t.last_t_s > cfg.max_lost_s:
                closed.append(t)
            else:
                keep.append(t)
        self.tracks = keep
        active = [t for t in self.tracks if t.matched_now and t.confirmed]
        return TrackerUpdate(active, closed)

    def _similarity(
        self, tracks: list[Track], preds: np.ndarray, dets: list[RiderDetection], t_s: float
    ) -> np.ndarray:
        """(tracks x detections) match score in [0, 1]; a pair below ``match_iou`` never matches.

        * Both have a head: the heads decide. 1 - d / gate, d the distance of the detected head's centre
          from the track's predicted head centre and gate ``head_gate`` head sizes, widened by
          ``head_gate_growth`` head sizes per second unseen (a rider keeps moving while the detector
          misses them: head down, occluded, or frames skipped by a detector that cannot keep up).
          Head boxes are small and riders' heads are apart even when their bodies overlap.
        * Otherwise: the IoU of the rider boxes, as ByteTrack.
        Either way, a detection more than ``max_scale_change`` times taller or shorter than the
        prediction is another object (a rider approaching grows steadily, not in one step)."""
        cfg = self.cfg
        det_boxes = np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)
        sim = iou_matrix(preds, det_boxes)
        ph = np.maximum(preds[:, 3] - preds[:, 1], 1e-6)
        dh = np.maximum(det_boxes[:, 3] - det_boxes[:, 1], 1e-6)
        ratio = dh[None, :] / ph[:, None]
        nan4 = np.full(4, np.nan)
        tc = np.array([_to_cxcywh(h) if (h := t.predict_head(t_s)) is not None else nan4 for t in tracks])
        dc = np.array([_to_cxcywh(d.head_box) if d.head_box is not None else nan4 for d in dets])
        both = np.isfinite(tc[:, :1]) & np.isfinite(dc[:, 0])[None, :]
        if both.any():
            unseen = np.array([max(0.0, t_s - t.head_t_s) for t in tracks])[:, None]
            size = np.maximum(np.maximum(tc[:, 2:3], tc[:, 3:4]), np.maximum(dc[:, 2], dc[:, 3])[None, :])
            gate = np.maximum(size, 1.0) * (cfg.head_gate + cfg.head_gate_growth * unseen)
            dist = np.hypot(dc[None, :, 0] - tc[:, None, 0], dc[None, :, 1] - tc[:, None, 1])
            with np.errstate(invalid="ignore"):
                sim = np.where(both, np.clip(1.0 - dist / gate, 0.0, None), sim)
                ratio = np.where(
                    both, np.maximum(dc[:, 3], 1.0)[None, :] / np.maximum(tc[:, 3:4], 1.0), ratio
                )
        ok = (ratio <= cfg.max_scale_change) & (ratio >= 1.0 / cfg.max_scale_change)
        if cfg.appearance_min > 0:
            ti = [i for i, t in enumerate(tracks) if t.look is not None]
            dj = [j for j, d in enumerate(dets) if d.look is not None]
            if ti and dj:
                a = np.sqrt(np.array([tracks[i].look for i in ti]))
                b = np.sqrt(np.array([dets[j].look for j in dj]))
                other = (a @ b.T) < cfg.appearance_min  # Bhattacharyya coefficients: other clothes
                ok[np.ix_(ti, dj)] &= ~other  # another rider, however near
        return np.where(ok, sim, 0.0)

    def _relink(self, new: Track) -> Track | None:
        """A confirmed track, unseen now but not yet closed, that ``new`` plainly continues: ``new``'s
        first head lies within ``relink_gate`` head sizes of where the lost track's head would be by
        then (moved on at its image velocity; the gate grows by that many sizes per second unseen),
        about the same size, and in the same clothes (``relink_alike``). A rider the detector loses
        for a few frames (head down, occluded, entering or leaving fast) keeps one track."""
        cfg = self.cfg
        first = next((p for p in new.history if p.head_box is not None), None)
        if first is None or first.head_box is None or cfg.relink_gate <= 0:
            return None
        fc = _to_cxcywh(np.asarray(first.head_box))
        best, best_d = None, float("inf")
        for old in self.tracks:
            if old is new or not old.confirmed or old.matched_now or old.head is None:
                continue
            if old.last_t_s > first.t_s:  # they overlap in time: two riders
                continue
            pred = old.predict_head(first.t_s)
            if pred is None:
                continue
            pc = _to_cxcywh(pred)
            size = max(pc[3], fc[3], 1.0)
            if not (1.0 / cfg.max_scale_change <= fc[3] / max(pc[3], 1.0) <= cfg.max_scale_change):
                continue
            unseen = max(0.0, first.t_s - old.head_t_s)
            d = float(np.hypot(fc[0] - pc[0], fc[1] - pc[1]))
            if d > size * cfg.relink_gate * (1.0 + unseen):
                continue
            alike = look_alike(old.look, new.look)
            if alike is None or alike < cfg.relink_alike:
                continue
            if d < best_d:
                best, best_d = old, d
        return best

    def close_all(self) -> list[Track]:
        """End of stream: every confirmed track is closed."""
        closed = [t for t in self.tracks if t.confirmed]
        self.tracks = []
        return closed

    def _take_id(self) -> int:
        tid = self._next_id
        self._next_id += 1
        return tid

    def _trim(self, t: Track, t_s: float) -> None:
        while len(t.history) > 2 and t.history[0].t_s < t_s - self.cfg.history_s:
            t.history.popleft()

    @staticmethod
    def _locate(
        boxes: list[np.ndarray], zone: CaptureZone | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        if zone is None or not boxes:
            return None
        return zone.locate_boxes(np.array(boxes))

    @staticmethod
    def _point(
        d: RiderDetection,
        t_s: float,
        utc: datetime,
        located: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
        n: int,
        mono: float | None,
    ) -> TrackPoint:
        hb = None if d.head_box is None else _box4(d.head_box)
        p = TrackPoint(
            t_s,
            utc,
            _box4(d.box),
            d.score,
            d.kind,
            None,
            None,
            False,
            hb,
            d.head_score,
            d.no_helmet,
            mono,
            d.occupants,
        )
        return p if located is None else RiderTracker._point_located(p, located, n)

    @staticmethod
    def _point_located(
        p: TrackPoint, located: tuple[np.ndarray, np.ndarray, np.ndarray], n: int
    ) -> TrackPoint:
        g, dd, ins = located
        if not np.isfinite(g[n]).all():
            # no ground point: above the horizon (never in the zone), or an uncalibrated zone (the
            # whole frame is the zone)
            return replace(p, in_zone=True) if bool(ins[n]) else p
        return replace(
            p, ground=(float(g[n, 0]), float(g[n, 1])), distance_m=float(dd[n]), in_zone=bool(ins[n])
        )
