"""Uncertain face matches are stored for review (issue 23 point 2: "enrolling a second person with the first one's
photo is accepted silently and later matches tie without review"), against a real mosquitto and SQLite / PostgreSQL:
a forced enrolment past a face conflict and an event matched while another enrolled person is as close each leave a
row in ``reviews``; officers list and clear them (CLI subprocess), reassigning the event clears its review, and the
running consumer reloads its identities after the correction."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from mqtt_helpers import Listener, wait_for
from sqlalchemy import select

from anqi_contract.localbroker import LocalBroker
from central_sync.consumer import CentralConsumer
from central_sync.identity import EnrolmentRecord
from central_sync.persons import enrol_embeddings, load_resolver
from central_sync.storage.models import Event, Review
from central_sync.storage.store import CentralStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_consumer import central_cfg, face, publish_event  # type: ignore[import-not-found]  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _cli(cfg_file: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "central_sync.cli", *command.split(), "--config", str(cfg_file), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _vec(seed: int, noise: float = 0.0) -> np.ndarray:
    return np.asarray(face(seed, noise, 99).embedding, dtype=np.float32)


def test_uncertain_matches_are_flagged_listed_and_cleared(
    tmp_path: Path, broker: LocalBroker, db_url: str, make_event: Any
) -> None:
    cfg = central_cfg(tmp_path, broker.port, db_url)
    cfg_file = tmp_path / "central.yaml"
    cfg_file.write_text(f"database:\n  url: '{db_url}'\nmedia:\n  dir: '{tmp_path / 'media'}'\n")
    store = CentralStore(db_url)
    store.migrate()
    resolver = load_resolver(store, cfg)
    enrol_embeddings(store, cfg, resolver, EnrolmentRecord("P-1", name="Li Si"), _vec(7)[None])
    # the same face enrolled a second time under another id, forced past the conflict: flagged, not silent
    enrol_embeddings(
        store, cfg, resolver, EnrolmentRecord("P-2", name="Li Si?"), _vec(7, 0.01)[None], force=True
    )
    enrol_embeddings(store, cfg, resolver, EnrolmentRecord("P-3", name="Wang Wu"), _vec(8)[None])
    cons = CentralConsumer(cfg, media_grace_s=0.5).start()
    lis = Listener(broker.port, ["anqi/v1/+/+/ack"])
    try:
        now = datetime.now(timezone.utc)
        tie, _ = make_event(tmp_path, 1, {})
        tie = tie.model_copy(update={"face": face(7, 0.1, 1), "time": now - timedelta(minutes=5)})
        clear, _ = make_event(tmp_path, 2, {})
        clear = clear.model_copy(update={"face": face(8, 0.1, 2), "time": now - timedelta(minutes=4)})
        for ev in (tie, clear):
            publish_event(lis, ev)
        assert wait_for(lambda: len(lis.acks()) == 2)
        with store.session() as s:
            matched = s.scalar(select(Event.person_id).where(Event.event_id == str(tie.event_id)))
            assert s.scalar(select(Event.person_id).where(Event.event_id == str(clear.event_id))) == "P-3"
        assert matched in ("P-1", "P-2")
        other = "P-2" if matched == "P-1" else "P-1"

        r = _cli(cfg_file, "review list")
        assert r.returncode == 0, r.stderr
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        assert [(x["kind"], x["person_id"], x["other_person_id"], x["event_id"]) for x in rows] == [
            ("enrolment_conflict", "P-2", "P-1", None),
            ("uncertain_match", matched, other, str(tie.event_id)),  # the clear match to P-3 is not flagged
        ]
        assert (
            rows[1]["score"] > 0.9
            and abs(rows[1]["score"] - rows[1]["other_score"]) <= cfg.identity.review_margin
        )
        # the officer: the enrolment conflict is dismissed (twins), the event is moved to the right one
        r = _cli(
            cfg_file,
            "review clear",
            "--id",
            str(rows[0]["id"]),
            "--by",
            "officer Wang",
            "--resolution",
            "dismissed",
            "--note",
            "twins, both enrolled on purpose",
        )
        assert r.returncode == 0, r.stderr
        r = _cli(
            cfg_file,
            "review clear",
            "--id",
            str(rows[0]["id"]),
            "--by",
            "officer Wang",
            "--resolution",
            "confirmed",
        )
        assert r.returncode == 2 and "cleared already" in r.stderr
        before = cons.faces.signature()
        r = _cli(
            cfg_file,
            "reassign",
            "--event",
            str(tie.event_id),
            "--to",
            other,
            "--by",
            "officer Wang",
            "--reason",
            "the other twin (helmet colour)",
        )
        assert r.returncode == 0, r.stderr
        assert _cli(cfg_file, "review list").stdout == ""
        r = _cli(cfg_file, "review list", "--all", "--person", other)
        done = [(x["kind"], x["resolution"], x["cleared_by"]) for x in map(json.loads, r.stdout.splitlines())]
        assert done == [
            ("enrolment_conflict", "dismissed", "officer Wang"),
            ("uncertain_match", "reassigned", "officer Wang"),
        ]
        # the running consumer sees the correction (its periodic check, every 10 s, reloads on a new signature)
        assert cons.faces.signature() != before
        cons.refresh_identity()
        assert cons.refresh_identity() is False  # in step
        with store.session() as s:
            assert (
                s.scalar(select(Review.note).where(Review.kind == "uncertain_match"))
                == "the other twin (helmet colour)"
            )
        # erasing a person's file takes the reviews naming him (they carry face scores) with it
        from central_sync.retention import erase_person

        assert erase_person(store, cfg, "P-2", by="dpo", reason="request") is not None
        with store.session() as s:
            assert list(s.scalars(select(Review.id))) == []
    finally:
        lis.close()
        cons.stop()
        cons.store.close()
        store.close()
