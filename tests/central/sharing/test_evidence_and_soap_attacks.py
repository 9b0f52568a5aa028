"""Issue 20: evidence files by role (bystanders blurred in the frames, the original clip only for full-evidence
roles), path traversal on the evidence route, XML bombs and external entities on the SOAP endpoint."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_sync.config import parse_config
from central_sync.sharing.access import create_token
from central_sync.sharing.http import create_app
from central_sync.sharing.soap import NS, SOAP_NS
from central_sync.storage.models import AuditEntry, Media, Person
from central_sync.storage.store import CentralStore, ViolationRecord

T = datetime(2026, 5, 10, 2, 0, tzinfo=timezone.utc)
FILES = {
    "face.jpg": ("face", b"\xff\xd8\xffface"),
    "violation.jpg": ("context", b"\xff\xd8\xffframe"),
    "clip.mp4": ("clip", b"\0\0\0\x18ftypisom"),
}


@pytest.fixture
def api(store: CentralStore, tmp_path: Path) -> dict[str, Any]:
    cfg = parse_config({"media": {"dir": str(tmp_path / "media")}}, "central.yaml", tmp_path)
    with store.session() as s:
        s.add(Person(person_id="A1", kind="enrolled", name="Li Si", community="Feiying", tier="frequent"))
        s.add(Person(person_id="B1", kind="enrolled", name="Wang Wu", community="Renhuangshan", tier="none"))
    ev = {p: str(uuid.uuid4()) for p in ("A1", "B1")}
    store.add_violations([ViolationRecord(ev[p], "no_helmet", T, p, point_id="pt-1") for p in ev])
    with store.session() as s:
        for eid in ev.values():
            for name, (kind, data) in FILES.items():
                f = tmp_path / "media" / eid / name
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(data)
                s.add(
                    Media(
                        event_id=eid,
                        name=name,
                        kind=kind,
                        content_type="application/octet-stream",
                        size=len(data),
                        sha256="0" * 64,
                        path=str(f),
                    )
                )
        # a row whose path points outside media.dir (a corrupted or hostile row): never served
        secret = tmp_path / "secret.txt"
        secret.write_text("central's private key")
        s.add(
            Media(
                event_id=ev["A1"],
                name="context.jpg",
                kind="context",
                content_type="image/jpeg",
                size=1,
                sha256="0" * 64,
                path=str(secret),
            )
        )
    tokens = {
        "police": create_token(store, cfg, "police-1", "police"),
        "feiying": create_token(store, cfg, "feiying-1", "community", "Feiying"),
        "analyst": create_token(store, cfg, "analyst-1", "analyst"),
    }
    return {"client": TestClient(create_app(cfg, store)), "tokens": tokens, "store": store, "ev": ev}


def _get(api: dict[str, Any], who: str, eid: str, name: str) -> Any:
    return api["client"].get(
        f"/api/v1/violations/{eid}/media/{name}", headers={"Authorization": f"Bearer {api['tokens'][who]}"}
    )


def test_evidence_by_role_the_clip_only_for_full_evidence_roles(api: dict[str, Any]) -> None:
    a, b = api["ev"]["A1"], api["ev"]["B1"]
    for name, (_, data) in FILES.items():  # police: everything
        r = _get(api, "police", a, name)
        assert r.status_code == 200 and r.content == data, name
    # community: the face and the (bystander-blurred) frames of its own residents, never the original clip
    assert _get(api, "feiying", a, "face.jpg").status_code == 200
    assert _get(api, "feiying", a, "violation.jpg").status_code == 200
    assert _get(api, "feiying", a, "clip.mp4").status_code == 403
    assert _get(api, "feiying", b, "face.jpg").status_code == 403  # another community's resident
    # analyst: no evidence at all
    assert all(_get(api, "analyst", a, n).status_code == 403 for n in FILES)
    with api["store"].session() as s:
        actions = [
            x for (x,) in s.execute(select(AuditEntry.action).where(AuditEntry.action.like("evidence%")))
        ]
    assert actions.count("evidence") == 5 and actions.count("evidence_denied") == 5


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/violations/{a}/media/..%2F..%2Fsecret.txt",
        "/api/v1/violations/{a}/media/%2E%2E",
        "/api/v1/violations/..%2F..%2Fetc/media/passwd",
        "/api/v1/violations/{a}/media/context.jpg%00.txt",
        "/api/v1/violations/{a}/media/context.jpg",  # the planted row pointing outside media.dir
    ],
)
def test_path_traversal_on_the_evidence_route_reads_nothing_outside_media(
    api: dict[str, Any], path: str
) -> None:
    r = api["client"].get(
        path.format(a=api["ev"]["A1"]), headers={"Authorization": f"Bearer {api['tokens']['police']}"}
    )
    assert r.status_code in (404, 422), (path, r.status_code)
    assert b"private key" not in r.content


def _soap(api: dict[str, Any], body: str) -> Any:
    return api["client"].post("/soap", content=body.encode(), headers={"Content-Type": "text/xml"})


def _envelope(prolog: str, token_expr: str) -> str:
    return (
        f'<?xml version="1.0"?>{prolog}<soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:a="{NS}">'
        f"<soap:Header><a:Token>{token_expr}</a:Token></soap:Header><soap:Body><a:GetViolations>"
        "<a:From>2026-05-01</a:From><a:To>2026-05-31</a:To></a:GetViolations></soap:Body></soap:Envelope>"
    )


def test_xml_bombs_and_external_entities_on_soap_are_refused(api: dict[str, Any], tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10 if i else "lol"}">' for i in range(10))
    attacks = {
        "billion laughs": _envelope(f"<!DOCTYPE e [{lol}]>", "&l9;"),
        "quadratic blowup": _envelope(f'<!DOCTYPE e [<!ENTITY a "{"x" * 50_000}">]>', "&a;" * 2000),
        "external entity (file)": _envelope(f'<!DOCTYPE e [<!ENTITY x SYSTEM "file://{secret}">]>', "&x;"),
        "external entity (url)": _envelope('<!DOCTYPE e [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>', "&x;"),
        "parameter entity": _envelope(f'<!DOCTYPE e [<!ENTITY % p SYSTEM "file://{secret}"> %p;]>', "x"),
        "external DTD": _envelope(f'<!DOCTYPE e SYSTEM "file://{secret}">', "x"),
    }
    for what, body in attacks.items():
        t0 = time.monotonic()
        r = _soap(api, body)
        took = time.monotonic() - t0
        assert r.status_code == 500 and "Fault" in r.text, what  # a SOAP fault, the service alive
        assert "private key" not in r.text and "lollol" not in r.text, what
        assert took < 2.0, (what, took)
    # and a proper call still works
    ok = _soap(api, _envelope("", api["tokens"]["police"]))
    assert ok.status_code == 200 and "Violation" in ok.text
