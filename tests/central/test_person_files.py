"""Person files that stay right (issue 23 point 2), against real SQLite and PostgreSQL: dispositions only for
existing persons (a merged file forwards to its target), feedback once per task state change and never from the
future. The CLI runs as a real subprocess (``python -m central_sync.cli``) on the same database."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select

from central_sync.storage.models import Disposition, Person
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
