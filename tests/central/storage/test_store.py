"""The central store on SQLite and PostgreSQL: migrations, idempotent ingest, table-1 queries."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError

from central_sync.config import TierThresholds
from central_sync.storage.store import CentralStore, StoreError, ViolationRecord
from central_sync.tiers import OffenderTier, history_from_times

AT = datetime(2026, 6, 1, 0, 0, tzinfo=timezone(timedelta(hours=8)))
D = timedelta(days=1)
US = timedelta(microseconds=1)
TH = TierThresholds()


def rec(pid: str, t: datetime, eid: str | None = None) -> ViolationRecord:
    return ViolationRecord(
        event_id=eid or str(uuid.uuid4()), violation_type="no_helmet", time=t, person_id=pid, point_id="pt-1"
    )


def test_migrate_is_repeatable_and_creates_every_table(store: CentralStore) -> None:
    store.migrate()
    with store.engine.connect() as c:
        version = c.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == "0005"
    from sqlalchemy import inspect

    names = set(inspect(store.engine).get_table_names())
    assert {
        "events",
        "media",
        "persons",
        "embeddings",
        "dispositions",
        "tasks",
        "tier_changes",
        "feedback",
        "audit_log",
        "api_tokens",
        "web_users",
        "web_sessions",
        "web_kiosk_tokens",
        "web_rider_tokens",
        "web_device_health",
        "web_pass_counts",
        "web_pass_hours",
    } <= names
    idx = {i["name"] for i in inspect(store.engine).get_indexes("events")}
    assert "ix_events_person_time" in idx


def test_duplicate_delivery_stores_an_event_once(store: CentralStore) -> None:
    eid = str(uuid.uuid4())
    assert store.add_violation(rec("p", AT, eid)) is True
    assert store.add_violation(rec("p", AT, eid)) is False
    assert store.add_violations([rec("p", AT, eid), rec("p", AT - D)]) == 1
    assert store.count_events() == 2


def test_sqlite_commits_reach_the_disk_before_acks_unless_configured_otherwise(tmp_path: Path) -> None:
    for mode, level in ((None, 2), ("FULL", 2), ("NORMAL", 1)):  # default: FULL
        url = f"sqlite:///{tmp_path / str(mode)}.db"
        st = CentralStore(url, sqlite_synchronous=mode) if mode else CentralStore(url)
        with st.engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA synchronous").scalar() == level
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        st.close()


def test_bulk_ingest_is_one_transaction_and_idempotent(store: CentralStore) -> None:
    recs = [
        rec(f"p{i % 37}", AT - i * US) for i in range(3000)
    ]  # more rows than one multi-row statement holds
    assert store.add_violations(recs[:100]) == 100
    again = recs[:100:10] + recs[100:] + recs[150:160]  # 10 stored already, 10 twice in the batch
    assert store.add_violations(again) == 2900
    assert store.count_events() == 3000
    assert store.existing_event_ids([r.event_id for r in recs[95:105]] + ["nope"]) == {
        r.event_id for r in recs[95:105]
    }
    with store.session() as s:
        assert s.execute(text("SELECT count(*) FROM persons")).scalar() == 37
    bad = [
        rec("p1", AT - D),
        rec("p1", datetime(2026, 1, 1)),
    ]  # a naive time fails the whole batch: nothing stored
    with pytest.raises(StatementError, match="naive datetime"):
        store.add_violations(bad)
    assert not store.existing_event_ids([bad[0].event_id])


def test_concurrent_duplicate_delivery_from_two_consumers_stores_once(store: CentralStore) -> None:
    eids = [str(uuid.uuid4()) for _ in range(40)]
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for e in eids:
            ok = store.add_violation(rec("p", AT, e))
            with lock:
                results.append(ok)

    ts = [threading.Thread(target=worker) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert store.count_events() == 40
    assert sum(results) == 40 and len(results) == 120


def test_window_queries_match_the_reference_at_exact_boundaries(store: CentralStore) -> None:
    offsets = [timedelta(0), 7 * D - US, 7 * D, 30 * D - US, 30 * D, 365 * D - US, 365 * D, -US]
    store.add_violations([rec("p", AT - o) for o in offsets])
    store.add_disposition("p", "education", AT - 300 * D)
    h = store.person_history("p", AT, TH)
    ref = history_from_times(AT, [AT - o for o in offsets], [AT - 300 * D], TH)
    assert h == ref
    assert (h.count_7d, h.count_30d, h.count_365d) == (2, 4, 6)
    assert store.assess_person("p", AT, TH).tier is OffenderTier.repeat
    # times come back aware and in UTC on both back ends
    assert h.last_violation is not None and h.last_violation.tzinfo is not None
    assert h.last_violation == AT


def test_histories_of_many_persons_in_one_statement_equal_one_by_one(store: CentralStore) -> None:
    import random

    rng = random.Random(7)
    persons = [f"p{i}" for i in range(70)]
    offsets = [
        timedelta(0),
        7 * D - US,
        7 * D,
        30 * D - US,
        30 * D,
        365 * D - US,
        365 * D,
        -US,
        2 * D,
        400 * D,
    ]
    store.add_violations(
        [rec(p, AT - rng.choice(offsets)) for p in persons for _ in range(rng.randrange(0, 12))]
    )
    for p in persons[::3]:
        store.add_disposition(
            p, rng.choice(["education", "fine", "sms_reminder"]), AT - rng.choice(offsets + [100 * D])
        )
    items = [(p, AT + timedelta(hours=rng.randrange(-48, 48))) for p in persons + ["nobody"]]
    with store.session() as s:
        many = store.person_histories(items, TH, s)
        tiers = store.assess_persons(items[:5], TH, s)
    assert many == [store.person_history(p, at, TH) for p, at in items]
    assert tiers == [store.assess_person(p, at, TH) for p, at in items[:5]]
    # the consumer's case: everybody at one time (grouped statements), a person twice, one with only old violations
    store.add_violation(rec("old", AT - 500 * D))
    same = [(p, AT) for p in persons + ["nobody", "old", persons[3]]]
    with store.session() as s:
        grouped = store.person_histories(same, TH, s)
    assert grouped == [store.person_history(p, at, TH) for p, at in same]
    assert grouped[-2].last_violation == AT - 500 * D and grouped[-2].count_365d == 0
    assert any(h.first_repeat_disposition for h in many) and any(h.count_7d for h in many)


def test_sms_disposition_does_not_make_repeat(store: CentralStore) -> None:
    store.add_disposition("p", "sms_reminder", AT - 20 * D)
    store.add_violation(rec("p", AT - 10 * D))
    assert store.assess_person("p", AT, TH).tier is OffenderTier.occasional


def test_naive_times_are_refused_before_reaching_the_database(store: CentralStore) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        store.add_violation(rec("p", datetime(2026, 1, 1)))
    assert store.count_events() == 0


def test_sqlite_runs_in_wal_mode(tmp_path: object) -> None:
    s = CentralStore(f"sqlite:///{tmp_path}/wal.db")
    s.migrate()
    with s.engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    s.close()


def test_unreachable_database_is_a_clear_error_without_password() -> None:
    s = CentralStore("postgresql+psycopg://anqi:topsecret@127.0.0.1:1/anqi?connect_timeout=2")
    with pytest.raises(StoreError) as e:
        s.migrate()
    assert "cannot migrate" in str(e.value) and "topsecret" not in str(e.value)


def test_migrations_match_the_models(store: CentralStore) -> None:
    """The alembic revisions and the SQLAlchemy models describe the same schema (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from central_sync.storage.models import Base

    with store.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    assert diff == []
