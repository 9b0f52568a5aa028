"""Person files that stay right (issue 23 point 2), against real SQLite and PostgreSQL: dispositions only for
existing persons (a merged file forwards to its target), feedback once per task state change and never from the
future. The CLI runs as a real subprocess (``python -m central_sync.cli``) on the same database."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from central_sync.config import CentralConfig
from central_sync.dispositions import DispositionDesk
from central_sync.storage.models import Disposition, Feedback, Person, Task, TierChange
from central_sync.storage.store import CentralStore

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
