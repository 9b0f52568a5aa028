"""Face matches an officer must look at (issue 23 point 2), stored in ``reviews``:

* ``enrolment_conflict``: a person enrolled with ``enrol --force`` although the photos match another enrolled person
  (``other_person_id``, cosine ``score``);
* ``uncertain_match``: an event face matched to ``person_id`` while another enrolled person scored within
  ``identity.review_margin`` (``other_person_id``, ``other_score``): two persons too alike to tell apart. The event is
  stored and counts; the review says which event to check.

An officer clears a review with :func:`clear_review` (``anqi-central review clear``) as ``confirmed`` (the match is
right) or ``dismissed`` (nothing to do, e.g. twins enrolled on purpose), with who and a note; moving the event to the
right person (``anqi-central reassign``) clears its review as ``reassigned``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select

from anqi_contract.logs import log
from central_sync.storage.models import AuditEntry, Review
from central_sync.storage.store import CentralStore

logger = logging.getLogger("anqi.central.reviews")

#: what an officer may clear a review as by hand (``reassigned`` comes with ``reassign``)
RESOLUTIONS = ("confirmed", "dismissed")


class ReviewError(ValueError):
    """A review that cannot be cleared (message names the option)."""


def list_reviews(
    store: CentralStore, open_only: bool = True, person_id: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Reviews, oldest first (open ones only unless ``open_only`` is false), of one person (either side) if given."""
    q = select(Review).order_by(Review.id).limit(limit)
    if open_only:
        q = q.where(Review.cleared_at.is_(None))
    if person_id:
        q = q.where((Review.person_id == person_id) | (Review.other_person_id == person_id))
    with store.session() as s:
        return [
            {
                "id": r.id,
                "kind": r.kind,
                "person_id": r.person_id,
                "other_person_id": r.other_person_id,
                "event_id": r.event_id,
                "score": r.score,
                "other_score": r.other_score,
                "created_at": r.created_at.isoformat(),
                "cleared_at": r.cleared_at.isoformat() if r.cleared_at else None,
                "cleared_by": r.cleared_by,
                "resolution": r.resolution,
                "note": r.note,
            }
            for r in s.scalars(q)
        ]


def clear_review(
    store: CentralStore, review_id: int, actor: str, resolution: str, note: str | None = None
) -> None:
    """Clear one open review as ``confirmed`` or ``dismissed``, recording who, when and the note."""
    actor = (actor or "").strip()
    if not actor or len(actor) > 64:
        raise ReviewError("--by: the officer clearing the review (1-64 characters)")
    if resolution not in RESOLUTIONS:
        raise ReviewError(
            f"--resolution: one of {', '.join(RESOLUTIONS)} (to move the event use 'anqi-central reassign')"
        )
    now = datetime.now(timezone.utc)
    with store.session() as s:
        r = s.execute(select(Review).where(Review.id == review_id).with_for_update()).scalar_one_or_none()
        if r is None:
            raise ReviewError(f"--id: no review {review_id}")
        if r.cleared_at is not None:
            raise ReviewError(
                f"--id: review {review_id} was cleared already ({r.resolution} by {r.cleared_by} at "
                f"{r.cleared_at.isoformat(timespec='seconds')})"
            )
        r.cleared_at, r.cleared_by, r.resolution, r.note = now, actor, resolution, (note or None)
        s.add(
            AuditEntry(
                time=now,
                actor=actor,
                role="officer",
                action="review_cleared",
                params={"review": str(review_id), "resolution": resolution, "kind": r.kind},
                rows=1,
                persons=sorted({p for p in (r.person_id, r.other_person_id) if p}),
            )
        )
    log(logger, "review_cleared", review=review_id, by=actor, resolution=resolution)
