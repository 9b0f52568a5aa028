"""The data-sharing queries (7.2.2), one implementation for HTTP and SOAP.

Violations and persons by date range, point, community, tier and violation type; fields: name, ID number, point,
date, count, village/community. :class:`~central_sync.sharing.access.Caller` decides rows
(own community only) and fields (ID number / name masked); every call is audited.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select

from anqi_contract.event import ViolationType
from central_sync.config import CentralConfig
from central_sync.sharing.access import Caller, audit
from central_sync.storage.models import Event, Person
from central_sync.storage.store import CentralStore
from central_sync.tiers import OffenderTier


@dataclass(frozen=True)
class QueryFilter:
    start: datetime
    end: datetime  # exclusive
    point: str | None = None
    community: str | None = None
    tier: OffenderTier | None = None
    limit: int = 1000
    violation_type: ViolationType | None = None  #: only violations of this type (no_helmet, passenger, ...)
    cursor: str | None = None  #: where the page starts (``next_cursor`` of the page before)

    def as_params(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "point": self.point,
            "community": self.community,
            "tier": self.tier.value if self.tier else None,
            "type": self.violation_type.value if self.violation_type else None,
            "limit": self.limit,
        }


def parse_range(start: str, end: str, tz: str) -> tuple[datetime, datetime]:
    """``YYYY-MM-DD`` (local dates, ``end`` inclusive) or ISO times with offset (``end`` exclusive)."""
    zone = ZoneInfo(tz)

    def one(v: str, is_end: bool) -> datetime:
        v = v.strip()
        try:
            if len(v) == 10:
                d = date.fromisoformat(v)
                if not 1970 <= d.year <= 9998:
                    raise ValueError("year out of range")
                if is_end:
                    d += timedelta(days=1)
                return datetime.combine(d, time(0), zone).astimezone(timezone.utc)
            dt = datetime.fromisoformat(v)
            if not 1970 <= dt.year <= 9998:
                raise ValueError("year out of range")
            if dt.tzinfo is not None:
                return dt.astimezone(timezone.utc)
        except (ValueError, OverflowError):
            raise ValueError(
                f"{'to' if is_end else 'from'}: not a date (YYYY-MM-DD) or ISO 8601 time in 1970..9998: {v!r}"
            ) from None
        if dt.tzinfo is None:
            raise ValueError(f"{'to' if is_end else 'from'}: {v!r} has no UTC offset")
        return dt.astimezone(timezone.utc)

    s, e = one(start, False), one(end, True)
    if e <= s:
        raise ValueError("to must be after from")
    return s, e


@dataclass(frozen=True)
class ViolationRow:
    event_id: str
    time: str
    date: str
    point_id: str
    violation_type: str
    person_id: str | None
    name: str | None
    id_number: str | None
    community: str | None
    tier: str | None
    count: int  # the person's violations in the queried range


@dataclass(frozen=True)
class PersonRow:
    person_id: str
    name: str | None
    id_number: str | None
    community: str | None
    employer: str | None
    tier: str
    count: int
    points: list[str]
    first_date: str
    last_date: str
    types: list[
        str
    ]  # "type:count" of the person's violations in the range, e.g. ["no_helmet:3", "passenger:1"]


def _filter_conds(f: QueryFilter, community: str | None) -> list[Any]:
    """The WHERE conditions both listings share: the time range and the optional point, community, tier, type."""
    conds: list[Any] = [Event.time >= f.start, Event.time < f.end]
    if f.point:
        conds.append(Event.point_id == f.point)
    if community is not None:
        conds.append(Person.community == community)
    if f.tier is not None:
        conds.append(Person.tier == f.tier.value)
    if f.violation_type is not None:
        conds.append(Event.violation_type == f.violation_type.value)
    return conds


class SharingQueries:
    def __init__(self, cfg: CentralConfig, store: CentralStore):
        self.cfg = cfg
        self.store = store
        self.zone = ZoneInfo(cfg.timezone)

    def _local_date(self, t: datetime) -> str:
        return t.astimezone(self.zone).date().isoformat()

    def _page_size(self, f: QueryFilter) -> int:
        return max(1, min(f.limit, self.cfg.api.max_rows))

    def violations(self, caller: Caller, f: QueryFilter, client: str | None = None) -> Page:
        """One page of violations in (time, event_id) order after ``f.cursor``; the total for the whole query."""
        community = caller.community_filter(f.community)
        after = decode_cursor(f.cursor, f, caller, 2) if f.cursor else None
        conds = _filter_conds(f, community)
        size = self._page_size(f)
        q = (
            select(
                Event.event_id,
                Event.time,
                Event.point_id,
                Event.violation_type,
                Event.person_id,
                Person.name,
                Person.id_number,
                Person.community,
                Person.tier,
            )
            .outerjoin(Person, Person.person_id == Event.person_id)
            .where(*conds)
        )
        if after is not None:
            t = _cursor_time(after[0])
            q = q.where(or_(Event.time > t, and_(Event.time == t, Event.event_id > str(after[1]))))
        q = q.order_by(Event.time, Event.event_id).limit(size + 1)
        total_q = (
            select(func.count())
            .select_from(Event)
            .outerjoin(Person, Person.person_id == Event.person_id)
            .where(*conds)
        )
        with self.store.session() as s:
            rows = s.execute(q).all()
            more = len(rows) > size
            rows = rows[:size]
            total = int(s.scalar(total_q) or 0)
            pids = sorted({r.person_id for r in rows if r.person_id})
            counts: dict[str, int] = {}
            if pids:
                cq = select(Event.person_id, func.count()).where(
                    Event.person_id.in_(pids), Event.time >= f.start, Event.time < f.end
                )
                if f.point:
                    cq = cq.where(Event.point_id == f.point)
                if f.violation_type is not None:
                    cq = cq.where(Event.violation_type == f.violation_type.value)
                counts = dict(s.execute(cq.group_by(Event.person_id)).all())  # type: ignore[arg-type]
        out = [
            ViolationRow(
                event_id=r.event_id,
                time=r.time.isoformat(),
                date=self._local_date(r.time),
                point_id=r.point_id,
                violation_type=r.violation_type,
                person_id=r.person_id,
                name=caller.person_name(r.name),
                id_number=caller.id_number(r.id_number),
                community=r.community,
                tier=r.tier,
                count=int(counts.get(r.person_id, 0)) if r.person_id else 1,
            )
            for r in rows
        ]
        nxt = (
            encode_cursor([rows[-1].time.isoformat(), rows[-1].event_id], f, caller)
            if more and rows
            else None
        )
        audit(
            self.store,
            caller,
            "violations",
            {**f.as_params(), "cursor": "yes" if f.cursor else None, "total": total},
            len(out),
            client,
            persons=(r.person_id for r in out),
            status=200,
        )
        return Page(out, total, nxt, size)

    def persons(self, caller: Caller, f: QueryFilter, client: str | None = None) -> Page:
        """One page of persons in (count descending, person_id) order after ``f.cursor``; the total for the query."""
        community = caller.community_filter(f.community)
        after = decode_cursor(f.cursor, f, caller, 2) if f.cursor else None
        conds = [*_filter_conds(f, community), Person.merged_into.is_(None)]
        size = self._page_size(f)
        n = func.count(Event.event_id)
        q = (
            select(
                Person.person_id,
                Person.name,
                Person.id_number,
                Person.community,
                Person.employer,
                Person.tier,
                n.label("n"),
                func.min(Event.time).label("first"),
                func.max(Event.time).label("last"),
            )
            .join(Event, Event.person_id == Person.person_id)
            .where(*conds)
            .group_by(
                Person.person_id,
                Person.name,
                Person.id_number,
                Person.community,
                Person.employer,
                Person.tier,
            )
        )
        if after is not None:
            try:
                an, ap = int(after[0]), str(after[1])
            except (TypeError, ValueError):
                raise ValueError("cursor: not a cursor of this query (start again without cursor)") from None
            q = q.having(or_(n < an, and_(n == an, Person.person_id > ap)))
        q = q.order_by(n.desc(), Person.person_id).limit(size + 1)
        total_q = (
            select(func.count(func.distinct(Person.person_id)))
            .select_from(Person)
            .join(Event, Event.person_id == Person.person_id)
            .where(*conds)
        )
        with self.store.session() as s:
            rows = s.execute(q).all()
            more = len(rows) > size
            rows = rows[:size]
            total = int(s.scalar(total_q) or 0)
            pids = [r.person_id for r in rows]
            points: dict[str, set[str]] = {}
            types: dict[str, list[str]] = {}
            if pids:
                pq = (
                    select(Event.person_id, Event.point_id)
                    .where(Event.person_id.in_(pids), Event.time >= f.start, Event.time < f.end)
                    .distinct()
                )
                for pid, pt in s.execute(pq):
                    points.setdefault(str(pid), set()).add(pt)
                tq = (
                    select(Event.person_id, Event.violation_type, func.count())
                    .where(Event.person_id.in_(pids), Event.time >= f.start, Event.time < f.end)
                    .group_by(Event.person_id, Event.violation_type)
                )
                if f.point:
                    tq = tq.where(Event.point_id == f.point)
                for pid, vtype, k in s.execute(tq):
                    types.setdefault(str(pid), []).append(f"{vtype}:{int(k)}")
        from central_sync.storage.store import _aware

        out = [
            PersonRow(
                person_id=r.person_id,
                name=caller.person_name(r.name),
                id_number=caller.id_number(r.id_number),
                community=r.community,
                employer=r.employer,
                tier=r.tier,
                count=int(r.n),
                points=sorted(points.get(r.person_id, set())),
                first_date=self._local_date(_aware(r.first)),  # type: ignore[arg-type]
                last_date=self._local_date(_aware(r.last)),  # type: ignore[arg-type]
                types=sorted(types.get(r.person_id, [])),
            )
            for r in rows
        ]
        nxt = encode_cursor([int(rows[-1].n), rows[-1].person_id], f, caller) if more and rows else None
        audit(
            self.store,
            caller,
            "persons",
            {**f.as_params(), "cursor": "yes" if f.cursor else None, "total": total},
            len(out),
            client,
            persons=(r.person_id for r in out),
            status=200,
        )
        return Page(out, total, nxt, size)


@dataclass(frozen=True)
class Page:
    """One page of an answer: its rows, how many rows the whole query has (``total``), the cursor of the next page
    (``None`` on the last one) and the page size used (``limit`` capped at ``api.max_rows``)."""

    rows: list[Any]
    total: int
    next_cursor: str | None
    page_size: int


def _fingerprint(f: QueryFilter, caller: Caller) -> str:
    """What a cursor belongs to: the query's filters (not its page size) and the caller."""
    p = {k: v for k, v in f.as_params().items() if k != "limit"}
    return hashlib.sha256(json.dumps([p, caller.name], sort_keys=True).encode()).hexdigest()[:16]


def encode_cursor(key: list[Any], f: QueryFilter, caller: Caller) -> str:
    """An opaque cursor: the last row's sort key and the query's fingerprint (base64url JSON)."""
    raw = json.dumps({"k": key, "f": _fingerprint(f, caller)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, f: QueryFilter, caller: Caller, n: int) -> list[Any]:
    """The sort key in ``cursor``; ValueError naming ``cursor`` for a malformed one or one of another query."""
    bad = "cursor: not a cursor of this query (start again without cursor)"
    if len(cursor) > 512:
        raise ValueError(bad)
    try:
        d = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        key, fp = d["k"], d["f"]
    except (ValueError, TypeError, KeyError):
        raise ValueError(bad) from None
    if fp != _fingerprint(f, caller) or not isinstance(key, list) or len(key) != n:
        raise ValueError(bad)
    return key


def _cursor_time(v: Any) -> datetime:
    try:
        t = datetime.fromisoformat(str(v))
    except ValueError:
        raise ValueError("cursor: not a cursor of this query (start again without cursor)") from None
    if t.tzinfo is None:
        raise ValueError("cursor: not a cursor of this query (start again without cursor)")
    return t


def as_dicts(rows: list[ViolationRow] | list[PersonRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
