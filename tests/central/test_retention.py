"""Retention per kind of data and erasure of a person, on a real store (SQLite and PostgreSQL) filled by the
real consumer (events with faces, verified media files, person files, tiers and tasks)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import func, select

from anqi_contract import protocol as P
from anqi_contract.event import FaceInfo
from central_sync.cli import main
from central_sync.config import ConfigError, parse_config
from central_sync.consumer import CentralConsumer
from central_sync.retention import apply_retention, erase_person
from central_sync.storage.models import AuditEntry, Embedding, Event, Media, Person, Task, TierChange

NOW = datetime(2027, 6, 1, 8, 0, tzinfo=timezone.utc)


def _face(person: int) -> FaceInfo:
    v = np.random.default_rng(1000 + person).normal(size=128)
    return FaceInfo(
        found=True, quality=0.9, embedding_model="sface", embedding=[float(x) for x in v / np.linalg.norm(v)]
    )


def _cfg(tmp: Path, db_url: str, **retention: int) -> dict[str, Any]:
    return {
        "database": {"url": db_url},
        "media": {"dir": str(tmp / "media")},
        "retention": {
            "events_days": 400,
            "media_days": 30,
            "unknown_person_days": 60,
            "audit_days": 365,
            **retention,
        },
    }


def _fill(tmp: Path, cons: CentralConsumer, make_event: Any) -> dict[str, list[Any]]:
    """Person 0: 4 events 200 days ago; person 1: 4 events 10 days ago; person 2: one event 500 days ago."""
    plan = {0: [200] * 4, 1: [10] * 4, 2: [500]}
    out: dict[str, list[Any]] = {}
    i = 0
    for person, ages in plan.items():
        for j, age in enumerate(ages):
            ev, files = make_event(tmp, i, {"face.jpg": 3000})
            ev = ev.model_copy(
                update={"face": _face(person), "time": NOW - timedelta(days=age, minutes=j), "track_id": i}
            )
            msgs = [
                (P.media_topic("anqi/v1", ev.site_id, ev.device_id, ev.event_id, "face.jpg"), payload)
                for _, payload in P.iter_media_chunks(ev.event_id, "face.jpg", files["face.jpg"], 1 << 20)
            ]
            msgs.append((P.event_topic("anqi/v1", ev.site_id, ev.device_id), P.encode_event(ev)))
            cons.handle_many(msgs)
            out.setdefault(str(person), []).append(ev)
            i += 1
    return out


def _count(cons: CentralConsumer, model: Any) -> int:
    with cons.store.session() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def test_retention_removes_each_kind_after_its_time_and_logs_it(
    tmp_path: Path, db_url: str, make_event: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = parse_config(_cfg(tmp_path, db_url), "central.yaml", tmp_path)
    cons = CentralConsumer(cfg, media_grace_s=0.1, clock=lambda: NOW)
    evs = _fill(tmp_path, cons, make_event)
    assert _count(cons, Event) == 9 and _count(cons, Media) == 9
    with cons.store.session() as s:
        s.add(AuditEntry(time=NOW - timedelta(days=400), actor="old", role="admin", action="query"))
        pids = {e: p for e, p in s.execute(select(Event.event_id, Event.person_id))}
    assert len(set(pids.values())) == 3
    with caplog.at_level(logging.INFO, logger="anqi.central.retention"):
        rep = apply_retention(cons.store, cfg, NOW)
    lines = {r.fields["kind"]: r.fields for r in caplog.records if r.getMessage() == "retention_removed"}  # type: ignore[attr-defined]
    # media older than 30 days: persons 0 and 2 (5 files); events older than 400 days: person 2's one
    assert rep.events == 1 and lines["events"]["count"] == 1
    assert rep.media_files == 5 and lines["media"]["count"] == 5 and lines["media"]["bytes"] == 5 * 3000
    assert rep.audit_entries == 1 and lines["audit"]["count"] == 1
    # person 2 (unknown, last violation 500 days ago) goes; person 0 (200 days) too (> 60 days); person 1 stays
    assert rep.unknown_persons == 2 and lines["unknown_persons"]["count"] == 2
    with cons.store.session() as s:
        left_persons = {p for (p,) in s.execute(select(Person.person_id))}
        assert left_persons == {pids[str(evs["1"][0].event_id)]}
        assert {e for (e,) in s.execute(select(Media.event_id))} == {str(e.event_id) for e in evs["1"]}
        assert not s.execute(select(Embedding).where(Embedding.person_id.not_in(left_persons))).first()
        audit = s.execute(select(AuditEntry).where(AuditEntry.action == "retention")).scalar_one()
        assert audit.params["events"] == 1 and audit.params["media_files"] == 5
    for e in evs["0"] + evs["2"]:
        assert not (tmp_path / "media" / str(e.event_id)).exists()
    for e in evs["1"]:
        assert (tmp_path / "media" / str(e.event_id) / "face.jpg").is_file()
    # person 0's events outlive its unknown file (their own retention), unlinked from it
    assert _count(cons, Event) == 8
    # run again: nothing more to do
    assert apply_retention(cons.store, cfg, NOW).events == 0
    cons.store.close()


def test_erase_a_person_removes_everything_and_keeps_only_that_it_happened(
    tmp_path: Path, db_url: str, make_event: Any
) -> None:
    data = _cfg(tmp_path, db_url)
    cfg = parse_config(data, "central.yaml", tmp_path)
    cons = CentralConsumer(cfg, media_grace_s=0.1, clock=lambda: NOW)
    evs = _fill(tmp_path, cons, make_event)
    with cons.store.session() as s:
        target = s.execute(
            select(Event.person_id).where(Event.event_id == str(evs["1"][0].event_id))
        ).scalar_one()
        assert target is not None
        tasks_before = s.execute(
            select(func.count()).select_from(Task).where(Task.person_id == target)
        ).scalar_one()
    assert tasks_before >= 1  # four in a week: the person has disposition tasks
    cons.store.close()
    (tmp_path / "central.yaml").write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(
        main,
        [
            "erase",
            "--config",
            str(tmp_path / "central.yaml"),
            "--person",
            target,
            "--by",
            "officer-7",
            "--reason",
            "REQ-2027-118",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "4 event(s), 4 media file(s)" in res.output
    cfg2 = parse_config(data, "central.yaml", tmp_path)
    cons2 = CentralConsumer(cfg2, media_grace_s=0.1, clock=lambda: NOW)
    with cons2.store.session() as s:
        assert s.get(Person, target) is None
        for model in (Task, TierChange, Embedding):
            assert not s.execute(select(model).where(model.person_id == target)).first(), model
        assert not s.execute(
            select(Event).where(Event.event_id.in_([str(e.event_id) for e in evs["1"]]))
        ).first()
        audit = s.execute(select(AuditEntry).where(AuditEntry.action == "erase_person")).scalar_one()
        assert (
            audit.actor == "officer-7" and audit.params["person_id"] == target and audit.params["events"] == 4
        )
        assert audit.params["reason"] == "REQ-2027-118"
        assert audit.params["embeddings"] == 4 and audit.params["tasks"] == tasks_before
        # counts and references only: no name, no face, no vector
        assert all(isinstance(v, (int, str)) and len(str(v)) < 64 for v in audit.params.values()), (
            audit.params
        )
    for e in evs["1"]:
        assert not (tmp_path / "media" / str(e.event_id)).exists()
    assert _count(cons2, Event) == 5  # the others' events are untouched
    res = CliRunner().invoke(
        main, ["erase", "--config", str(tmp_path / "central.yaml"), "--person", target, "--by", "x"]
    )
    assert res.exit_code == 1 and "no person file" in res.output
    assert erase_person(cons2.store, cfg2, "nobody", "x") is None
    cons2.store.close()


def test_events_retention_shorter_than_the_tiers_window_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"retention.events_days \(100\) is shorter than tiers.repeat_window_days"
    ):
        parse_config({"retention": {"events_days": 100}}, "central.yaml", tmp_path)
