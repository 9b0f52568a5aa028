"""Cursor paging with a total on the sharing API (issue 23 point 3: "`limit` silently caps at 5,000 with no paging"),
over HTTP and SOAP, on SQLite and PostgreSQL: following the cursors returns every row exactly once in order (ties in
time and in count included), the total is the whole query's, a page capped at api.max_rows says so and goes on, and a
cursor from another query or caller or a forged one is a 422 / SOAP Client fault, audited."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from defusedxml import ElementTree as SafeET
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_sync.config import parse_config
from central_sync.sharing.access import create_token
from central_sync.sharing.http import create_app
from central_sync.sharing.soap import NS, SOAP_NS
from central_sync.storage.models import AuditEntry, Person
from central_sync.storage.store import CentralStore, ViolationRecord

T = datetime(2026, 5, 10, 2, 0, tzinfo=timezone.utc)
#: violations per person: ties in count (3, 3 and 2, 2) and persons in two communities
COUNTS = {"P-a": 5, "P-b": 3, "P-c": 3, "P-d": 2, "P-e": 2, "P-f": 1, "P-g": 7}
RANGE = {"from": "2026-05-01", "to": "2026-05-31"}


@pytest.fixture
def api(store: CentralStore, tmp_path: Path) -> dict[str, Any]:
    cfg = parse_config({"media": {"dir": str(tmp_path / "m")}, "api": {"max_rows": 10}}, "c.yaml", tmp_path)
    with store.session() as s:
        for i, pid in enumerate(COUNTS):
            s.add(
                Person(person_id=pid, kind="enrolled", community="Feiying" if i % 2 else "Other", tier="none")
            )
    recs = []
    for k, (pid, n) in enumerate(COUNTS.items()):
        for j in range(n):
            # every second violation at the same instant as another person's: ties in time across pages
            recs.append(
                ViolationRecord(str(uuid.uuid4()), "no_helmet", T + timedelta(minutes=j * 2 + (k % 2)), pid)
            )
    store.add_violations(recs)
    tokens = {
        "police": create_token(store, cfg, "police-1", "police"),
        "police2": create_token(store, cfg, "police-2", "police"),
        "feiying": create_token(store, cfg, "feiying-1", "community", "Feiying"),
    }
    return {"client": TestClient(create_app(cfg, store)), "tokens": tokens, "store": store, "n": len(recs)}


def _walk(api: dict[str, Any], path: str, who: str, **params: str) -> tuple[list[dict[str, Any]], list[Any]]:
    rows: list[dict[str, Any]] = []
    pages = []
    cursor = None
    while True:
        q = {**RANGE, **params, **({"cursor": cursor} if cursor else {})}
        r = api["client"].get(path, params=q, headers={"Authorization": f"Bearer {api['tokens'][who]}"})
        assert r.status_code == 200, r.text
        pages.append(r.headers)
        rows += r.json()
        cursor = r.headers.get("X-Next-Cursor")
        if cursor is None:
            assert "Link" not in r.headers
            return rows, pages
        assert r.headers["Link"].startswith(f"<{path}?") and 'rel="next"' in r.headers["Link"]
        assert len(pages) < 100


def test_violations_page_by_cursor_every_row_once_in_order_with_the_total(api: dict[str, Any]) -> None:
    rows, pages = _walk(api, "/api/v1/violations", "police", limit="4")
    assert len(rows) == api["n"] == sum(COUNTS.values())
    assert len({r["event_id"] for r in rows}) == len(rows)  # none twice
    assert [(r["time"], r["event_id"]) for r in rows] == sorted((r["time"], r["event_id"]) for r in rows)
    assert {h["X-Total-Count"] for h in pages} == {str(api["n"])}
    assert len(pages) == -(-api["n"] // 4) and {h["X-Page-Limit"] for h in pages} == {"4"}
    # a community token: its own residents' rows and total only
    rows, pages = _walk(api, "/api/v1/violations", "feiying", limit="3")
    mine = sum(n for i, n in enumerate(COUNTS.values()) if i % 2)
    assert len(rows) == mine and pages[0]["X-Total-Count"] == str(mine)


def test_persons_page_by_cursor_with_ties_in_count(api: dict[str, Any]) -> None:
    rows, pages = _walk(api, "/api/v1/persons", "police", limit="2")
    assert [(r["person_id"], r["count"]) for r in rows] == sorted(
        COUNTS.items(), key=lambda kv: (-kv[1], kv[0])
    )
    assert pages[0]["X-Total-Count"] == str(len(COUNTS)) and len(pages) == 4


def test_a_limit_over_max_rows_is_a_capped_page_that_says_so_and_goes_on(api: dict[str, Any]) -> None:
    """Before: limit=1000 with max_rows 10 gave 10 rows and nothing said there were more."""
    r = api["client"].get(
        "/api/v1/violations",
        params={**RANGE, "limit": "1000"},
        headers={"Authorization": f"Bearer {api['tokens']['police']}"},
    )
    assert len(r.json()) == 10
    assert r.headers["X-Page-Limit"] == "10" and r.headers["X-Total-Count"] == str(api["n"])
    assert "X-Next-Cursor" in r.headers
    rows, _ = _walk(api, "/api/v1/violations", "police", limit="1000")
    assert len(rows) == api["n"]


def test_a_cursor_of_another_query_or_caller_or_forged_is_refused_and_audited(api: dict[str, Any]) -> None:
    c, tok = api["client"], api["tokens"]
    h = {"Authorization": f"Bearer {tok['police']}"}
    r = c.get("/api/v1/violations", params={**RANGE, "limit": "3"}, headers=h)
    cur = r.headers["X-Next-Cursor"]
    bad = {
        "other query": ({**RANGE, "type": "wrong_way", "cursor": cur}, h),
        "other caller": ({**RANGE, "cursor": cur}, {"Authorization": f"Bearer {tok['police2']}"}),
        "forged": (
            {
                **RANGE,
                "cursor": base64.urlsafe_b64encode(json.dumps({"k": ["x", "y"], "f": "0"}).encode()).decode(),
            },
            h,
        ),
        "garbage": ({**RANGE, "cursor": "%%%not-base64"}, h),
        "NUL": ({**RANGE, "cursor": "ab\x00cd"}, h),
    }
    for why, (params, headers) in bad.items():
        r = c.get("/api/v1/violations", params=params, headers=headers)
        assert r.status_code == 422 and "cursor" in r.text, why
    r = c.get("/api/v1/persons", params={**RANGE, "cursor": cur}, headers=h)  # a violations cursor on persons
    assert r.status_code == 422
    with api["store"].session() as s:
        refused = [a for a in s.scalars(select(AuditEntry).where(AuditEntry.status == 422))]
    assert len(refused) == len(bad) + 1 and all(a.action.startswith("invalid:") for a in refused)


def _soap(api: dict[str, Any], op: str, **params: str) -> Any:
    body = "".join(f"<a:{k}>{v}</a:{k}>" for k, v in params.items())
    env = (
        f'<soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:a="{NS}"><soap:Header><a:Token>{api["tokens"]["police"]}'
        f"</a:Token></soap:Header><soap:Body><a:{op}>{body}</a:{op}></soap:Body></soap:Envelope>"
    )
    r = api["client"].post("/soap", content=env, headers={"Content-Type": "text/xml"})
    return r.status_code, SafeET.fromstring(r.content)


def test_soap_pages_with_total_and_next_cursor(api: dict[str, Any]) -> None:
    ids: list[str] = []
    cursor = None
    for _ in range(20):
        extra: dict[str, str] = {"Cursor": cursor} if cursor else {}
        status, root = _soap(api, "GetViolations", From="2026-05-01", To="2026-05-31", Limit="6", **extra)
        assert status == 200
        resp = root.find(f"{{{SOAP_NS}}}Body")[0]
        assert resp.find(f"{{{NS}}}Total").text == str(api["n"])
        ids += [v.find(f"{{{NS}}}event_id").text for v in resp.findall(f"{{{NS}}}Violation")]
        nxt = resp.find(f"{{{NS}}}NextCursor")
        if nxt is None:
            break
        cursor = nxt.text
    assert len(ids) == len(set(ids)) == api["n"]
    status, root = _soap(api, "GetPersons", From="2026-05-01", To="2026-05-31", Cursor="forged")
    assert status == 500 and "cursor" in SafeET.tostring(root).decode()
