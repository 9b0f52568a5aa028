"""API tokens carry an expiry (issue 23 point 3): an expired token is refused over HTTP and SOAP and the refusal is
audited; 'token rotate' gives a token a new secret and a new expiry; tokens that exist when the schema is upgraded
are given one. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from central_sync.config import CentralConfig
from central_sync.sharing.access import (
    AccessDenied,
    authenticate,
    create_token,
    list_tokens,
    rotate_token,
)
from central_sync.sharing.http import create_app
from central_sync.sharing.soap import NS, SOAP_NS
from central_sync.storage.models import ApiToken, AuditEntry
from central_sync.storage.store import CentralStore


def _expire(store: CentralStore, name: str) -> None:
    with store.session() as s:
        s.execute(
            update(ApiToken)
            .where(ApiToken.name == name)
            .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
        )


def test_a_token_expires_and_is_refused_over_http_and_soap_and_audited(store: CentralStore) -> None:
    """Before: tokens never expired."""
    cfg = CentralConfig()
    tok = create_token(store, cfg, "station-1", "police")
    row = next(t for t in list_tokens(store) if t["name"] == "station-1")
    expires = datetime.fromisoformat(row["expires_at"])
    assert abs((expires - datetime.now(timezone.utc)) - timedelta(days=cfg.api.token_days)) < timedelta(
        minutes=1
    )
    client = TestClient(create_app(cfg, store))
    params = {"from": "2026-05-01", "to": "2026-05-31"}
    auth = {"Authorization": f"Bearer {tok}"}
    assert client.get("/api/v1/violations", params=params, headers=auth).status_code == 200
    _expire(store, "station-1")
    r = client.get("/api/v1/violations", params=params, headers=auth)
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    envelope = (
        f'<soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:a="{NS}"><soap:Header><a:Token>{tok}</a:Token></soap:Header>'
        "<soap:Body><a:GetPersons><a:From>2026-05-01</a:From><a:To>2026-05-31</a:To></a:GetPersons></soap:Body>"
        "</soap:Envelope>"
    )
    r = client.post("/soap", content=envelope, headers={"Content-Type": "text/xml"})
    assert r.status_code == 500 and b"expired" in r.content and b"soap:Client" in r.content
    with pytest.raises(AccessDenied, match="expired"):
        authenticate(store, cfg, tok)
    with store.session() as s:
        denied = [
            (a.action, a.params["reason"])
            for a in s.scalars(select(AuditEntry).where(AuditEntry.action.like("denied:%")))
        ]
    assert any(a == "denied:/api/v1/violations" and "expired" in why for a, why in denied)
    assert any(a == "denied:/soap" and "expired" in why for a, why in denied)
    assert tok not in str(denied)
    assert next(t for t in list_tokens(store) if t["name"] == "station-1")["expired"] is True


def test_rotation_gives_a_new_secret_and_expiry_and_revokes_the_old_one(store: CentralStore) -> None:
    cfg = CentralConfig()
    old = create_token(store, cfg, "feiying", "community", "Feiying", expires_days=1)
    _expire(store, "feiying")
    new = rotate_token(store, cfg, "feiying", expires_days=30)
    assert new != old
    caller = authenticate(store, cfg, new)
    assert (caller.name, caller.role_name, caller.community) == ("feiying", "community", "Feiying")
    with pytest.raises(AccessDenied):
        authenticate(store, cfg, old)
    listed = [t for t in list_tokens(store) if t["name"].startswith("feiying")]
    assert [(t["name"] == "feiying", t["revoked_at"] is None) for t in listed] == [
        (False, False),
        (True, True),
    ]
    with pytest.raises(ValueError, match="no active token named 'nobody'"):
        rotate_token(store, cfg, "nobody")
    with pytest.raises(ValueError, match="expires-days"):
        create_token(store, cfg, "x", "police", expires_days=0)
    with pytest.raises(ValueError, match="expires-days"):
        create_token(store, cfg, "x", "police", expires_days=100_000)


def test_token_cli_create_rotate_list(db_url: str, tmp_path: Path) -> None:
    from central_sync.cli import main

    cfg_file = tmp_path / "central.yaml"
    cfg_file.write_text(f"database:\n  url: {db_url}\napi:\n  token_days: 7\n", encoding="utf-8")
    run = CliRunner().invoke
    r = run(main, ["token", "create", "--config", str(cfg_file), "--name", "t1", "--role", "police"])
    assert r.exit_code == 0, r.output
    first = r.output.strip()
    r = run(main, ["token", "rotate", "--config", str(cfg_file), "--name", "t1", "--expires-days", "2"])
    assert r.exit_code == 0, r.output
    second = r.output.strip()
    assert second.startswith("anqi_") and second != first
    r = run(main, ["token", "list", "--config", str(cfg_file)])
    assert first not in r.output and second not in r.output
    import json

    rows = [json.loads(line) for line in r.output.splitlines()]
    active = [x for x in rows if x["revoked_at"] is None]
    assert [x["name"] for x in active] == ["t1"] and active[0]["expired"] is False
    left = datetime.fromisoformat(active[0]["expires_at"]) - datetime.now(timezone.utc)
    assert timedelta(days=1, hours=23) < left <= timedelta(days=2)
    r = run(main, ["token", "rotate", "--config", str(cfg_file), "--name", "nope"])
    assert r.exit_code == 2 and "no active token named 'nope'" in r.output


def test_tokens_that_exist_before_the_upgrade_are_given_an_expiry(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from central_sync.storage.store import MIGRATIONS_DIR

    store = CentralStore(db_url)
    acfg = Config()
    acfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as c:
        acfg.attributes["connection"] = c
        command.upgrade(acfg, "0002")
    with store.engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO api_tokens (name, token_hash, role, community, created_at) "
                "VALUES ('old', 'h', 'police', NULL, :t)"
            ),
            {
                "t": datetime(2026, 1, 1, tzinfo=timezone.utc)
                if store.dialect == "postgresql"
                else "2026-01-01 00:00:00"
            },
        )
    store.migrate()
    got: Any = list_tokens(store)[0]
    left = datetime.fromisoformat(got["expires_at"]) - datetime.now(timezone.utc)
    assert timedelta(days=89) < left <= timedelta(days=90)
    store.close()
