"""Test helpers for the evidence stage: a rider track built from head boxes of the shared clip's frames."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta, timezone

import numpy as np

from edge.track import Track, TrackPoint

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)


def head_track(heads: dict[int, tuple[float, float, float, float]]) -> Track:
    pts = []
    for i, hb in sorted(heads.items()):
        x0, y0, x1, y1 = hb
        body = (x0 - 30, y0, x1 + 30, y0 + 6.5 * (y1 - y0))
        pts.append(
            TrackPoint(
                i / 30,
                T0 + timedelta(seconds=i / 30),
                body,
                0.9,
                "rider",
                (0.0, 20.0),
                20.0,
                True,
                hb,
                0.9,
                0.9,
            )
        )
    return Track(
        key=1,
        box=np.array(pts[0].box),
        first_t_s=pts[0].t_s,
        first_utc=pts[0].utc,
        last_t_s=pts[-1].t_s,
        history=deque(pts),
        track_id=3,
    )
