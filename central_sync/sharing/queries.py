"""The data-sharing queries (7.2.2), one implementation for HTTP and SOAP.

Violations and persons by date range, point, community, tier and violation type; fields: name, ID number, point,
date, count, village/community. :class:`~central_sync.sharing.access.Caller` decides rows
(own community only) and fields (ID number / name masked); every call is audited.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

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


class SharingQueries:
    def __init__(self, cfg: CentralConfig, store: CentralStore):
        self.cfg = cfg
        self.store = store
        self.zone = ZoneInfo(cfg.timezone)

    def _local_date(self, t: datetime) -> str:
        return t.astimezone(self.zone).date().isoformat()

    def violations(self, caller: Caller, f: QueryFilter, client: str | None = None) -> list[ViolationRow]:
        community = caller.community_filter(f.community)
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
            .where(Event.time >= f.start, Event.time < f.end)
        )
        if f.point:
            q = q.where(Event.point_id == f.point)
        if community is not None:
            q = q.where(Person.community == community)
        if f.tier is not None:
            q = q.where(Person.tier == f.tier.value)
        if f.violation_type is not None:
            q = q.where(Event.violation_type == f.violation_type.value)
        q = q.order_by(Event.time, Event.event_id).limit(min(f.limit, self.cfg.api.max_rows))
        with self.store.session() as s:
            rows = s.execute(q).all()
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
        audit(
            self.store,
            caller,
            "violations",
            f.as_params(),
            len(out),
            client,
            persons=(r.person_id for r in out),
            status=200,
        )
        return out

    def persons(self, caller: Caller, f: QueryFilter, client: str | None = None) -> list[PersonRow]:
        community = caller.community_filter(f.community)
        q = (
            select(
                Person.person_id,
                Person.name,
                Person.id_number,
                Person.community,
                Person.employer,
                Person.tier,
                func.count(Event.event_id).label("n"),
                func.min(Event.time).label("first"),
                func.max(Event.time).label("last"),
            )
            .join(Event, Event.person_id == Person.person_id)
            .where(Event.time >= f.start, Event.time < f.end, Person.merged_into.is_(None))
        )
        if f.point:
            q = q.where(Event.point_id == f.point)
        if community is not None:
            q = q.where(Person.community == community)
        if f.tier is not None:
            q = q.where(Person.tier == f.tier.value)
        if f.violation_type is not None:
            q = q.where(Event.violation_type == f.violation_type.value)
        q = (
            q.group_by(
                Person.person_id,
                Person.name,
                Person.id_number,
                Person.community,
                Person.employer,
                Person.tier,
            )
            .order_by(func.count(Event.event_id).desc(), Person.person_id)
            .limit(min(f.limit, self.cfg.api.max_rows))
        )
        with self.store.session() as s:
            rows = s.execute(q).all()
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
                for pid, vtype, n in s.execute(tq):
                    types.setdefault(str(pid), []).append(f"{vtype}:{int(n)}")
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
        audit(
            self.store,
            caller,
            "persons",
            f.as_params(),
            len(out),
            client,
            persons=(r.person_id for r in out),
            status=200,
        )
        return out


def as_dicts(rows: list[ViolationRow] | list[PersonRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
