"""Fixtures of the central tests: a store on SQLite (a file, WAL) and on a real PostgreSQL.

PostgreSQL: a private database is created on the local server (``ANQI_TEST_PG``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) for the test session and dropped at the
end; tests are skipped with the reason when the server cannot be reached.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from central_sync.storage.store import CentralStore

PG_ADMIN_URL = os.environ.get("ANQI_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"anqi_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # noqa: BLE001 - any reason the server is unusable is a skip reason
        pytest.skip(
            f"PostgreSQL not available at {make_url(PG_ADMIN_URL).render_as_string(hide_password=True)}: {type(e).__name__}: {str(e).splitlines()[0]}"
        )
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _fresh_pg(pg_url: str) -> CentralStore:
    """Empty the session database (schema dropped) so each test starts from the migration."""
    from sqlalchemy import create_engine, text

    eng = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text("DROP SCHEMA public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    eng.dispose()
    return CentralStore(pg_url)


@pytest.fixture
def fresh_pg_url(pg_url: str) -> str:
    """The session's PostgreSQL database, emptied (schema dropped) for this test."""
    _fresh_pg(pg_url).close()
    return pg_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    url: str = request.getfixturevalue("pg_url")
    _fresh_pg(url).close()
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[CentralStore]:
    s = CentralStore(db_url)
    s.migrate()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """CLI commands run in-process (click's CliRunner) install their own log handler; put pytest's back."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
