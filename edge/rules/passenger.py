"""Carrying a passenger (违规载人), and the helmet of every occupant.

**Occupants.** The tracker gives every observation of a rider track the heads on its vehicle in that
frame (:mod:`edge.track.occupants`: heads in the upper part of the rider box, each head to one box,
spaced like people on one seat). The heads of one frame are put in order from the front of the
vehicle to the back along the track's direction of travel in the image: the first is the driver's,
the others are passengers' (:func:`occupant_roles`).

**Counting.** Per in-zone observation the occupants are counted; with ``allow_child_seat`` one head
clearly smaller than the driver's (size at most ``child_size_ratio`` of the driver's) in front of or
behind them is a child in a child seat and is not counted. The track's count is the largest ``k``
that at least ``min_fraction`` of its in-zone observations reach (a majority, so one frame where a
pedestrian's head falls into the box does not make a passenger, and one frame where the passenger is
hidden behind the driver does not clear one). More than ``max_occupants``: a ``passenger``
violation, once per track, decided after ``min_observations`` spanning ``min_observed_s``, on a
vehicle that moves (``min_speed_mps`` of ground speed, where the zone measures it: a group standing
by a parked or waiting two-wheeler is not one vehicle's occupants).

**Helmets.** :class:`PassengerHelmetRule` judges the passenger's head the way
:class:`~edge.rules.no_helmet.NoHelmetRule` judges the driver's (same thresholds, votes only from
frames that show two or more occupants) and reports a ``no_helmet`` violation of its own with
``detail.role = passenger``; the driver's is ``detail.role = driver``. One event per person: central
counts it against whoever's face it carries, each occupant their own violation (table 1 counts a
person's violations, and the passenger is the one not wearing the helmet). The ``passenger``
event itself is the driver's violation (the driver carries the passenger) and carries the
driver's face.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from anqi_contract.event import ViolationType
from edge.config.rules import NoHelmetRuleConfig, PassengerRuleConfig
from edge.rules.violation import OncePerTrack, Violation
from edge.track import (
    OccupantHead,
    Track,
    TrackPoint,
    box_text,
    look_alike,
    order_by_travel,
    parse_boxes,
)

Box = tuple[float, float, float, float]

DRIVER = "driver"
PASSENGER = "passenger"


def travel_direction(track: Track, at_s: float, window_s: float = 1.0) -> tuple[float, float] | None:
    """The track's direction of travel in the image around ``at_s`` (box centre displacement over the
    last ``window_s``), or None when it moved less than a fifth of its box width (standing, or jitter)."""
    pts = [p for p in track.history if at_s - window_s - 1e-6 <= p.t_s <= at_s + 1e-6]
    if len(pts) < 2:
        return None
    a, b = pts[0].box, pts[-1].box
    dx = (b[0] + b[2]) / 2 - (a[0] + a[2]) / 2
    dy = (b[1] + b[3]) / 2 - (a[1] + a[3]) / 2
    if np.hypot(dx, dy) < 0.2 * max(b[2] - b[0], 1.0):
        return None
    return float(dx), float(dy)


CHILD_SIZE_RATIO = 0.6  #: default of rules.passenger.child_size_ratio


def occupant_roles(
    point: TrackPoint, direction: tuple[float, float] | None, child_ratio: float = CHILD_SIZE_RATIO
) -> list[tuple[str, OccupantHead]]:
    """The point's heads, driver first, then passengers from front to back. The driver is the front-most
    head that is not clearly smaller than the biggest (a child in a front seat sits before the driver)."""
    heads = point.occupants
    order = order_by_travel(heads, direction)
    biggest = max((h.size for h in heads), default=0.0)
    first = next((n for n, i in enumerate(order) if heads[i].size > child_ratio * biggest), 0)
    order = [order[first]] + order[:first] + order[first + 1 :]
    return [(DRIVER if n == 0 else PASSENGER, heads[i]) for n, i in enumerate(order)]


def is_child(head: OccupantHead, adult: OccupantHead, ratio: float) -> bool:
    """A head clearly smaller than an adult's (size = sqrt of box area)."""
    return adult.size > 0 and head.size <= ratio * adult.size


def adults_seen(heads: Sequence[OccupantHead], allow_child_seat: bool, ratio: float) -> tuple[int, bool]:
    """(occupants counted, a child seen) for one frame: with ``allow_child_seat`` one head clearly
    smaller than the biggest (a child in a child seat, in front of or behind the driver) is not counted."""
    n = len(heads)
    if not allow_child_seat or n < 2:
        return n, False
    biggest = max(heads, key=lambda h: h.size)
    child = any(h is not biggest and is_child(h, biggest, ratio) for h in heads)
    return n - int(child), child


def majority_count(counts: Sequence[int], min_fraction: float) -> tuple[int, float]:
    """The largest ``k`` reached by at least ``min_fraction`` of ``counts``, and the share reaching it."""
    c = np.asarray(counts, dtype=np.int64)
    if not len(c):
        return 0, 0.0
    for k in range(int(c.max()), 0, -1):
        share = float((c >= k).mean())
        if share >= min_fraction - 1e-9:
            return k, share
    return 0, 1.0


def _in_zone_points(track: Track) -> list[TrackPoint]:
    return [p for p in track.history if p.in_zone and p.occupants]


def _violation(
    vtype: ViolationType,
    track: Track,
    confidence: float,
    motion_window_s: float,
    detail: dict[str, float | int | str | bool],
) -> Violation:
    last = track.last
    m = track.motion(motion_window_s)
    return Violation(
        type=vtype,
        track_id=track.track_id,  # type: ignore[arg-type]
        t_s=last.t_s,
        mono=last.mono if last.mono is not None else last.t_s,
        utc=last.utc,
        confidence=float(min(1.0, max(0.0, confidence))),
        zone_distance_m=last.distance_m,
        speed_mps=m.speed_mps if m else None,
        heading_deg=m.heading_deg if m else None,
        detail=detail,
    )


def occupant_boxes_text(point: TrackPoint) -> str:
    """Every occupant's head box of ``point``, ``;``-separated (for the event's detail and its frame)."""
    return ";".join(box_text(h.box) or "" for h in point.occupants)


class PassengerRule:
    """More people on the vehicle than ``max_occupants`` (a majority of its in-zone observations)."""

    type = ViolationType.passenger

    def __init__(self, cfg: PassengerRuleConfig, motion_window_s: float = 1.0):
        self.cfg = cfg
        self.motion_window_s = motion_window_s
        self._once = OncePerTrack()

    def forget(self, track_ids: set[int]) -> None:
        self._once.forget(track_ids)

    def check(self, track: Track) -> Violation | None:
        cfg = self.cfg
        tid = track.track_id
        if tid is None or self._once.fired(tid) or not track.last.in_zone or track.rider_hits == 0:
            return None
        pts = _in_zone_points(track)
        if len(pts) < cfg.min_observations or pts[-1].t_s - pts[0].t_s < cfg.min_observed_s - 1e-6:
            return None
        counts: list[int] = []
        children = 0
        for p in pts:  # (who drives does not matter for the count: no direction needed per frame)
            n, child = adults_seen(p.occupants, cfg.allow_child_seat, cfg.child_size_ratio)
            counts.append(n)
            children += child
        k, share = majority_count(counts, cfg.min_fraction)
        if k <= cfg.max_occupants:
            return None
        if pts[-1] is not track.last or counts[-1] < k:
            return None  # decided on a frame that shows them all: the evidence frame is this one
        if cfg.min_speed_mps > 0 and any(p.ground is not None for p in pts):
            # a zone that measures ground speed: wait for a speed (enough ground points), then ask for motion
            m = track.motion(self.motion_window_s, in_zone_only=True) or track.motion(self.motion_window_s)
            if m is None or m.speed_mps < cfg.min_speed_mps:
                return None  # standing: people beside a parked or waiting vehicle are no passengers (yet)
        self._once.mark(tid)
        shown = pts[-1]
        roles = occupant_roles(shown, travel_direction(track, shown.t_s, self.motion_window_s))
        detail: dict[str, float | int | str | bool] = {
            "occupants": k,
            "max_occupants": cfg.max_occupants,
            "observations": len(pts),
            "observed_s": round(pts[-1].t_s - pts[0].t_s, 2),
            "occupants_fraction": round(share, 3),
            "occupant_counts": ",".join(str(n) for n in counts[-12:]),
            "child_seat_seen": bool(children * 2 > len(pts)),
            "occupant_boxes": occupant_boxes_text(shown),
        }
        driver = box_text(roles[0][1].box) if roles else None
        if driver is not None:
            detail["head_box"] = driver
            detail["role"] = DRIVER
        return _violation(self.type, track, share, self.motion_window_s, detail)


class PassengerHelmetRule:
    """A passenger's head that says 'no helmet' in a majority of the frames that show the passenger:
    a ``no_helmet`` violation with ``detail.role = passenger`` (once per track)."""

    type = ViolationType.no_helmet

    def __init__(self, cfg: NoHelmetRuleConfig, motion_window_s: float = 1.0):
        self.cfg = cfg
        self.motion_window_s = motion_window_s
        self._once = OncePerTrack()

    def forget(self, track_ids: set[int]) -> None:
        self._once.forget(track_ids)

    def check(self, track: Track) -> Violation | None:
        cfg = self.cfg
        tid = track.track_id
        if tid is None or self._once.fired(tid) or not track.last.in_zone or track.rider_hits == 0:
            return None
        votes: list[tuple[TrackPoint, OccupantHead]] = []
        # one direction for every frame of the check (the latest): roles do not flip between frames, and
        # the cost stays one fit per check, not one per frame of the history
        direction = travel_direction(track, track.last.t_s, self.motion_window_s)
        for p in _in_zone_points(track):
            if len(p.occupants) < 2:
                continue
            roles = occupant_roles(p, direction)
            head = roles[1][1]  # the passenger right behind the driver
            if head.no_helmet is not None:
                votes.append((p, head))
        if (
            len(votes) < cfg.min_observations
            or votes[-1][0].t_s - votes[0][0].t_s < cfg.min_observed_s - 1e-6
        ):
            return None
        prob = np.array([h.no_helmet for _, h in votes], dtype=np.float64)
        no = prob >= cfg.vote_threshold
        fraction = float(no.mean())
        if fraction < cfg.min_fraction:
            return None
        confidence = float(prob[no].mean())
        if confidence < cfg.min_confidence:
            return None
        shown_p, shown_h = votes[-1]
        if shown_p is not track.last or not no[-1]:
            return None  # decided on a frame that shows the bare head: the evidence frame is this one
        self._once.mark(tid)
        return _violation(
            self.type,
            track,
            confidence,
            self.motion_window_s,
            {
                "role": PASSENGER,
                "observations": len(votes),
                "observed_s": round(votes[-1][0].t_s - votes[0][0].t_s, 2),
                "no_helmet_votes": int(no.sum()),
                "no_helmet_fraction": round(fraction, 3),
                "mean_no_helmet_p": round(float(prob.mean()), 3),
                "head_box": box_text(shown_h.box) or "",
                "occupant_boxes": occupant_boxes_text(shown_p),
                "track_kind": track.kind,
            },
        )


def driver_vote(p: TrackPoint, direction: tuple[float, float] | None) -> tuple[float | None, Box | None]:
    """The driver's no-helmet probability and head on ``p``: the front head when the frame shows two
    or more occupants (``direction``: the track's direction of travel, :func:`travel_direction`),
    else the track's own head (:class:`~edge.rules.no_helmet.NoHelmetRule`)."""
    if len(p.occupants) >= 2:
        head = occupant_roles(p, direction)[0][1]
        return head.no_helmet, head.box
    return p.no_helmet, p.head_box


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box: 1 when one box lies inside the other (a head boxed tightly
    by one detection and loosely by another is one head)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


class SameOccupantGuard:
    """One person, one report per type, when two tracks ride on one vehicle: a rider box per person
    (labels and the detector trained on them often draw one for the rider and one for the pillion) or
    a box per head (frontal cameras) puts the same two people in two tracks. A violation whose judged
    head (``detail.head_box``) is one of the heads of the same frame of another track that already
    reported that type is the same person's, and is dropped. Where both tracks have ground positions
    they must also stand on the same spot (within ``max_ground_m``: one vehicle).

    The people on a vehicle change roles between its tracks and frames (the pillion's own box sees
    the pillion as its driver; a box holding both sees them as the passenger), and the tracks that
    saw a person reported end while others carry on. So the guard also remembers *whose head* was
    reported: the track whose own head (the head it follows) was judged, and every track seen in the
    same frame following that same head (head boxes overlapping ``min_overlap`` of the smaller;
    :meth:`follow` hands the person on each frame). A later violation of that type judged on the own
    head of such a track, or on a head such a track follows in this frame, is the same person's."""

    def __init__(self, min_overlap: float = 0.6, keep_s: float = 10.0, max_ground_m: float = 0.8):
        self.min_overlap = min_overlap
        self.max_ground_m = max_ground_m
        self.keep_s = keep_s
        self._reported: list[tuple[str, Track]] = []
        self._own: dict[str, dict[int, float]] = {}  #: type -> {track id following a reported head: last t_s}
        self._now: list[Track] = []

    def follow(self, tracks: list[Track]) -> None:
        """This frame's tracks: a track following the same head as one that carries a reported person
        (seen in this frame, head boxes overlapping) carries that person too."""
        self._now = tracks
        if not tracks:
            return
        now = max(t.last.t_s for t in tracks)
        seen: list[tuple[int, Box]] = [
            (t.track_id, t.last.head_box)
            for t in tracks
            if t.track_id is not None and t.last.head_box is not None and t.last.t_s == now
        ]
        for own in self._own.values():
            carried = [head for tid, head in seen if tid in own]
            for tid, head in seen:
                if tid in own or any(_overlap(c, head) >= self.min_overlap for c in carried):
                    own[tid] = now
            for tid in [k for k, last in own.items() if now - last > self.keep_s]:
                del own[tid]

    def seen_as_passenger(
        self, v: Violation, track: Track, motion_window_s: float = 1.0
    ) -> tuple[int, TrackPoint] | None:
        """A driver's judgement by a track that sees one person only (the pillion's own rider box, or a box
        made from her head) whose judged head is, in this frame, a passenger's on another track's vehicle:
        that track shows two or more occupants, its direction of travel is known (who drives is decided,
        :func:`occupant_roles`), and the judged head is one of its occupants behind the driver, not the
        driver. Returns that track's id and point."""
        judged = parse_boxes(v.detail.get("head_box"))
        if not judged or len(track.last.occupants) >= 2:
            return None
        now = track.last.t_s
        for other in self._now:
            last = other.last
            if (
                other is track
                or other.track_id is None
                or len(last.occupants) < 2
                or abs(last.t_s - now) > 1e-6
            ):
                continue
            direction = travel_direction(other, now, motion_window_s)
            if direction is None:
                continue
            roles = occupant_roles(last, direction)
            if _overlap(judged[0], roles[0][1].box) >= self.min_overlap:
                continue  # the driver's head there too
            if any(_overlap(judged[0], h.box) >= self.min_overlap for _, h in roles[1:]):
                return other.track_id, last
        return None

    def _followed_by(self, vtype: str, judged: Box, track: Track) -> int | None:
        """A track of this frame carrying a reported person of ``vtype`` whose own head is ``judged``."""
        own = self._own.get(vtype, {})
        now = track.last.t_s
        for t in [track, *self._now]:
            head = t.last.head_box
            if t.track_id in own and head is not None and abs(t.last.t_s - now) <= 1e-6:
                if _overlap(judged, head) >= self.min_overlap:
                    return t.track_id
        return None

    def same_person(self, v: Violation, track: Track) -> int | None:
        """The id of the other track that reported this person already, or None."""
        judged = parse_boxes(v.detail.get("head_box"))
        if not judged:
            return None
        carrier = self._followed_by(v.type.value, judged[0], track)
        if carrier is not None:
            return carrier
        now = track.last.t_s
        for vtype, other in self._reported:
            if vtype != v.type.value or other.track_id == track.track_id:
                continue
            last = other.last
            if abs(last.t_s - now) > 1e-6:
                continue  # the other track is not seen in this frame: its heads cannot be compared
            g0, g1 = last.ground, track.last.ground
            if (
                g0 is not None
                and g1 is not None
                and np.hypot(g0[0] - g1[0], g0[1] - g1[1]) > self.max_ground_m
            ):
                continue  # two vehicles, whatever their boxes look like
            heads = [h.box for h in last.occupants] or ([last.head_box] if last.head_box else [])
            if any(_overlap(judged[0], h) >= self.min_overlap for h in heads):
                return other.track_id
        return None

    def reported(self, v: Violation, track: Track) -> None:
        now = track.last.t_s
        self._reported = [(k, t) for k, t in self._reported if now - t.last.t_s <= self.keep_s]
        self._reported.append((v.type.value, track))
        judged = parse_boxes(v.detail.get("head_box"))
        if not judged:
            return
        own = self._own.setdefault(v.type.value, {})
        for t in [track, *self._now]:
            head = t.last.head_box
            if t.track_id is not None and head is not None and abs(t.last.t_s - now) <= 1e-6:
                if _overlap(judged[0], head) >= self.min_overlap:
                    own[t.track_id] = now


def occupant_heads(track: Track, motion_window_s: float = 1.0) -> dict[str, Box]:
    """The driver's and the (first) passenger's head on the track's latest frame, when it shows more
    than one person and the direction of travel is known (empty otherwise): where face capture looks
    for each of their faces. Without a direction who drives is a guess, and a face stored under the
    wrong role would stay the best one of that role."""
    last = track.last
    if len(last.occupants) < 2:
        return {}
    direction = travel_direction(track, last.t_s, motion_window_s)
    if direction is None:
        return {}
    roles = occupant_roles(last, direction)
    return {DRIVER: roles[0][1].box, PASSENGER: roles[1][1].box}


def _inside(point: tuple[float, float], box: Box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


class SameVehicleGuard:
    """One ``passenger`` event per physical vehicle. A vehicle carrying two people is seen by the detector
    as several rider boxes (one per person, one made from each head), and a vehicle growing fast in the frame loses and regains its
    track: each of those tracks can count two people and decide on its own. A new track's passenger
    event is dropped when a track that already reported a passenger (within ``keep_s``) is plainly the
    same vehicle:

    * **seen in the same frame**: the two rider boxes overlap by ``min_overlap`` of the smaller one, and
      they share an occupant (a head of one overlaps a head of the other by ``min_overlap`` of the
      smaller). Where both tracks have ground positions they must also stand within ``max_ground_m``.
      A vehicle queued behind another on a frontal camera overlaps its box but shares no head, so it
      is kept; a box round the lower body, whose hands and knees would pass for heads, gets no
      occupants from them (:func:`edge.track.occupants.rider_occupants`);
    * **or continued**: the reported track was last seen before the new one began, at most ``gap_s``
      earlier, the new track's first box overlaps the box the reported one would have by then (moved on
      at its own velocity) by ``min_overlap`` of the smaller, and where both have a clothes histogram they
      look alike (``min_alike``).

    Ground positions of re-tracked riders are the :class:`~edge.rules.SameRiderGuard`'s; this guard works
    in the image, so it also holds where the zone is not calibrated."""

    def __init__(
        self,
        gap_s: float = 2.0,
        min_alike: float = 0.0,
        min_overlap: float = 0.5,
        max_ground_m: float = 1.5,
        keep_s: float = 10.0,
    ):
        self.gap_s = gap_s
        self.min_alike = min_alike
        self.min_overlap = min_overlap
        self.max_ground_m = max_ground_m
        self.keep_s = keep_s
        self._reported: list[Track] = []

    def same_vehicle(self, track: Track) -> int | None:
        """The id of a track that reported this vehicle's passenger already, or None."""
        for old in self._reported:
            if old.track_id == track.track_id:
                continue
            if abs(old.last.t_s - track.last.t_s) <= 1e-6:
                if self._together(old.last, track.last):
                    return old.track_id
            elif self._continues(old, track):
                return old.track_id
        return None

    def _together(self, a: TrackPoint, b: TrackPoint) -> bool:
        if a.ground is not None and b.ground is not None:
            if float(np.hypot(a.ground[0] - b.ground[0], a.ground[1] - b.ground[1])) > self.max_ground_m:
                return False
        if _overlap(a.box, b.box) < self.min_overlap:
            return False
        return any(_overlap(h.box, k.box) >= self.min_overlap for h in a.occupants for k in b.occupants)

    def _continues(self, old: Track, track: Track) -> bool:
        first = track.history[0]
        old_last = old.last.t_s
        if not (old_last <= first.t_s + 1e-6 and first.t_s - old_last <= self.gap_s):
            return False  # seen together (then not one vehicle: checked above) or too long apart
        alike = look_alike(old.look, track.look)
        if self.min_alike > 0 and alike is not None and alike < self.min_alike:
            return False
        where = old.predict(first.t_s)
        return _overlap(first.box, (float(where[0]), float(where[1]), float(where[2]), float(where[3]))) >= (
            self.min_overlap
        )

    def reported(self, track: Track) -> None:
        now = track.last.t_s
        self._reported = [t for t in self._reported if now - t.last.t_s <= self.keep_s]
        self._reported.append(track)
