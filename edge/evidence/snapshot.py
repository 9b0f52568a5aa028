"""The violation frame: the frame a rule decided on, with the violator marked (``violation.jpg``).

Every event gets it, with or without a face: it is the still that shows a reviewer which rider the
appliance meant and why (the rider box, for ``no_helmet`` the head it judged, and the capture band's
near and far edges on the road, so the rider is seen to be inside it). The face photo
(``face.jpg``) and its frame (``context.jpg``) come from whichever frame showed the face best,
often seconds later; this one is the moment of the decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np

from edge.draw import put_label
from edge.track import Track, parse_boxes
from edge.zone import BAND_BGR

Box = tuple[float, float, float, float]

RIDER_BGR = (0, 0, 255)
HEAD_BGR = (0, 255, 255)
OCCUPANT_BGR = (255, 160, 0)  #: the other occupants' heads (a passenger event shows everyone on the vehicle)


@dataclass(frozen=True)
class ViolationFrame:
    """What is kept of the deciding frame until the event is built (drawn only then, off the frame path).

    ``image`` is the decoded frame itself, not a copy: sources hand out a new array per frame and no
    stage draws on it."""

    image: np.ndarray
    box: Box | None  #: the rider's box (xyxy, frame pixels) on that frame
    head_box: Box | None  #: the head judged for ``no_helmet`` (xyxy), if any
    label: str
    band: tuple[np.ndarray, ...] = ()  #: the capture band's edges, open polylines in frame pixels
    occupants: tuple[Box, ...] = ()  #: every head on the vehicle (2 or more: driver and passengers)

    @classmethod
    def of(
        cls,
        image: np.ndarray,
        track: Track | None,
        t_s: float,
        violation: str,
        track_id: int,
        confidence: float,
        distance_m: float | None,
        utc: datetime,
        band: tuple[np.ndarray, ...] = (),
        detail: Mapping[str, object] | None = None,
    ) -> ViolationFrame:
        """The frame of a violation decided at ``t_s`` on ``track`` (its point at ``t_s``, or its latest).
        A rule's ``detail`` names the judged head (``head_box``: a passenger's, say) and every occupant's
        (``occupant_boxes``) when the vehicle carries more than one person; the label says whose head."""
        box = head = None
        detail = detail or {}
        occupants = parse_boxes(detail.get("occupant_boxes"))
        named = parse_boxes(detail.get("head_box"))
        role = detail.get("role")
        if track is not None and track.history:
            box = next(
                (p.box for p in reversed(track.history) if abs(p.t_s - t_s) < 1e-6), track.history[-1].box
            )
            if named and (violation == "no_helmet" or occupants):
                head = named[0]
            elif violation == "no_helmet":
                head = next(
                    (
                        p.head_box
                        for p in reversed(track.history)
                        if p.head_box is not None and p.t_s <= t_s + 1e-6
                    ),
                    None,
                )
        dist = "" if distance_m is None else f"  {distance_m:.1f} m"
        if occupants and violation == "passenger":
            violation = f"passenger ({len(occupants)} on board)"
        elif role is not None and occupants:
            violation = f"{violation} ({role})"
        label = f"{violation}  track {track_id}  conf {confidence:.2f}{dist}  {utc.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} UTC"
        return cls(image, box, head, label, band, occupants if len(occupants) >= 2 else ())

    def render(self, image: np.ndarray | None = None) -> np.ndarray:
        """A copy of the frame (or of ``image``: the same frame with bystanders blurred) with the band's edges (orange),
        the rider box (red), the other occupants' heads (blue), the judged head (yellow) and the label drawn."""
        out = (self.image if image is None else image).copy()
        h, w = out.shape[:2]
        k = max(1.0, w / 640.0)  # lines and text grow with the frame
        thick = max(2, round(2 * k))
        if self.band:
            cv2.polylines(out, list(self.band), False, BAND_BGR, max(1, round(k)), cv2.LINE_AA)
        marks = [(self.box, RIDER_BGR)] + [(o, OCCUPANT_BGR) for o in self.occupants if o != self.head_box]
        for box, color in (*marks, (self.head_box, HEAD_BGR)):
            if box is None or not np.isfinite(box).all():
                continue
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            x0, x1 = max(0, min(x0, w - 1)), max(0, min(x1, w - 1))
            y0, y1 = max(0, min(y0, h - 1)), max(0, min(y1, h - 1))
            cv2.rectangle(out, (x0, y0), (x1, y1), color, thick, cv2.LINE_AA)
        put_label(out, self.label, (round(8 * k), round(18 * k)), 0.45 * k, max(1, round(k)))
        return out
