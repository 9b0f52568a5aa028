"""Table 1 after a commit: each person's tier re-assessed, a change recorded and its tasks published by the
disposition desk; a failure is logged (the daily re-evaluation catches up) and holds back nobody else.
:func:`reevaluate_all` is that daily pass."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select

from anqi_contract.logs import log
from central_sync.config import CentralConfig
from central_sync.dispositions import DispositionDesk
from central_sync.ingest.stats import ConsumerStats
from central_sync.storage.models import Person
from central_sync.storage.store import CentralStore
from central_sync.tiers import TierAssessment

logger = logging.getLogger("anqi.central.consumer")


class TierReassessor:
    def __init__(self, desk: DispositionDesk, stats: ConsumerStats):
        self.desk = desk
        self.stats = stats

    def reassess(self, person_id: str, at: datetime, event_id: str | None = None) -> TierAssessment | None:
        """Table 1 for the person at ``at``; a tier change is recorded and its tasks published."""
        before = self.desk.changes
        a, _ = self.desk.reassess(person_id, at, event_id)
        self.stats.tier_changes += self.desk.changes - before
        if a is not None:
            self.stats.last_assessment[person_id] = a.tier.value
        return a

    def reassess_many(self, items: Sequence[tuple[str, datetime, str | None]]) -> None:
        """:meth:`reassess` for the persons of one stored batch ``(person_id, at, event_id)``; a failure is logged
        (the daily re-evaluation catches up) and does not keep the others from being assessed."""
        before = self.desk.changes
        try:
            res = self.desk.reassess_many(items)
        except Exception as e:  # noqa: BLE001 - one by one, so that one person cannot hold back the others
            log(
                logger,
                "reassess_failed",
                logging.WARNING,
                persons=len(items),
                error=f"{type(e).__name__}: {str(e)[:300]}",
                action="one by one",
            )
            for pid, at, eid in items:
                try:
                    self.reassess(pid, at, eid)
                except Exception as e1:  # noqa: BLE001
                    self.stats.count_error()
                    log(
                        logger,
                        "reassess_failed",
                        logging.ERROR,
                        person=pid,
                        error=f"{type(e1).__name__}: {str(e1)[:300]}",
                    )
            return
        self.stats.tier_changes += self.desk.changes - before
        for pid, a in res.items():
            if a is not None:
                self.stats.last_assessment[pid] = a.tier.value


def reevaluate_all(
    store: CentralStore, cfg: CentralConfig, desk: DispositionDesk, at: datetime, write: bool = True
) -> dict[str, int]:
    """The daily pass: re-assess everyone who may hold a tier at ``at`` (windows slide without events).
    ``write=False`` is a dry run: the tiers at ``at`` and how many would change, nothing stored, no task."""
    counts: dict[str, int] = {}
    before = desk.changes
    would = 0
    for pid in store.persons_active_since(at - timedelta(days=cfg.tiers.repeat_window_days), at):
        if write:
            a, _ = desk.reassess(pid, at)
        else:
            with store.session() as s:
                stored = s.scalar(select(Person.tier).where(Person.person_id == pid))
                a = None if stored is None else store.assess_person(pid, at, cfg.tiers, s)
            would += a is not None and a.tier.value != stored
        if a is not None:
            counts[a.tier.value] = counts.get(a.tier.value, 0) + 1
    counts["changed"] = desk.changes - before if write else 0
    if not write:
        counts["would_change"] = would
    log(logger, "reevaluated", at=at.isoformat(), write=write, **counts)
    return counts
