"""Issue 20: SQL injection and path traversal in every query parameter (HTTP and SOAP), tokens guessed or used
after revocation. Each attempt is refused or answered within the caller's rights; nothing leaks, the tables
are intact and the service keeps answering, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from central_sync.config import CentralConfig
from central_sync.sharing.access import create_token, revoke_token
from central_sync.sharing.http import create_app
from central_sync.sharing.soap import NS, SOAP_NS
from central_sync.storage.models import ApiToken, Event, Person
from central_sync.storage.store import CentralStore, ViolationRecord

T = datetime(2026, 5, 10, 2, 0, tzinfo=timezone.utc)
ID_A, ID_B = "330502199001011234", "330503198502023456"

PAYLOADS = [
    "' OR '1'='1",
    "Feiying' OR 1=1 --",
    "x'; DROP TABLE events; --",
    "1) UNION SELECT person_id, id_number, name FROM persons --",
    '" OR ""="',
    "../../../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "\\' OR 1=1 #",
]


@pytest.fixture
def api(store: CentralStore) -> dict[str, Any]:
    cfg = CentralConfig()
    with store.session() as s:
        s.add(Person(person_id="A1", kind="enrolled", name="Li Si", id_number=ID_A, community="Feiying"))
        s.add(
            Person(person_id="B1", kind="enrolled", name="Wang Wu", id_number=ID_B, community="Renhuangshan")
        )
    store.add_violations(
        [
            ViolationRecord(str(uuid.uuid4()), "no_helmet", T + timedelta(hours=i), p, point_id="pt-1")
            for i, p in enumerate("A1 A1 B1".split())
        ]
    )
    tokens = {
        "feiying": create_token(store, cfg, "feiying-1", "community", "Feiying"),
        "police": create_token(store, cfg, "police-1", "police"),
    }
    return {"client": TestClient(create_app(cfg, store)), "tokens": tokens, "store": store}


def _counts(store: CentralStore) -> tuple[int, int, int]:
    with store.session() as s:
        return tuple(
            int(s.execute(select(func.count()).select_from(m)).scalar_one())
            for m in (Event, Person, ApiToken)
        )  # type: ignore[return-value]


@pytest.mark.parametrize("param", ["from", "to", "point", "community", "tier", "type", "limit", "cursor"])
@pytest.mark.parametrize("path", ["/api/v1/violations", "/api/v1/persons"])
def test_sql_injection_and_traversal_in_every_query_parameter(
    api: dict[str, Any], path: str, param: str
) -> None:
    before = _counts(api["store"])
    headers = {"Authorization": f"Bearer {api['tokens']['feiying']}"}
    for payload in PAYLOADS:
        params = {"from": "2026-05-01", "to": "2026-05-31", param: payload}
        r = api["client"].get(path, params=params, headers=headers)
        assert r.status_code in (200, 400, 403, 422), (param, payload, r.status_code)
        # a community token never sees another community's resident, nor an unmasked ID number
        assert "Wang Wu" not in r.text and ID_B not in r.text and ID_A not in r.text, (param, payload)
        if r.status_code == 200:
            assert all(row.get("community") in (None, "Feiying") for row in r.json()), (param, payload)
            assert param != "community", (payload, r.json())  # another community: refused (403)
            if param == "point":
                assert r.json() == [], (payload, r.json())  # no point has that name: no rows
    assert _counts(api["store"]) == before  # nothing dropped, nothing added
    ok = api["client"].get(path, params={"from": "2026-05-01", "to": "2026-05-31"}, headers=headers)
    assert ok.status_code == 200 and ok.json()


@pytest.mark.parametrize("param", ["From", "To", "Point", "Community", "Tier", "Type", "Limit", "Cursor"])
def test_sql_injection_in_every_soap_parameter(api: dict[str, Any], param: str) -> None:
    from xml.sax.saxutils import escape

    before = _counts(api["store"])
    for payload in PAYLOADS:
        args = {"From": "2026-05-01", "To": "2026-05-31", param: escape(payload)}
        body = (
            f'<?xml version="1.0"?><soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:a="{NS}"><soap:Header>'
            f"<a:Token>{api['tokens']['feiying']}</a:Token></soap:Header><soap:Body><a:GetViolations>"
            + "".join(f"<a:{k}>{v}</a:{k}>" for k, v in args.items())
            + "</a:GetViolations></soap:Body></soap:Envelope>"
        )
        r = api["client"].post("/soap", content=body.encode(), headers={"Content-Type": "text/xml"})
        assert r.status_code in (200, 500), (param, payload)  # an answer or a SOAP fault
        assert "Wang Wu" not in r.text and ID_B not in r.text and ID_A not in r.text, (param, payload)
    assert _counts(api["store"]) == before


def test_guessed_tokens_and_a_token_after_revocation_are_refused(api: dict[str, Any]) -> None:
    """A revoked token is refused over HTTP and SOAP; guessed tokens are refused (401) until the client's
    address is locked out after api.max_bad_tokens failures (429, even with a good token)."""
    c = api["client"]
    real = api["tokens"]["police"]
    window = {"from": "2026-05-01", "to": "2026-05-31"}
    assert (
        c.get("/api/v1/violations", params=window, headers={"Authorization": f"Bearer {real}"}).status_code
        == 200
    )
    assert revoke_token(api["store"], "police-1")
    r = c.get("/api/v1/violations", params=window, headers={"Authorization": f"Bearer {real}"})
    assert r.status_code == 401  # reused after revocation, over HTTP ...
    body = (
        f'<?xml version="1.0"?><soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:a="{NS}"><soap:Header><a:Token>{real}'
        "</a:Token></soap:Header><soap:Body><a:GetViolations><a:From>2026-05-01</a:From><a:To>2026-05-31</a:To>"
        "</a:GetViolations></soap:Body></soap:Envelope>"
    )
    r = c.post("/soap", content=body.encode(), headers={"Content-Type": "text/xml"})
    assert r.status_code == 500 and "authentication failed" in r.text and ID_A not in r.text  # ... and SOAP
    other = api["tokens"]["feiying"]
    guesses = [
        other[:-1] + ("A" if other[-1] != "A" else "B"),
        other.upper(),
        "anqi_",
        "' OR '1'='1",
    ] + ["anqi_" + secrets.token_urlsafe(32) for _ in range(40)]
    codes = [
        c.get("/api/v1/violations", params=window, headers={"Authorization": f"Bearer {g}"}).status_code
        for g in guesses
    ]
    assert set(codes) <= {401, 429} and codes[0] == 401, codes
    assert codes[-20:] == [429] * 20, codes  # locked out after api.max_bad_tokens failures
    locked = c.get("/api/v1/violations", params=window, headers={"Authorization": f"Bearer {other}"})
    assert locked.status_code == 429 and ID_A not in locked.text
