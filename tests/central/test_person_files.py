"""Person files that stay right (issue 23 point 2), against real SQLite and PostgreSQL: dispositions only for
existing persons (a merged file forwards to its target), feedback once per task state change and never from the
future. The CLI runs as a real subprocess (``python -m central_sync.cli``) on the same database."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from central_sync.config import CentralConfig
from central_sync.dispositions import DispositionDesk
from central_sync.identity import (
    EMBEDDING_DIM,
    EnrolmentError,
    EnrolmentRecord,
    read_enrolment_csv,
    validate_id_number,
)
from central_sync.persons import enrol_embeddings, load_resolver
from central_sync.storage.models import Disposition, Embedding, Feedback, Person, Task, TierChange
from central_sync.storage.store import CentralStore, ViolationRecord

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 6, 1, tzinfo=timezone.utc)


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


def test_dispose_refuses_an_unknown_person_and_forwards_a_merged_file(
    store: CentralStore, db_url: str, tmp_path: Path
) -> None:
    with store.session() as s:
        s.add(Person(person_id="E1", kind="enrolled", name="Li Si", tier="none"))
        s.add(Person(person_id="U-abc", kind="unknown", tier="none", merged_into="E1"))
    when = (AT + timedelta(hours=1)).isoformat()
    # before: exit 0, "recorded fine for P-999", and a person file P-999 opened by the typo
    r = _cli(tmp_path, db_url, "dispose", "--person", "P-999", "--kind", "fine", "--time", when)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--person" in r.stderr and "P-999" in r.stderr and "no person file" in r.stderr
    with store.session() as s:
        assert s.get(Person, "P-999") is None
        assert list(s.scalars(select(Disposition))) == []
    # before: the fine stayed on the merged-away file, so E1's repeat tier never saw it
    r = _cli(tmp_path, db_url, "dispose", "--person", "U-abc", "--kind", "fine", "--time", when)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "recorded fine for E1" in r.stdout and "merged into E1" in r.stdout
    with store.session() as s:
        assert [(d.person_id, d.kind, d.source) for d in s.scalars(select(Disposition))] == [
            ("E1", "fine", "manual")
        ]
    r = _cli(tmp_path, db_url, "dispose", "--person", "E1", "--kind", "education", "--time", when)
    assert r.returncode == 0 and "recorded education for E1" in r.stdout, r.stdout + r.stderr


def _task(store: CentralStore, person: str = "E1") -> str:
    """One open task as the desk records it on a tier rise (a tier change row, then its task)."""
    from central_sync.storage.models import utcnow

    tid = str(uuid.uuid4())
    with store.session() as s:
        if s.get(Person, person) is None:
            s.add(Person(person_id=person, kind="enrolled", tier="occasional"))
        ch = TierChange(person_id=person, from_tier="none", to_tier="occasional", at=AT)
        s.add(ch)
        s.flush()
        s.add(
            Task(
                task_id=tid,
                tier_change_id=ch.id,
                person_id=person,
                tier="occasional",
                kind="sms_reminder",
                status="open",
                created_at=utcnow(),
                payload={},
            )
        )
    return tid


def test_feedback_once_per_state_change_and_never_from_the_future(store: CentralStore) -> None:
    desk = DispositionDesk(CentralConfig(), store)
    tid = _task(store)
    t1 = AT + timedelta(days=1)
    # before: a feedback dated 2030 was accepted and recorded a disposition in the future
    with pytest.raises(ValueError, match=r"time: .*in the future"):
        desk.record_feedback({"task_id": tid, "status": "done", "time": "2030-01-01T00:00:00+00:00"})
    assert desk.record_feedback({"task_id": tid, "status": "done", "time": t1.isoformat()})
    assert not desk.record_feedback({"task_id": tid, "status": "done", "time": t1.isoformat()})  # redelivery
    # before: a second feedback after done was accepted (a second disposition)
    with pytest.raises(ValueError, match="status: task .* is already done"):
        desk.record_feedback(
            {"task_id": tid, "status": "done", "time": (t1 + timedelta(hours=1)).isoformat()}
        )
    with pytest.raises(ValueError, match="already done"):
        desk.record_feedback(
            {"task_id": tid, "status": "failed", "time": (t1 + timedelta(hours=2)).isoformat()}
        )
    # a failed task may still be carried out (a retry): failed -> done once, failed twice refused
    tid2 = _task(store)
    assert desk.record_feedback({"task_id": tid2, "status": "failed", "time": t1.isoformat()})
    with pytest.raises(ValueError, match="already failed"):
        desk.record_feedback(
            {"task_id": tid2, "status": "failed", "time": (t1 + timedelta(hours=1)).isoformat()}
        )
    assert desk.record_feedback(
        {
            "task_id": tid2,
            "status": "done",
            "time": (t1 + timedelta(hours=2)).isoformat(),
            "feedback_id": "r2",
        }
    )
    with store.session() as s:
        disp = sorted((d.task_id, d.time) for d in s.scalars(select(Disposition)))
        fbs = s.scalars(select(Feedback)).all()
        states = {t.task_id: (t.status, t.closed_at) for t in s.scalars(select(Task))}
    assert [d[0] for d in disp] == sorted([tid, tid2])  # one disposition per task, none from the future
    assert len(fbs) == 3
    assert states[tid][0] == "done" and states[tid2][0] == "done"
    assert all(t.replace(tzinfo=timezone.utc) < datetime.now(timezone.utc) for _, t in disp)


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(EMBEDDING_DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def test_id_numbers_are_validated_and_nothing_is_stored_for_a_bad_one(store: CentralStore) -> None:
    cfg = CentralConfig()
    resolver = load_resolver(store, cfg)
    # before: any string was stored as the ID number (e.g. a typo'd check digit)
    for bad, why in [
        ("330501199001011234", "check digit"),
        ("33050119900230123X", "birth date"),
        ("3305011990010112", "18-character"),
        ("0305011990010112X3", "18-character"),
    ]:
        with pytest.raises(EnrolmentError, match=f"^E1: id_number: .*{why}") as ei:
            enrol_embeddings(store, cfg, resolver, EnrolmentRecord("E1", id_number=bad), _vec(1)[None])
        assert bad not in str(ei.value)  # personal data is not echoed in the error
    with store.session() as s:
        assert s.get(Person, "E1") is None
    assert validate_id_number(" 11010519491231002x ") == "11010519491231002X"
    enrol_embeddings(
        store, cfg, resolver, EnrolmentRecord("E1", id_number="11010519491231002x"), _vec(1)[None]
    )
    with store.session() as s:
        p = s.get(Person, "E1")
        assert p is not None and p.id_number == "11010519491231002X"


def test_re_enrolling_with_blank_columns_keeps_the_stored_fields(store: CentralStore, tmp_path: Path) -> None:
    cfg = CentralConfig()
    resolver = load_resolver(store, cfg)
    full = EnrolmentRecord(
        "E1",
        name="Li Si",
        id_number="33050119900101123X",
        community="Feiying",
        employer="Bus Co",
        phone="13800000000",
        party_member=True,
    )
    enrol_embeddings(store, cfg, resolver, full, _vec(1)[None])
    # the same person re-enrolled with new photos and blank columns, as read from a CSV
    f = tmp_path / "again.csv"
    f.write_text("person_id,name,id_number,community,employer,phone,party_member,photos\nE1,, ,,,,,new.jpg\n")
    (again,), problems = read_enrolment_csv(f)
    assert problems == [] and again.id_number is None and again.party_member is None
    enrol_embeddings(store, cfg, resolver, again, _vec(2)[None])
    # before: name, id_number, community, employer and phone were set to NULL and party_member to False
    with store.session() as s:
        p = s.get(Person, "E1")
        assert p is not None
        assert (p.name, p.id_number, p.community, p.employer, p.phone, p.party_member) == (
            "Li Si",
            "33050119900101123X",
            "Feiying",
            "Bus Co",
            "13800000000",
            True,
        )
        assert len(s.scalars(select(Embedding).where(Embedding.person_id == "E1")).all()) == 2
    # a field that is given is updated; party_member "no" is an answer, not a blank
    enrol_embeddings(
        store, cfg, resolver, EnrolmentRecord("E1", phone="13900000000", party_member=False), _vec(3)[None]
    )
    with store.session() as s:
        p = s.get(Person, "E1")
        assert p is not None and (p.phone, p.party_member, p.community) == ("13900000000", False, "Feiying")


def _violations(store: CentralStore, person: str, *times: datetime) -> None:
    store.add_violations([ViolationRecord(str(uuid.uuid4()), "no_helmet", t, person) for t in times])


def _tasks(store: CentralStore) -> list[tuple[str, str]]:
    with store.session() as s:
        return sorted((t.person_id, t.kind) for t in s.scalars(select(Task)))


def test_reevaluate_at_is_a_dry_run_unless_write_and_never_writes_the_future(
    store: CentralStore, db_url: str, tmp_path: Path
) -> None:
    with store.session() as s:
        s.add(Person(person_id="E1", kind="enrolled", tier="none"))
    _violations(store, "E1", AT - timedelta(hours=2), AT - timedelta(hours=1))
    future = (datetime.now(timezone.utc) + timedelta(days=400)).isoformat()
    # before: --at <future> stored the tiers of a time to come and made tasks
    r = _cli(tmp_path, db_url, "reevaluate", "--at", future)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"changed": 0, "would_change": 0}
    r = _cli(tmp_path, db_url, "reevaluate", "--at", AT.isoformat())
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"occasional": 1, "changed": 0, "would_change": 1}
    with store.session() as s:
        assert s.get(Person, "E1").tier == "none"  # type: ignore[union-attr]  # dry run: nothing stored
    assert _tasks(store) == []
    r = _cli(tmp_path, db_url, "reevaluate", "--write", "--at", future)
    assert r.returncode == 2 and "--at" in r.stderr and "future" in r.stderr, r.stdout + r.stderr
    r = _cli(tmp_path, db_url, "reevaluate", "--write", "--at", AT.isoformat())
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["changed"] == 1, r.stderr
    assert [k for _, k in _tasks(store)] == ["case_study_link", "sms_reminder", "voice_reminder"]


def test_no_second_set_of_tasks_for_the_same_violations(store: CentralStore) -> None:
    from central_sync.persons import merge_person

    desk = DispositionDesk(CentralConfig(), store)
    with store.session() as s:
        s.add(Person(person_id="E1", kind="enrolled", tier="none"))
    _violations(store, "E1", AT - timedelta(hours=2), AT - timedelta(hours=1))
    a, msgs = desk.reassess("E1", AT)
    assert a is not None and a.tier.value == "occasional" and len(msgs) == 3
    # the windows slide past (a reevaluation at a later time): the tier falls, nothing to do
    a, msgs = desk.reassess("E1", AT + timedelta(days=400))
    assert a is not None and a.tier.value == "none" and msgs == []
    # back at AT (before: the same two violations made a second set of 3 tasks)
    a, msgs = desk.reassess("E1", AT + timedelta(minutes=1))
    assert a is not None and a.tier.value == "occasional" and msgs == []
    assert len(_tasks(store)) == 3
    desk.reassess("E1", AT + timedelta(days=400))
    # a new violation is a new reason: tasks again
    _violations(store, "E1", AT + timedelta(days=401))
    a, msgs = desk.reassess("E1", AT + timedelta(days=401, minutes=1))
    assert a is not None and a.tier.value == "occasional" and len(msgs) == 3
    # an unknown file with its own tasks merged into an enrolled person: the target's rise repeats none of them
    with store.session() as s:
        s.add(Person(person_id="U-1", kind="unknown", tier="none"))
        s.add(Person(person_id="E2", kind="enrolled", tier="none"))
    _violations(store, "U-1", AT - timedelta(hours=2), AT - timedelta(hours=1))
    assert len(desk.reassess("U-1", AT)[1]) == 3
    merge_person(store, "U-1", "E2")
    a, msgs = desk.reassess("E2", AT + timedelta(minutes=5))
    assert a is not None and a.tier.value == "occasional" and msgs == []
    assert [p for p, _ in _tasks(store)].count("E2") == 3 and [p for p, _ in _tasks(store)].count("E1") == 6


def test_enrolling_a_face_already_enrolled_to_someone_else_is_refused_unless_forced(
    store: CentralStore, caplog: pytest.LogCaptureFixture
) -> None:
    from central_sync.persons import FaceConflict, face_conflict

    cfg = CentralConfig()
    resolver = load_resolver(store, cfg)
    face = _vec(7)
    enrol_embeddings(store, cfg, resolver, EnrolmentRecord("E1", name="Li Si"), face[None])
    # the same face slightly changed (another photo of the same person), as a second person
    other_photo = face + 0.05 * _vec(8)
    # before: accepted silently, and later matches tied between E1 and E2 without review
    with pytest.raises(FaceConflict, match=r"^E2: face already enrolled as E1 \(cosine 0\.9\d\d"):
        enrol_embeddings(store, cfg, resolver, EnrolmentRecord("E2", name="Wang Wu"), other_photo[None])
    with store.session() as s:
        assert s.get(Person, "E2") is None
    assert face_conflict(resolver, "E2", other_photo[None], cfg.identity.match_threshold) is not None
    # re-enrolling E1 itself with that photo is not a conflict; a different face is not either
    enrol_embeddings(store, cfg, resolver, EnrolmentRecord("E1"), other_photo[None])
    enrol_embeddings(store, cfg, resolver, EnrolmentRecord("E3"), _vec(9)[None])
    with store.session() as s:
        assert s.get(Person, "E2") is None


def test_enrol_batch_with_real_photos_refuses_a_face_of_another_person_unless_forced(
    store: CentralStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The enrolment path with real LFW photos and the edge's own face models: person B listed with one of A's
    photos is refused; with force it is enrolled and listed for review."""
    from anqi_contract.paths import shared_dir
    from central_sync.identity import edge_face_embedder, read_enrolment_folder
    from central_sync.persons import enrol

    pytest.importorskip("cv2", reason="needs OpenCV for the face models")
    lfw = shared_dir() / "faces" / "lfw-dev"
    if not lfw.is_dir():
        pytest.skip(f"{lfw} not present")
    embed = edge_face_embedder()
    cfg = CentralConfig()
    resolver = load_resolver(store, cfg)
    a = next(p for p in read_enrolment_folder(lfw) if len(p.photos) >= 2)
    rep = enrol(store, cfg, resolver, [EnrolmentRecord(a.person_id, photos=a.photos[:1])], embed)
    assert rep.enrolled == 1, rep.problems
    b = EnrolmentRecord("B-impostor", photos=a.photos[1:2])
    rep = enrol(store, cfg, resolver, [b], embed)
    assert rep.enrolled == 0 and any(f"face already enrolled as {a.person_id}" in p for p in rep.problems)
    with store.session() as s:
        assert s.get(Person, "B-impostor") is None
    with caplog.at_level("WARNING", logger="anqi.central.persons"):
        rep = enrol(store, cfg, resolver, [b], embed, force=True)
    assert (
        rep.enrolled == 1
        and rep.review
        and rep.review[0].startswith(f"B-impostor: face matches {a.person_id}")
    )
    assert "enrolment_face_conflict" in caplog.text
    with store.session() as s:
        assert s.get(Person, "B-impostor") is not None
