"""The audit log of the sharing API (issue 23 point 3): which persons each answer carried (ids), the HTTP status, and
entries for what used to leave none: FastAPI's own 422s, 422s raised while checking input, a 500 from a failing
route, refused SOAP payloads. Never a token or the payload itself. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from central_sync.config import parse_config
from central_sync.sharing.access import create_token
from central_sync.sharing.http import create_app
from central_sync.sharing.soap import NS, SOAP_NS
from central_sync.storage.models import AuditEntry, Media, Person
from central_sync.storage.store import CentralStore, ViolationRecord

T = datetime(2026, 5, 10, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def api(store: CentralStore, tmp_path: Path) -> dict[str, Any]:
    cfg = parse_config({"media": {"dir": str(tmp_path / "media")}}, "central.yaml", tmp_path)
    with store.session() as s:
        s.add(Person(person_id="A1", kind="enrolled", name="Li Si", community="Feiying", tier="none"))
        s.add(Person(person_id="B1", kind="enrolled", name="Wang Wu", community="Renhuangshan", tier="none"))
        s.add(Person(person_id="C1", kind="enrolled", name="Zhao Liu", community="Renhuangshan", tier="none"))
    ev = {p: str(uuid.uuid4()) for p in ("A1", "B1")}
    store.add_violations([ViolationRecord(ev[p], "no_helmet", T, p, point_id="pt-1") for p in ev])
    face = tmp_path / "media" / ev["A1"] / "face.jpg"
    face.parent.mkdir(parents=True)
    face.write_bytes(b"\xff\xd8\xffface")
    with store.session() as s:
        s.add(
            Media(
                event_id=ev["A1"],
                name="face.jpg",
                kind="face",
                content_type="image/jpeg",
                size=7,
                sha256="0" * 64,
                path=str(face),
            )
        )
    tokens = {
        "police": create_token(store, cfg, "police-1", "police"),
        "feiying": create_token(store, cfg, "feiying-1", "community", "Feiying"),
    }
    return {"client": TestClient(create_app(cfg, store)), "tokens": tokens, "store": store, "ev": ev}


def _entries(store: CentralStore) -> list[AuditEntry]:
    with store.session() as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def _h(api: dict[str, Any], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api['tokens'][who]}"}


RANGE = {"from": "2026-05-01", "to": "2026-05-31"}


def test_the_audit_names_the_persons_each_answer_carried(api: dict[str, Any]) -> None:
    """Before: rows=2, and no way to tell whose data was seen."""
    c = api["client"]
    assert c.get("/api/v1/violations", params=RANGE, headers=_h(api, "police")).status_code == 200
    assert c.get("/api/v1/persons", params=RANGE, headers=_h(api, "feiying")).status_code == 200
    eid = api["ev"]["A1"]
    assert c.get(f"/api/v1/violations/{eid}/media/face.jpg", headers=_h(api, "police")).status_code == 200
    env = (
        f'<soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:a="{NS}"><soap:Header><a:Token>{api["tokens"]["police"]}'
        "</a:Token></soap:Header><soap:Body><a:GetPersons><a:From>2026-05-01</a:From><a:To>2026-05-31</a:To>"
        "</a:GetPersons></soap:Body></soap:Envelope>"
    )
    assert c.post("/soap", content=env, headers={"Content-Type": "text/xml"}).status_code == 200
    got = [(a.actor, a.action, a.rows, a.persons, a.status) for a in _entries(api["store"])]
    assert got == [
        ("police-1", "violations", 2, ["A1", "B1"], 200),
        ("feiying-1", "persons", 1, ["A1"], 200),  # the community token's answer: its own resident only
        ("police-1", "evidence", 1, ["A1"], 200),
        ("police-1", "persons", 2, ["A1", "B1"], 200),
    ]


def test_422s_are_audited_with_the_parameter_and_never_a_secret(api: dict[str, Any]) -> None:
    """Before: a 422 left no trace in the audit log."""
    c, store = api["client"], api["store"]
    r = c.get("/api/v1/violations", params={**RANGE, "limit": "0"}, headers=_h(api, "police"))
    assert r.status_code == 422  # FastAPI's own validation
    r = c.get("/api/v1/persons", params={"from": "0001-01-01", "to": "2026-05-31"}, headers=_h(api, "police"))
    assert r.status_code == 422  # raised while checking the range
    r = c.get("/api/v1/violations", params={**RANGE, "point": "pt\x00-1", "token": "anqi_secretvalue"})
    assert r.status_code == 401  # no Authorization header: refused first
    r = c.get(
        "/api/v1/violations",
        params={**RANGE, "point": "pt\x00-1", "token": "anqi_secretvalue"},
        headers=_h(api, "police"),
    )
    assert r.status_code == 422
    r = c.get("/api/v1/nothing-here", params={"token": "anqi_secretvalue"})
    assert r.status_code == 404
    got = [(a.action, a.status, a.params) for a in _entries(store)]
    assert got[0][0] == "invalid:/api/v1/violations" and got[0][1] == 422
    assert got[0][2]["limit"] == "0" and "limit" in got[0][2]["detail"]
    assert got[1][0] == "invalid:/api/v1/persons" and "from: not a date" in got[1][2]["detail"]
    assert got[2][0] == "denied:/api/v1/violations" and got[2][1] == 401
    assert got[3][0] == "invalid:/api/v1/violations" and got[3][2]["point"] == "pt\\x00-1"
    assert got[4][:2] == ("not_found:/api/v1/nothing-here", 404)
    dump = str(got)
    assert "anqi_secretvalue" not in dump and "\x00" not in dump
    assert all(api["tokens"][k] not in dump for k in api["tokens"])


def test_a_failing_route_is_a_500_without_traceback_and_audited(api: dict[str, Any]) -> None:
    """Before: an exception in a route gave a 500 that no audit entry recorded."""
    store = api["store"]
    with store.engine.begin() as conn:  # the evidence table is gone (a broken database, a bad restore)
        conn.execute(text("DROP TABLE media"))
    eid = api["ev"]["A1"]
    r = api["client"].get(f"/api/v1/violations/{eid}/media/face.jpg", headers=_h(api, "police"))
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error (logged and audited)"}
    assert "Traceback" not in r.text and "media" not in r.text
    last = _entries(store)[-1]
    assert last.action.startswith(
        "error:/api/v1/violations/"
    )  # the action is cut to 64 characters, the path not
    assert (last.params["path"], last.status, last.params["error"]) == (
        f"/api/v1/violations/{eid}/media/face.jpg",
        500,
        "ProgrammingError" if store.dialect == "postgresql" else "OperationalError",
    )


def test_refused_soap_payloads_are_audited_by_digest_never_by_content(api: dict[str, Any]) -> None:
    """Before: a SOAP fault (bad XML, an entity attack, an unknown operation) left no audit entry."""
    c, store = api["client"], api["store"]
    tok = api["tokens"]["police"]
    bad_xml = (
        f'<soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Header><a:Token xmlns:a="{NS}">{tok}</a:Token>'.encode()
    )
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + f'<soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body>&x;</soap:Body></soap:Envelope>'.encode()
    )
    unknown_op = (
        f'<soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:a="{NS}"><soap:Header><a:Token>{tok}</a:Token></soap:Header>'
        "<soap:Body><a:DropEverything/></soap:Body></soap:Envelope>"
    ).encode()
    for body in (bad_xml, xxe, unknown_op):
        r = c.post("/soap", content=body, headers={"Content-Type": "text/xml"})
        assert r.status_code == 500 and b"soap:Client" in r.content
    got = [(a.actor, a.action, a.status, a.params) for a in _entries(store)]
    assert [(g[0], g[1], g[2]) for g in got] == [
        ("-", "soap_fault:-", 500),
        ("-", "soap_fault:-", 500),
        ("police-1", "soap_fault:DropEverything", 500),
    ]
    import hashlib

    assert got[0][3]["sha256"] == hashlib.sha256(bad_xml).hexdigest() and got[0][3]["bytes"] == str(
        len(bad_xml)
    )
    assert "well-formed" in got[0][3]["message"]
    assert "DTD" in got[1][3]["message"] or "forbidden" in got[1][3]["message"].lower()
    assert "unknown operation" in got[2][3]["message"]
    assert tok not in str(got) and "/etc/passwd" not in str(got)


def test_who_saw_a_person_from_the_command_line(api: dict[str, Any], db_url: str, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from central_sync.cli import main

    c = api["client"]
    c.get("/api/v1/violations", params=RANGE, headers=_h(api, "feiying"))
    c.get("/api/v1/violations", params=RANGE, headers=_h(api, "police"))
    c.get("/api/v1/violations", params={**RANGE, "limit": "x"}, headers=_h(api, "police"))
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"database:\n  url: '{db_url}'\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["audit", "--config", str(cfg_file), "--person", "B1"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [(x["actor"], x["persons"]) for x in rows] == [
        ("police-1", ["A1", "B1"])
    ]  # not the community token
    r = CliRunner().invoke(main, ["audit", "--config", str(cfg_file), "--status", "400"])
    assert [json.loads(line)["action"] for line in r.output.splitlines()] == ["invalid:/api/v1/violations"]
