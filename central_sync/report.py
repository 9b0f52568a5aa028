"""Frequency statistics (clause 8.2.3): per person, per point, per date and per count band.

:func:`frequency_statistics` aggregates the violations of a date range (local dates in
``timezone``); :func:`write_report` writes ``by_person.csv``, ``by_point.csv``, ``by_date.csv``,
``by_band.csv`` and a self-contained ``report.html`` (no scripts, no external resources).
Count bands follow table 1: 1, 2, 3, 4–7, 8–30, >30 violations in the range.
ID numbers are never written to the report; names only for enrolled persons.
"""

from __future__ import annotations

import csv
import html
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from central_sync.storage.models import Event, Person
from central_sync.storage.store import CentralStore

BANDS: list[tuple[str, int, int | None]] = [
    ("1", 1, 1),
    ("2", 2, 2),
    ("3", 3, 3),
    ("4-7", 4, 7),
    ("8-30", 8, 30),
    (">30", 31, None),
]


def band_of(n: int) -> str:
    for name, lo, hi in BANDS:
        if n >= lo and (hi is None or n <= hi):
            return name
    return "0"


@dataclass
class PersonStat:
    person_id: str
    name: str | None
    community: str | None
    kind: str
    tier: str
    count: int = 0
    points: set[str] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None
    types: Counter[str] = field(default_factory=Counter)  #: violations by type (no_helmet, passenger, ...)

    def types_text(self) -> str:
        return ";".join(f"{k}:{n}" for k, n in sorted(self.types.items()))


@dataclass
class FrequencyStatistics:
    start: datetime
    end: datetime
    total: int
    unidentified: int
    persons: list[PersonStat]
    by_point: dict[str, tuple[int, int]]  # point -> (violations, distinct persons)
    by_date: dict[str, int]
    by_band: dict[str, int]  # band -> persons
    by_type: dict[str, int]


def frequency_statistics(store: CentralStore, start: datetime, end: datetime, tz: str) -> FrequencyStatistics:
    zone = ZoneInfo(tz)
    persons: dict[str, PersonStat] = {}
    point_n: Counter[str] = Counter()
    point_p: dict[str, set[str]] = defaultdict(set)
    by_date: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    total = unidentified = 0
    q = (
        select(
            Event.time,
            Event.point_id,
            Event.violation_type,
            Event.person_id,
            Person.name,
            Person.community,
            Person.kind,
            Person.tier,
        )
        .outerjoin(Person, Person.person_id == Event.person_id)
        .where(Event.time >= start, Event.time < end)
        .order_by(Event.time)
    )
    with store.session() as s:
        for t, point, vtype, pid, name, community, kind, tier in s.execute(q).yield_per(5000):
            total += 1
            by_date[t.astimezone(zone).date().isoformat()] += 1
            by_type[vtype] += 1
            point_n[point] += 1
            if pid is None:
                unidentified += 1
                continue
            point_p[point].add(pid)
            p = persons.get(pid)
            if p is None:
                p = persons[pid] = PersonStat(
                    pid,
                    name if kind == "enrolled" else None,
                    community,
                    kind or "listed",
                    tier or "none",
                    first=t,
                )
            p.count += 1
            p.types[vtype] += 1
            p.points.add(point)
            p.last = t
    bands = Counter(band_of(p.count) for p in persons.values())
    return FrequencyStatistics(
        start=start,
        end=end,
        total=total,
        unidentified=unidentified,
        persons=sorted(persons.values(), key=lambda p: (-p.count, p.person_id)),
        by_point={k: (point_n[k], len(point_p[k])) for k in sorted(point_n)},
        by_date=dict(sorted(by_date.items())),
        by_band={b: bands.get(b, 0) for b, _, _ in BANDS},
        by_type=dict(by_type),
    )


def write_report(stats: FrequencyStatistics, out: Path, tz: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    zone = ZoneInfo(tz)
    files = []

    def w(name: str, header: list[str], rows: list[list[object]]) -> None:
        p = out / name
        with p.open("w", newline="", encoding="utf-8") as f:
            cw = csv.writer(f)
            cw.writerow(header)
            cw.writerows(rows)
        files.append(p)

    def local(t: datetime | None) -> str:
        return t.astimezone(zone).isoformat(timespec="seconds") if t else ""

    w(
        "by_person.csv",
        [
            "person_id",
            "name",
            "community",
            "file",
            "tier",
            "count",
            "band",
            "types",
            "points",
            "first",
            "last",
        ],
        [
            [
                p.person_id,
                p.name or "",
                p.community or "",
                p.kind,
                p.tier,
                p.count,
                band_of(p.count),
                p.types_text(),
                ";".join(sorted(p.points)),
                local(p.first),
                local(p.last),
            ]
            for p in stats.persons
        ],
    )
    w(
        "by_point.csv",
        ["point_id", "violations", "persons"],
        [[k, n, m] for k, (n, m) in stats.by_point.items()],
    )
    w("by_date.csv", ["date", "violations"], [[k, n] for k, n in stats.by_date.items()])
    w("by_band.csv", ["band", "persons"], [[k, n] for k, n in stats.by_band.items()])
    (out / "report.html").write_text(render_html(stats, tz), encoding="utf-8")
    files.append(out / "report.html")
    return files


def render_html(stats: FrequencyStatistics, tz: str) -> str:
    zone = ZoneInfo(tz)
    e = html.escape

    def table(head: list[str], rows: list[list[object]]) -> str:
        th = "".join(f"<th>{e(h)}</th>" for h in head)
        trs = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"

    def bars(d: dict[str, int]) -> str:
        mx = max(d.values(), default=0) or 1
        return "".join(
            f'<div class="bar"><span class="k">{e(k)}</span><span class="v" style="width:{int(300 * v / mx)}px"></span> {v}</div>'
            for k, v in d.items()
        )

    period = f"{stats.start.astimezone(zone).date()} – {stats.end.astimezone(zone).date()} (exclusive), {tz}"
    top = [
        [
            p.person_id,
            p.name or "",
            p.community or "",
            p.tier,
            p.count,
            band_of(p.count),
            p.types_text(),
            ", ".join(sorted(p.points)),
        ]
        for p in stats.persons[:200]
    ]
    return f"""<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>AnQi 违法频次统计 / violation frequency</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
th{{background:#f3f3f3}}.bar{{font-size:13px;margin:2px 0}}.bar .k{{display:inline-block;width:110px}}.bar .v{{display:inline-block;height:12px;background:#4a7ebb}}</style></head><body>
<h1>违法频次统计 · Violation frequency report</h1>
<p>Period: {e(period)}. Violations: <b>{stats.total}</b>, identified persons: <b>{len(stats.persons)}</b>, without an identified face: <b>{stats.unidentified}</b>.</p>
<h2>By count band (persons)</h2>{bars(stats.by_band)}
<h2>By date</h2>{bars(stats.by_date)}
<h2>By point</h2>{table(["point", "violations", "persons"], [[k, n, m] for k, (n, m) in stats.by_point.items()])}
<h2>By type</h2>{table(["type", "violations"], [[k, n] for k, n in sorted(stats.by_type.items())])}
<h2>Persons (top 200 by count)</h2>{table(["person", "name", "community", "tier", "count", "band", "types", "points"], top)}
<p><small>ID numbers are not part of this report. Generated by anqi-central report.</small></p></body></html>
"""
