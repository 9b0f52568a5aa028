"""Correcting person files (issue 23 point 2: "no tool to unmerge or reassign a wrong match"), on SQLite and a real
PostgreSQL, the CLI as a real subprocess: an unknown file merged into an enrolled person by a look-alike enrolment
photo is unmerged, and a later event matched to the wrong person is reassigned, each with who, when and why on
record; tiers are recomputed and the tasks the wrong match caused are withdrawn (notice published), while the right
person gets the tasks once."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from central_sync.config import CentralConfig
from central_sync.corrections import CorrectionError, changes, reassign_events, unmerge
from central_sync.dispositions import DispositionDesk
from central_sync.identity import EMBEDDING_DIM, EnrolmentRecord, to_blob
from central_sync.persons import enrol_embeddings, load_resolver
from central_sync.storage.models import AuditEntry, Embedding, Event, Person, PersonFileChange, Task
from central_sync.storage.store import CentralStore, ViolationRecord

ROOT = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    cfgf = tmp_path / "central.yaml"
    cfgf.write_text(f"database:\n  url: '{db_url}'\nmedia:\n  dir: '{tmp_path / 'media'}'\n")
    return subprocess.run(
        [sys.executable, "-m", "central_sync.cli", args[0], "--config", str(cfgf), *args[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _unit(rng: np.random.Generator, base: np.ndarray | None = None, noise: float = 0.0) -> np.ndarray:
    v = rng.normal(size=EMBEDDING_DIM) if base is None else base + noise * rng.normal(size=EMBEDDING_DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _event(store: CentralStore, person: str, t: datetime, vec: np.ndarray) -> str:
    eid = str(uuid.uuid4())
    store.add_violations([ViolationRecord(eid, "no_helmet", t, person, point_id="pt-1", face_found=True)])
    with store.session() as s:
        store.add_embedding(s, person, "event", "sface", to_blob(vec), eid)
    return eid


def _tasks(store: CentralStore, person: str) -> list[tuple[str, str, str]]:
    with store.session() as s:
        return sorted(
            (t.tier, t.kind, t.status) for t in s.scalars(select(Task).where(Task.person_id == person))
        )


def test_unmerge_and_reassign_with_audit_recompute_tiers_and_withdraw_tasks(
    store: CentralStore, db_url: str, tmp_path: Path
) -> None:
    cfg = CentralConfig()
    sent: list[tuple[str, dict[str, Any]]] = []

    def publish(topic: str, data: str | bytes) -> bool:
        sent.append((topic, json.loads(data)))
        return True

    desk = DispositionDesk(cfg, store, publish=publish)
    rng = np.random.default_rng(7)
    rider = _unit(rng)
    now = datetime.now(timezone.utc)
    # an unknown rider, three violations this week: occasional, three tasks
    with store.session() as s:
        store.ensure_person(s, "U-rider", kind="unknown")
    own = [
        _event(store, "U-rider", now - timedelta(days=3, hours=i), _unit(rng, rider, 0.02)) for i in range(3)
    ]
    desk.reassess("U-rider", now)
    assert [k for _, k, _ in _tasks(store, "U-rider")] == [
        "case_study_link",
        "sms_reminder",
        "voice_reminder",
    ]
    # a look-alike is enrolled: his photo matches the rider's file, which is merged into him
    resolver = load_resolver(store, cfg)
    merged = enrol_embeddings(
        store, cfg, resolver, EnrolmentRecord("P-lookalike", name="Zhao Liu"), _unit(rng, rider, 0.05)[None]
    )
    assert merged == 1
    desk.reassess("P-lookalike", now)
    # the rider comes by again and his face now matches the look-alike's photo: 4 in 7 days, frequent tasks
    e4 = _event(store, "P-lookalike", now - timedelta(hours=2), _unit(rng, rider, 0.02))
    desk.reassess("P-lookalike", now)
    assert ("frequent", "home_visit", "open") in _tasks(store, "P-lookalike")
    frequent_tasks = [t for t in _tasks(store, "P-lookalike") if t[0] == "frequent"]
    assert len(frequent_tasks) == 2

    # before: no tool at all. Now: unmerge, recorded with who and why
    r = _cli(
        tmp_path,
        db_url,
        "unmerge",
        "--person",
        "U-rider",
        "--by",
        "officer Wang",
        "--reason",
        "a different man",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["moved"] == {"events": 3, "embeddings": 3, "dispositions": 0, "tasks": 3}
    assert out["skipped"] == {"events": 0, "embeddings": 0, "dispositions": 0, "tasks": 0}
    assert out["tiers"] == {"P-lookalike": ["frequent", "occasional"], "U-rider": ["none", "occasional"]}
    assert (
        len(out["withdrawn_tasks"]) == 2 and out["new_tasks"] == []
    )  # the rider's own tasks came back with him
    with store.session() as s:
        assert s.get(Person, "U-rider").merged_into is None  # type: ignore[union-attr]
        assert sorted(s.scalars(select(Event.event_id).where(Event.person_id == "U-rider"))) == sorted(own)
        assert list(s.scalars(select(Event.event_id).where(Event.person_id == "P-lookalike"))) == [e4]
    assert _tasks(store, "U-rider") == [
        ("occasional", "case_study_link", "open"),
        ("occasional", "sms_reminder", "open"),
        ("occasional", "voice_reminder", "open"),
    ]
    assert [t for t in _tasks(store, "P-lookalike") if t[0] == "frequent"] == [
        (tier, kind, "cancelled") for tier, kind, _ in frequent_tasks
    ]

    # the later event is reassigned to the rider: he becomes frequent and gets the tasks, once
    r = _cli(
        tmp_path,
        db_url,
        "reassign",
        "--event",
        e4,
        "--to",
        "U-rider",
        "--by",
        "officer Wang",
        "--reason",
        "same rider",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["tiers"] == {"P-lookalike": ["occasional", "none"], "U-rider": ["occasional", "frequent"]}
    assert out["moved"] == {"events": 1, "embeddings": 1} and len(out["new_tasks"]) == 2
    assert [k for tier, k, st in _tasks(store, "U-rider") if tier == "frequent" and st == "open"] == [
        "education_by_community",
        "home_visit",
    ]
    with store.session() as s:
        assert s.scalar(select(Embedding.person_id).where(Embedding.event_id == e4)) == "U-rider"

    # the withdrawn tasks' notices and the new tasks go out through the running consumer's desk
    assert desk.publish_pending() == 4
    notices = [p for t, p in sent if t.endswith("/central/tasks/cancelled")]
    assert sorted(n["kind"] for n in notices) == ["education_by_community", "home_visit"]
    assert all(n["person_id"] == "P-lookalike" and n["reason"] == "identity_corrected" for n in notices)
    assert desk.publish_pending() == 0
    # a withdrawn task takes no feedback
    with store.session() as s:
        withdrawn = s.scalar(select(Task.task_id).where(Task.status == "cancelled").limit(1))
    with pytest.raises(ValueError, match="already cancelled"):
        desk.record_feedback({"task_id": withdrawn, "status": "done", "time": now.isoformat()})

    # the record: who, when, why, for the merge (by enrolment), the unmerge and the reassignment
    hist = changes(store, "U-rider")
    assert [(h["action"], h["by"], h["reason"]) for h in hist] == [
        ("reassign", "officer Wang", "same rider"),
        ("unmerge", "officer Wang", "a different man"),
        ("merge", "enrol", "face matched the enrolment photos"),
    ]
    assert hist[2]["undone_by"] == hist[1]["change"]
    r = _cli(tmp_path, db_url, "changes", "--person", "P-lookalike")
    assert [json.loads(line)["action"] for line in r.stdout.splitlines()] == ["reassign", "unmerge", "merge"]
    with store.session() as s:
        audited = [
            (a.action, a.actor, a.persons) for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]
    assert audited == [
        ("person_unmerge", "officer Wang", ["P-lookalike", "U-rider"]),
        ("person_reassign", "officer Wang", ["P-lookalike", "U-rider"]),
    ]
    # re-enrolling the look-alike does not merge the rider's file into him again
    again = enrol_embeddings(
        store, cfg, load_resolver(store, cfg), EnrolmentRecord("P-lookalike"), _unit(rng, rider, 0.05)[None]
    )
    assert again == 0


def test_corrections_refuse_what_they_cannot_do_naming_the_option(
    store: CentralStore, db_url: str, tmp_path: Path
) -> None:
    cfg = CentralConfig()
    desk = DispositionDesk(cfg, store)
    rng = np.random.default_rng(1)
    now = datetime.now(timezone.utc)
    with store.session() as s:
        s.add(Person(person_id="E1", kind="enrolled", tier="none"))
        s.add(Person(person_id="E2", kind="enrolled", tier="none"))
        s.add(Person(person_id="U-old", kind="unknown", tier="none", merged_into="E1"))  # merged before 0003
    e1 = _event(store, "E1", now - timedelta(hours=1), _unit(rng))
    e2 = _event(store, "E2", now - timedelta(hours=1), _unit(rng))
    with pytest.raises(CorrectionError, match="--person: no record of what the merge.*reassign"):
        unmerge(store, cfg, desk, "U-old", "w", "reason")
    with pytest.raises(CorrectionError, match="--person: 'E1' is not merged"):
        unmerge(store, cfg, desk, "E1", "w", "reason")
    with pytest.raises(CorrectionError, match="--person: no person file 'X'"):
        unmerge(store, cfg, desk, "X", "w", "reason")
    with pytest.raises(CorrectionError, match="--reason"):
        reassign_events(store, cfg, desk, [e1], "E2", "w", " ")
    with pytest.raises(CorrectionError, match="--by"):
        reassign_events(store, cfg, desk, [e1], "E2", "", "reason")
    with pytest.raises(CorrectionError, match="--to: no person file 'P-999'"):
        reassign_events(store, cfg, desk, [e1], "P-999", "w", "reason")
    with pytest.raises(CorrectionError, match="already in 'E1'"):
        reassign_events(store, cfg, desk, [e1], "E1", "w", "reason")
    with pytest.raises(CorrectionError, match="different persons"):
        reassign_events(store, cfg, desk, [e1, e2], "new", "w", "reason")
    with pytest.raises(CorrectionError, match="--event: no event 'nope'"):
        reassign_events(store, cfg, desk, ["nope"], "E2", "w", "reason")
    r = _cli(tmp_path, db_url, "reassign", "--event", e1, "--to", "E2", "--by", "w")
    assert r.returncode == 2 and "--reason" in r.stderr
    with store.session() as s:
        assert s.scalar(select(Event.person_id).where(Event.event_id == e1)) == "E1"
        assert list(s.scalars(select(PersonFileChange))) == []
    # to a new unknown file, and to a merged file: follows the merge to its target
    c = reassign_events(store, cfg, desk, [e1], "new", "w", "not him")
    assert c.target.startswith("U-") and c.tiers == {"E1": ["none", "none"], c.target: ["none", "occasional"]}
    c = reassign_events(store, cfg, desk, [e1], "U-old", "w", "it was him after all")
    assert c.target == "E1"
