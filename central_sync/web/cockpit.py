"""Cockpit queries (驾驶舱): counts by type and point, daily trend, newest events, devices, tiers, open tasks.

Every query is an index range on ``events.time`` (or a group-by on small tables), so it stays fast with a
million stored events (``benchmarks/central.py --cockpit``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from central_sync.storage.models import Event, Media, Person, Task
from central_sync.storage.store import CentralStore
from central_sync.storage.webtables import PassHour

TYPE_ZH = {
    "no_helmet": "未戴头盔",
    "wrong_way": "逆行",
    "red_light": "闯红灯",
    "passenger": "违规载人",
}
TIER_ZH = {"none": "无", "occasional": "偶发", "frequent": "频繁", "repeat": "屡犯"}


#: the deciding frame the cockpit shows: the edge's preview.jpg, every face blurred (the violator's too) - the
#: big screen is seen by many; an event without one (an older edge) is shown without a picture
PREVIEW = "preview.jpg"


def local_midnight(now: datetime, tz: str) -> datetime:
    z = ZoneInfo(tz)
    loc = now.astimezone(z)
    return loc.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(timezone.utc)


def counts_by_type(store: CentralStore, since: datetime) -> dict[str, int]:
    with store.session() as s:
        rows = s.execute(
            select(Event.violation_type, func.count())
            .where(Event.time >= since)
            .group_by(Event.violation_type)
        ).all()
    return {t: int(n) for t, n in rows}


def counts_by_point(store: CentralStore, since: datetime) -> dict[str, int]:
    with store.session() as s:
        rows = s.execute(
            select(Event.point_id, func.count()).where(Event.time >= since).group_by(Event.point_id)
        ).all()
    return {p or "-": int(n) for p, n in rows}


def daily_trend(store: CentralStore, now: datetime, tz: str, days: int = 30) -> list[tuple[str, int]]:
    """Violations per local day, oldest first (one index range count per day)."""
    today = local_midnight(now, tz)
    z = ZoneInfo(tz)
    out = []
    with store.session() as s:
        for i in range(days - 1, -1, -1):
            a = (today.astimezone(z) - timedelta(days=i)).astimezone(timezone.utc)
            b = (today.astimezone(z) - timedelta(days=i - 1)).astimezone(timezone.utc)
            n = s.execute(select(func.count()).where(Event.time >= a, Event.time < b)).scalar_one()
            out.append((a.astimezone(z).strftime("%m-%d"), int(n)))
    return out


def newest_events(
    store: CentralStore, limit: int = 10, after: datetime | None = None, late: timedelta = timedelta(days=1)
) -> list[dict[str, Any]]:
    """The newest events by event time, or those received after ``after`` (the live stream) whose event
    time is within ``late`` of it: the time index bounds the scan (received_at has no index)."""
    q = select(
        Event.event_id, Event.time, Event.point_id, Event.violation_type, Event.device_id, Event.received_at
    )
    if after is not None:
        q = q.where(Event.time >= after - late, Event.received_at > after).order_by(Event.received_at.desc())
    else:
        q = q.order_by(Event.time.desc())
    with store.session() as s:
        rows = s.execute(q.limit(limit)).all()
        ids = [r.event_id for r in rows]
        frames = (
            set(
                s.execute(select(Media.event_id).where(Media.event_id.in_(ids), Media.name == PREVIEW))
                .scalars()
                .all()
            )
            if ids
            else set()
        )
    return [
        {
            "event_id": r.event_id,
            "time": r.time.isoformat(),
            "point": r.point_id,
            "type": r.violation_type,
            "type_zh": TYPE_ZH.get(r.violation_type, r.violation_type),
            "device": r.device_id,
            "received_at": r.received_at.isoformat(),
            "frame": r.event_id in frames,
        }
        for r in rows
    ]


def devices(
    store: CentralStore, now: datetime, online_within: timedelta = timedelta(minutes=10), days: int = 30
) -> list[dict[str, Any]]:
    """Devices with events in the last ``days``, online when their newest event arrived within
    ``online_within`` (heartbeats are not stored centrally yet)."""
    with store.session() as s:
        rows = s.execute(
            select(Event.device_id, func.max(Event.received_at), func.count())
            .where(Event.time >= now - timedelta(days=days))
            .group_by(Event.device_id)
        ).all()
    out = []
    for d, last, n in rows:
        last = last if last.tzinfo else last.replace(tzinfo=timezone.utc)
        out.append(
            {"device": d or "-", "last": last.isoformat(), "online": now - last <= online_within, "events": n}
        )
    return sorted(out, key=lambda x: x["device"])


def tier_distribution(store: CentralStore) -> dict[str, int]:
    with store.session() as s:
        rows = s.execute(
            select(Person.tier, func.count()).where(Person.merged_into.is_(None)).group_by(Person.tier)
        ).all()
    return {t: int(n) for t, n in rows}


def open_tasks_by_community(store: CentralStore) -> dict[str, int]:
    with store.session() as s:
        rows = s.execute(
            select(Person.community, func.count())
            .select_from(Task)
            .join(Person, Person.person_id == Task.person_id)
            .where(Task.status == "open")
            .group_by(Person.community)
        ).all()
    return {c or "未登记": int(n) for c, n in rows}


def safe_riding(store: CentralStore, since: datetime) -> dict[str, dict[str, Any]]:
    """Per point, from the edges' pass counters of the hours from ``since``'s hour on: riders through
    the zone, violators among them, the safe-riding rate (riders - violators) / riders and the helmet rate
    (riders - no_helmet) / riders (None without riders), and the period the intervals cover."""
    with store.session() as s:  # the hourly sums (web_pass_hours): ``since`` counts from its hour
        rows = s.execute(
            select(
                PassHour.point_id,
                func.sum(PassHour.riders),
                func.sum(PassHour.violators),
                func.sum(PassHour.no_helmet),
                func.min(PassHour.hour),
                func.max(PassHour.last_end),
            )
            .where(PassHour.hour >= since.replace(minute=0, second=0, microsecond=0))
            .group_by(PassHour.point_id)
        ).all()
    out = {}
    for point, riders, violators, no_helmet, first, last in rows:
        riders, violators, no_helmet = int(riders or 0), int(violators or 0), int(no_helmet or 0)
        out[point] = {
            "riders": riders,
            "violators": violators,
            "no_helmet": no_helmet,
            "rate": (riders - violators) / riders if riders else None,
            "helmet_rate": (riders - no_helmet) / riders if riders else None,
            "from": _utc(first).isoformat(),
            "to": _utc(last).isoformat(),
        }
    return dict(sorted(out.items()))


def _utc(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def snapshot(store: CentralStore, tz: str, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    today = local_midnight(now, tz)
    return {
        "today": counts_by_type(store, today),
        "d7": counts_by_type(store, today - timedelta(days=6)),
        "d30": counts_by_type(store, today - timedelta(days=29)),
        "points30": counts_by_point(store, today - timedelta(days=29)),
        "trend": daily_trend(store, now, tz),
        "feed": newest_events(store),
        "devices": devices(store, now),
        "tiers": tier_distribution(store),
        "tasks": open_tasks_by_community(store),
        "safe7": safe_riding(store, today - timedelta(days=6)),
    }


def trend_svg(trend: list[tuple[str, int]], w: int = 860, h: int = 260) -> str:
    """A server-rendered bar chart (no script library)."""
    top = max([n for _, n in trend] + [1])
    bw = w / max(len(trend), 1)
    parts = [f'<svg class="trend" viewBox="0 0 {w} {h + 30}" width="100%" role="img" aria-label="30天趋势">']
    for i, (day, n) in enumerate(trend):
        bh = (h - 20) * n / top
        x = i * bw
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{h - bh:.1f}" width="{bw - 4:.1f}" height="{bh:.1f}" fill="#3fa7ff"><title>{day}: {n}</title></rect>'
        )
        if i % 5 == 0 or i == len(trend) - 1:
            anchor = "end" if i == len(trend) - 1 else "start" if i == 0 else "middle"
            tx = x + bw if anchor == "end" else x if anchor == "start" else x + bw / 2
            parts.append(
                f'<text x="{tx:.1f}" y="{h + 22}" fill="#9fb3c8" font-size="16" text-anchor="{anchor}">{day}</text>'
            )
    parts.append(f'<text x="4" y="18" fill="#9fb3c8" font-size="16">最高 {top}</text></svg>')
    return "".join(parts)
