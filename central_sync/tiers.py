"""Offender tiers (table 1 of the standard) as pure functions of counts and disposition history.

Windows are half-open and end at the evaluation time ``at``: ``(at - 7 d, at]``, ``(at - 30 d, at]``,
``(at - 365 d, at]``. An event exactly 7 days before ``at`` no longer counts in the 7-day window;
an event at ``at`` does. Events and dispositions after ``at`` are ignored.

Table 1 and how its gaps are resolved (defaults; thresholds in :class:`TierThresholds`):

=============  ==========================================================================
tier           rule
=============  ==========================================================================
repeat         an ``education`` or ``fine`` disposition at time d and a violation at time
               v with ``at - 365 d < d < v <= at`` (a mere SMS / voice reminder never counts)
frequent       ``n7 > 3`` or ``n30 > 7``. The table says 3 < n7 <= 7 and 7 < n30 <= 30;
               more than 7 in 7 days or more than 30 in 30 days stays frequent (gap).
occasional     ``1 <= n7 <= 3`` or ``3 <= n30 <= 7``; the gap 1–2 in 30 days with none in
               the last 7 days is occasional too. So, below frequent: any ``n30 >= 1``.
none           nothing of the above (violations only older than 30 days, no repeat).
=============  ==========================================================================

Precedence: repeat > frequent > occasional > none. The overlaps of the table ("1–3 in 7 days"
with "3–7 in 30 days", "3–7 in 30 days" with "3 < n <= 7 in 7 days") are settled by this
precedence: 4 in 7 days is frequent even though it is also "3–7 in 30 days".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum

from central_sync.config import TierThresholds

__all__ = [
    "OffenderTier",
    "PersonHistory",
    "TierAssessment",
    "assess",
    "classify_counts",
    "history_from_times",
    "parse_aware_time",
]


class OffenderTier(str, Enum):
    none = "none"
    occasional = "occasional"
    frequent = "frequent"
    repeat = "repeat"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {OffenderTier.none: 0, OffenderTier.occasional: 1, OffenderTier.frequent: 2, OffenderTier.repeat: 3}


@dataclass(frozen=True)
class PersonHistory:
    """What table 1 needs about one person at one evaluation time (storage computes it with SQL).

    ``first_repeat_disposition``: the earliest education/fine disposition inside the repeat window;
    ``last_violation``: the latest violation at or before ``at`` (any age).
    """

    at: datetime
    count_7d: int
    count_30d: int
    count_365d: int
    first_repeat_disposition: datetime | None
    last_violation: datetime | None


@dataclass(frozen=True)
class TierAssessment:
    person_id: str
    at: datetime
    count_7d: int
    count_30d: int
    count_365d: int
    tier: OffenderTier

    def as_json(self) -> dict[str, object]:
        return {
            "person_id": self.person_id,
            "count_7d": self.count_7d,
            "count_30d": self.count_30d,
            "count_365d": self.count_365d,
            "tier": self.tier.value,
        }


def classify_counts(count_7d: int, count_30d: int, repeat: bool, th: TierThresholds) -> OffenderTier:
    """Table 1 on window counts, with the documented gap resolution and precedence."""
    if count_7d < 0 or count_30d < 0 or count_7d > count_30d:
        raise ValueError(f"inconsistent window counts: 7d={count_7d} 30d={count_30d}")
    if repeat:
        return OffenderTier.repeat
    if count_7d > th.occasional_max_7d or count_30d > th.occasional_max_30d:
        return OffenderTier.frequent
    if th.occasional_min_7d <= count_7d or th.occasional_min_30d <= count_30d:
        return OffenderTier.occasional
    if th.sparse_30d_is_occasional and count_30d >= 1:
        return OffenderTier.occasional
    return OffenderTier.none


def is_repeat(h: PersonHistory) -> bool:
    """A violation strictly after the earliest education/fine disposition of the repeat window."""
    return (
        h.first_repeat_disposition is not None
        and h.last_violation is not None
        and h.first_repeat_disposition < h.last_violation <= h.at
    )


def assess(person_id: str, h: PersonHistory, th: TierThresholds) -> TierAssessment:
    tier = classify_counts(h.count_7d, h.count_30d, is_repeat(h), th)
    return TierAssessment(person_id, h.at, h.count_7d, h.count_30d, h.count_365d, tier)


def window_starts(at: datetime, th: TierThresholds) -> tuple[datetime, datetime, datetime]:
    """Exclusive lower bounds of the 7-, 30- and 365-day windows ending at ``at``."""
    return (
        at - timedelta(days=th.short_window_days),
        at - timedelta(days=th.long_window_days),
        at - timedelta(days=th.repeat_window_days),
    )


def history_from_times(
    at: datetime, violations: Iterable[datetime], repeat_dispositions: Iterable[datetime], th: TierThresholds
) -> PersonHistory:
    """The same history from plain lists (reference implementation; storage does it in SQL)."""
    s7, s30, s365 = window_starts(at, th)
    vs = [v for v in violations if v <= at]
    ds = [d for d in repeat_dispositions if s365 < d <= at]
    return PersonHistory(
        at=at,
        count_7d=sum(1 for v in vs if v > s7),
        count_30d=sum(1 for v in vs if v > s30),
        count_365d=sum(1 for v in vs if v > s365),
        first_repeat_disposition=min(ds) if ds else None,
        last_violation=max(vs) if vs else None,
    )


def parse_aware_time(value: object, what: str = "time") -> datetime:
    """ISO 8601 with an offset (``Z`` allowed) -> aware UTC datetime; naive times are refused."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{what}: not an ISO 8601 time: {value!r}") from None
    else:
        raise ValueError(f"{what}: expected an ISO 8601 string, got {type(value).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what}: {value!r} has no UTC offset (write e.g. 2026-05-01T08:00:00+08:00)")
    return dt.astimezone(timezone.utc)
