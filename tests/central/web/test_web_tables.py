"""The web tables come from the alembic chain (revision 0004), also on a database where an older web service
had made them itself with ``create_all``."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

from central_sync.storage.store import MIGRATIONS_DIR, CentralStore
from central_sync.web import auth


def upgrade(store: CentralStore, rev: str) -> None:
    acfg = Config()
    acfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as conn:
        acfg.attributes["connection"] = conn
        command.upgrade(acfg, rev)


def test_a_database_whose_web_tables_were_made_by_create_all_migrates(tmp_path: Path) -> None:
    store = CentralStore(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(store, "0003")
    with store.engine.begin() as c:  # what the web service's create_all made before 0004
        c.execute(
            text(
                "CREATE TABLE web_rider_tokens (token_hash VARCHAR(64) PRIMARY KEY, task_id VARCHAR(36) NOT NULL,"
                " person_id VARCHAR(64) NOT NULL, used_at DATETIME)"
            )
        )
        c.execute(text("INSERT INTO web_rider_tokens VALUES ('h', 't', 'P-1', NULL)"))
        c.execute(
            text(
                "CREATE TABLE web_users (id INTEGER PRIMARY KEY, username VARCHAR(64) UNIQUE NOT NULL,"
                " password_hash VARCHAR(256) NOT NULL, role VARCHAR(16) NOT NULL, communities JSON NOT NULL,"
                " failed INTEGER NOT NULL, locked_until DATETIME, created_by VARCHAR(64), created_at DATETIME NOT NULL)"
            )
        )
    # the web service refuses a database that is not at 0004, naming the command
    with pytest.raises(RuntimeError, match="anqi-central migrate"):
        auth.ensure_tables(store)
    store.migrate()
    cols = {c["name"] for c in inspect(store.engine).get_columns("web_rider_tokens")}
    assert {"created_at", "expires_at", "used_at"} <= cols
    with store.engine.connect() as c:
        assert c.execute(text("SELECT person_id, expires_at FROM web_rider_tokens")).all() == [("P-1", None)]
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"
    auth.ensure_tables(store)
    auth.add_user(store, "admin", "correct horse battery", "admin")
    assert auth.login(store, "admin", "correct horse battery")[0]
    store.close()


def test_0005_sums_the_pass_intervals_per_hour(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import insert, select

    from central_sync.storage.webtables import PassCount, PassHour
    from central_sync.web import cockpit

    store = CentralStore(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(store, "0004")
    h0 = datetime(2026, 12, 5, 8, 0, tzinfo=timezone.utc)
    with store.engine.begin() as c:  # intervals stored by 0004's reader: 08:00, 08:55 and 09:05
        for k, (m, r, v) in enumerate([(0, 10, 2), (55, 6, 1), (65, 4, 4)]):
            st = h0 + timedelta(minutes=m)
            c.execute(
                insert(PassCount).values(
                    device_id="d1", point_id="p1", start=st, end=st + timedelta(minutes=5), riders=r,
                    violators=v, no_helmet=k, updated_at=st,
                )
            )  # fmt: skip
    store.migrate()
    with store.session() as s:
        got = [
            (h.hour, h.last_end, h.riders, h.violators, h.no_helmet)
            for h in s.scalars(select(PassHour).order_by(PassHour.hour))
        ]
    assert got == [
        (h0, h0 + timedelta(minutes=60), 16, 3, 1),
        (h0 + timedelta(hours=1), h0 + timedelta(minutes=70), 4, 4, 2),
    ]
    safe = cockpit.safe_riding(store, h0)["p1"]
    assert (safe["riders"], safe["violators"], safe["rate"]) == (20, 7, 13 / 20)
    assert cockpit.safe_riding(store, h0 + timedelta(minutes=30))["p1"]["riders"] == 20  # from its hour on
    store.close()
