"""Requests per token are limited (issue 23 point 3: "no rate limit"): past api.rate_per_minute a token gets 429 with
Retry-After over HTTP and SOAP, audited; other tokens go on; the bucket refills. SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from central_sync.config import parse_config
from central_sync.sharing.access import create_token
from central_sync.sharing.http import create_app
from central_sync.sharing.limits import RateLimit
from central_sync.sharing.soap import NS, SOAP_NS
from central_sync.storage.models import AuditEntry
from central_sync.storage.store import CentralStore

RANGE = {"from": "2026-05-01", "to": "2026-05-31"}


def test_a_token_over_its_rate_gets_429_with_retry_after_and_is_audited(
    store: CentralStore, tmp_path: Path
) -> None:
    cfg = parse_config({"api": {"rate_per_minute": 5}}, "c.yaml", tmp_path)
    busy, other = create_token(store, cfg, "busy", "police"), create_token(store, cfg, "other", "police")
    c = TestClient(create_app(cfg, store))
    h = {"Authorization": f"Bearer {busy}"}
    codes = [c.get("/api/v1/persons", params=RANGE, headers=h).status_code for _ in range(5)]
    assert codes == [200] * 5
    r = c.get("/api/v1/violations", params=RANGE, headers=h)
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 12
    env = (
        f'<soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:a="{NS}"><soap:Header><a:Token>{busy}</a:Token></soap:Header>'
        "<soap:Body><a:GetPersons><a:From>2026-05-01</a:From><a:To>2026-05-31</a:To></a:GetPersons></soap:Body>"
        "</soap:Envelope>"
    )
    r = c.post("/soap", content=env, headers={"Content-Type": "text/xml"})
    assert r.status_code == 429 and b"requests per minute" in r.content and "Retry-After" in r.headers
    assert (
        c.get("/api/v1/persons", params=RANGE, headers={"Authorization": f"Bearer {other}"}).status_code
        == 200
    )
    with store.session() as s:
        limited = [
            (a.actor, a.action, a.status)
            for a in s.scalars(select(AuditEntry).where(AuditEntry.status == 429))
        ]
    assert limited == [("busy", "rate_limited:/api/v1/violations", 429), ("busy", "rate_limited:/soap", 429)]


def test_the_bucket_refills_evenly() -> None:
    r = RateLimit(600)  # 10 per second
    assert all(r.take("t") == 0 for _ in range(600))
    wait = r.take("t")
    assert 0 < wait <= 0.11
    time.sleep(0.25)
    assert r.take("t") == 0 and r.take("t") == 0
    assert RateLimit(0).take("t") == 0  # 0: no limit
