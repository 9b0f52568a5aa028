"""Data sharing over HTTP and SOAP: roles decide rows and fields, tokens hashed, every query audited."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_sync.config import CentralConfig
from central_sync.sharing.access import (
    AccessDenied,
    authenticate,
    create_token,
    hash_token,
    mask_id_number,
    revoke_token,
)
from central_sync.sharing.http import create_app
from central_sync.sharing.soap import NS, SOAP_NS
from central_sync.storage.models import ApiToken, AuditEntry, Person
from central_sync.storage.store import CentralStore, ViolationRecord

T = datetime(2026, 5, 10, 2, 0, tzinfo=timezone.utc)  # 10:00 in Huzhou
ID_A = "330502199001011234"
ID_B = "330503198502023456"


@pytest.fixture
def api(store: CentralStore) -> dict[str, Any]:
    cfg = CentralConfig()
    with store.session() as s:
        s.add(
            Person(
                person_id="A1",
                kind="enrolled",
                name="Li Si",
                id_number=ID_A,
                community="Feiying",
                tier="frequent",
            )
        )
        s.add(
            Person(
                person_id="B1",
                kind="enrolled",
                name="Wang Wu",
                id_number=ID_B,
                community="Renhuangshan",
                tier="occasional",
            )
        )
    recs = [
        ViolationRecord(str(uuid.uuid4()), "no_helmet", T + timedelta(hours=i), "A1", point_id="pt-1")
        for i in range(3)
    ]
    recs += [
        ViolationRecord(str(uuid.uuid4()), "no_helmet", T + timedelta(hours=i), "B1", point_id="pt-2")
        for i in range(2)
    ]
    recs += [ViolationRecord(str(uuid.uuid4()), "no_helmet", T + timedelta(days=40), "A1", point_id="pt-1")]
    store.add_violations(recs)
    tokens = {
        "police": create_token(store, cfg, "police-1", "police"),
        "feiying": create_token(store, cfg, "feiying-1", "community", "Feiying"),
        "analyst": create_token(store, cfg, "analyst-1", "analyst"),
    }
    return {"client": TestClient(create_app(cfg, store)), "tokens": tokens, "store": store, "cfg": cfg}


def get(api: dict[str, Any], path: str, who: str | None, **params: str) -> Any:
    headers = {"Authorization": f"Bearer {api['tokens'][who]}"} if who else {}
    return api["client"].get(
        path, params={"from": "2026-05-01", "to": "2026-05-31", **params}, headers=headers
    )


def test_police_sees_every_community_with_full_id_numbers(api: dict[str, Any]) -> None:
    r = get(api, "/api/v1/violations", "police")
    assert r.status_code == 200
    rows = r.json()
    assert len(rows) == 5  # the violation 40 days later is outside the range
    a = next(x for x in rows if x["person_id"] == "A1")
    assert a["id_number"] == ID_A and a["name"] == "Li Si" and a["count"] == 3 and a["community"] == "Feiying"
    assert a["date"] == "2026-05-10" and a["point_id"] == "pt-1"
    p = get(api, "/api/v1/persons", "police").json()
    assert [(x["person_id"], x["count"], x["points"]) for x in p] == [
        ("A1", 3, ["pt-1"]),
        ("B1", 2, ["pt-2"]),
    ]


def test_community_token_sees_only_its_residents_with_masked_id_numbers(api: dict[str, Any]) -> None:
    rows = get(api, "/api/v1/violations", "feiying").json()
    assert {x["person_id"] for x in rows} == {"A1"}
    assert all(x["id_number"] == mask_id_number(ID_A) and ID_A not in str(x) for x in rows)
    assert mask_id_number(ID_A) == "330*************34"
    persons = get(api, "/api/v1/persons", "feiying").json()
    assert [x["person_id"] for x in persons] == ["A1"] and persons[0]["id_number"] != ID_A


def test_community_token_cannot_query_another_community(api: dict[str, Any]) -> None:
    r = get(api, "/api/v1/violations", "feiying", community="Renhuangshan")
    assert r.status_code == 403
    r = get(api, "/api/v1/persons", "feiying", community="Renhuangshan")
    assert r.status_code == 403
    assert get(api, "/api/v1/violations", "feiying", community="Feiying").status_code == 200


def test_no_query_parameter_unmasks_id_numbers_for_a_community_token(api: dict[str, Any]) -> None:
    for extra in ({"id_number": "full"}, {"mask": "false"}, {"role": "police"}, {"fields": "id_number"}):
        r = get(api, "/api/v1/violations", "feiying", **extra)
        assert r.status_code == 200 and ID_A not in r.text


def test_analyst_sees_all_rows_but_masked_names_and_ids(api: dict[str, Any]) -> None:
    rows = get(api, "/api/v1/persons", "analyst").json()
    assert len(rows) == 2 and all(x["name"].endswith("*") and "*" in x["id_number"] for x in rows)


def test_filters_by_point_and_tier(api: dict[str, Any]) -> None:
    assert {x["person_id"] for x in get(api, "/api/v1/violations", "police", point="pt-2").json()} == {"B1"}
    assert {x["person_id"] for x in get(api, "/api/v1/persons", "police", tier="frequent").json()} == {"A1"}
    assert get(api, "/api/v1/persons", "police", tier="bogus").status_code == 422
    assert get(api, "/api/v1/persons", "police", **{"from": "2026-13-01"}).status_code == 422


def test_passenger_violations_are_shared_by_type(api: dict[str, Any]) -> None:
    """Issue 18: a passenger (违规载人) event is one more violation of its person, and can be asked for by type."""
    api["store"].add_violations(
        [ViolationRecord(str(uuid.uuid4()), "passenger", T + timedelta(hours=5), "A1", point_id="pt-1")]
    )
    rows = get(api, "/api/v1/violations", "police", type="passenger").json()
    assert [(x["person_id"], x["violation_type"], x["count"]) for x in rows] == [("A1", "passenger", 1)]
    assert len(get(api, "/api/v1/violations", "police").json()) == 6
    persons = {x["person_id"]: x for x in get(api, "/api/v1/persons", "police").json()}
    assert persons["A1"]["count"] == 4 and persons["A1"]["types"] == ["no_helmet:3", "passenger:1"]
    assert persons["B1"]["types"] == ["no_helmet:2"]
    assert [x["person_id"] for x in get(api, "/api/v1/persons", "police", type="passenger").json()] == ["A1"]
    assert get(api, "/api/v1/violations", "police", type="speeding").status_code == 422
    import xml.etree.ElementTree as ET

    r = soap_call(api, "GetViolations", api["tokens"]["police"], Type="passenger")
    assert r.status_code == 200 and len(ET.fromstring(r.content).findall(f".//{{{NS}}}Violation")) == 1
    r = soap_call(api, "GetPersons", api["tokens"]["police"])
    assert "no_helmet:3;passenger:1" in r.text
    assert "type" in {
        p["name"]
        for p in api["client"].get("/openapi.json").json()["paths"]["/api/v1/violations"]["get"]["parameters"]
    }


def test_missing_wrong_and_revoked_tokens_are_refused_and_audited(api: dict[str, Any]) -> None:
    assert get(api, "/api/v1/violations", None).status_code == 401
    r = api["client"].get(
        "/api/v1/violations",
        params={"from": "2026-05-01", "to": "2026-05-31"},
        headers={"Authorization": "Bearer nope"},
    )
    assert r.status_code == 401
    assert revoke_token(api["store"], "analyst-1")
    assert get(api, "/api/v1/violations", "analyst").status_code == 401
    with api["store"].session() as s:
        actions = [a.action for a in s.scalars(select(AuditEntry))]
    assert actions.count("denied:/api/v1/violations") == 3


def test_every_query_is_audited_without_secrets(api: dict[str, Any]) -> None:
    get(api, "/api/v1/violations", "police", point="pt-1")
    get(api, "/api/v1/persons", "feiying")
    get(api, "/api/v1/violations", "feiying", community="Renhuangshan")
    with api["store"].session() as s:
        entries = list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        hashes = [t.token_hash for t in s.scalars(select(ApiToken))]
    assert [(e.actor, e.action, e.rows) for e in entries] == [
        ("police-1", "violations", 3),
        ("feiying-1", "persons", 1),
        ("feiying-1", "violations_denied", 0),
    ]
    assert entries[0].params["point"] == "pt-1"
    dump = str([(e.params, e.actor) for e in entries])
    assert all(tok not in dump for tok in api["tokens"].values())
    # tokens are stored hashed only
    assert set(hashes) == {hash_token(t) for t in api["tokens"].values()}
    assert not any(t in hashes for t in api["tokens"].values())


def test_openapi_documents_the_queries(api: dict[str, Any]) -> None:
    spec = api["client"].get("/openapi.json").json()
    assert {"/api/v1/violations", "/api/v1/persons", "/soap"} <= set(spec["paths"])
    # offline: no page that loads its scripts from a CDN (blank on an isolated police network); /docs is rendered on
    # the server and fetches nothing
    assert api["client"].get("/redoc").status_code == 404
    r = api["client"].get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
    html = r.text.lower()
    assert "<script" not in html and "http://" not in html and "https://" not in html and "<link" not in html
    for text in (
        "/api/v1/violations",
        "/api/v1/persons",
        "/soap",
        "cursor",
        "x-total-count",
        "x-next-cursor",
    ):
        assert text in html, text


def test_bad_input_is_a_4xx_never_a_500(api: dict[str, Any]) -> None:
    """Before: from=0001-01-01 overflowed the time zone conversion and a NUL byte reached the database: HTTP 500."""
    for params in (
        {"from": "0001-01-01"},
        {"to": "9999-12-31"},
        {"from": "0001-01-01T00:00:00+14:00"},
        {"point": "pt\x001"},
        {"community": "Fei\x00ying"},
        {"point": "x" * 500},
    ):
        r = get(api, "/api/v1/violations", "police", **params)
        assert r.status_code == 422, (params, r.status_code, r.text)
        r = get(api, "/api/v1/persons", "police", **params)
        assert r.status_code == 422, (params, r.status_code)
    r = soap_call(api, "GetViolations", api["tokens"]["police"], From="0001-01-01")
    assert "soap:Client" in r.text and "1970..9998" in r.text
    r = soap_call(api, "GetViolations", api["tokens"]["police"], Point="pt&#0;1")  # XML cannot even carry it
    assert "soap:Client" in r.text


def test_a_body_over_the_limit_is_refused_before_it_is_parsed_and_audited(api: dict[str, Any]) -> None:
    """Before: a 20 MB SOAP body was parsed before the token check (4.4 s, +430 MB)."""
    import time

    big = b"<a>" + b"x" * (20 << 20) + b"</a>"
    t = time.perf_counter()
    r = api["client"].post("/soap", content=big, headers={"Content-Type": "text/xml"})
    assert r.status_code == 413 and time.perf_counter() - t < 2.0

    def chunks() -> Any:  # no Content-Length: refused while it streams in
        for _ in range(40):
            yield b"x" * 65536

    r = api["client"].post("/soap", content=chunks(), headers={"Content-Type": "text/xml"})
    assert r.status_code == 413
    with api["store"].session() as s:
        refused = [a for a in s.scalars(select(AuditEntry)) if a.action == "refused:/soap"]
    assert len(refused) == 2
    assert (
        soap_call(api, "GetViolations", api["tokens"]["police"]).status_code == 200
    )  # normal calls still fit


def test_wsdl_does_not_echo_the_host_header(api: dict[str, Any]) -> None:
    r = api["client"].get("/soap", params={"wsdl": ""}, headers={"Host": "evil.example:666"})
    assert r.status_code == 200 and "evil.example" not in r.text
    assert 'location="http://127.0.0.1:8080/soap"' in r.text


def soap_call(api: dict[str, Any], op: str, token: str | None, **params: str) -> Any:
    header = f"<soap:Header><a:Token>{token}</a:Token></soap:Header>" if token else ""
    args = "".join(
        f"<a:{k}>{v}</a:{k}>" for k, v in {"From": "2026-05-01", "To": "2026-05-31", **params}.items()
    )
    env = (
        f'<?xml version="1.0"?><soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:a="{NS}">{header}'
        f"<soap:Body><a:{op}>{args}</a:{op}></soap:Body></soap:Envelope>"
    )
    return api["client"].post(
        "/soap", content=env.encode(), headers={"Content-Type": "text/xml", "SOAPAction": f"{NS}#{op}"}
    )


def test_soap_offers_the_same_queries_with_the_same_role_rules(api: dict[str, Any]) -> None:
    import xml.etree.ElementTree as ET

    wsdl = api["client"].get("/soap", params={"wsdl": ""})
    assert wsdl.status_code == 200 and "GetViolations" in wsdl.text and "GetPersons" in wsdl.text
    ET.fromstring(wsdl.text.encode())  # well-formed
    r = soap_call(api, "GetViolations", api["tokens"]["police"])
    assert r.status_code == 200
    root = ET.fromstring(r.content)
    items = root.findall(f".//{{{NS}}}Violation")
    assert len(items) == 5 and ID_A in r.text
    r = soap_call(api, "GetPersons", api["tokens"]["feiying"])
    persons = ET.fromstring(r.content).findall(f".//{{{NS}}}Person")
    assert [p.find(f"{{{NS}}}person_id").text for p in persons] == ["A1"] and ID_A not in r.text  # type: ignore[union-attr]
    r = soap_call(api, "GetPersons", api["tokens"]["feiying"], Community="Renhuangshan")
    assert r.status_code == 500 and "faultstring" in r.text and "Feiying" in r.text
    r = soap_call(api, "GetPersons", None)
    assert r.status_code == 500 and "authentication failed" in r.text
    r = soap_call(api, "DropTables", api["tokens"]["police"])
    assert r.status_code == 500 and "unknown operation" in r.text


def test_soap_refuses_entity_expansion(api: dict[str, Any]) -> None:
    evil = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&b;</soap:Body></soap:Envelope>'
    )
    r = api["client"].post("/soap", content=evil, headers={"Content-Type": "text/xml"})
    assert r.status_code == 500 and "soap:Client" in r.text


def test_token_creation_checks_role_and_community(store: CentralStore) -> None:
    cfg = CentralConfig()
    with pytest.raises(ValueError, match="not in api.roles"):
        create_token(store, cfg, "x", "mayor")
    with pytest.raises(ValueError, match="--community"):
        create_token(store, cfg, "x", "community")
    create_token(store, cfg, "x", "police")
    with pytest.raises(ValueError, match="exists"):
        create_token(store, cfg, "x", "police")


def test_anqi_central_serve_answers_over_http(tmp_path: Any) -> None:
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    from anqi_contract.localbroker import free_port

    port = free_port()
    cfgf = Path(tmp_path) / "central.yaml"
    cfgf.write_text(f"database:\n  url: sqlite:///c.db\napi:\n  port: {port}\n")
    exe = Path(sys.executable).with_name("anqi-central")
    proc = subprocess.Popen(
        [str(exe), "serve", "--config", str(cfgf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        r = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert r is not None and r.status_code == 200 and "/api/v1/persons" in r.json()["paths"]
        assert (
            httpx.get(
                f"http://127.0.0.1:{port}/api/v1/persons", params={"from": "2026-05-01", "to": "2026-05-02"}
            ).status_code
            == 401
        )
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_bad_tokens_lock_the_address_out_and_are_audited(api: dict[str, Any]) -> None:
    """Before: no rate limit, no lockout (tokens could be guessed at full speed)."""
    n = api["cfg"].api.max_bad_tokens
    for i in range(n):
        r = api["client"].get(
            "/api/v1/violations",
            params={"from": "2026-05-01", "to": "2026-05-31"},
            headers={"Authorization": f"Bearer anqi_guess{i}"},
        )
        assert r.status_code == 401
    assert get(api, "/api/v1/violations", "police").status_code == 429  # even a good token, from that address
    assert soap_call(api, "GetViolations", api["tokens"]["police"]).status_code == 429
    with api["store"].session() as s:
        actions = [a.action for a in s.scalars(select(AuditEntry))]
    assert actions.count("denied:/api/v1/violations") == n
    assert "locked:/api/v1/violations" in actions and "locked:/soap" in actions


def test_anqi_central_serve_speaks_tls_and_logs_no_token(tmp_path: Any) -> None:
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    from anqi_contract.localbroker import free_port

    tmp = Path(tmp_path)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(tmp / "key.pem"),
            "-out",
            str(tmp / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    cfgf = tmp / "central.yaml"
    cfgf.write_text(
        f"database:\n  url: sqlite:///c.db\napi:\n  port: {port}\n  tls_cert_file: cert.pem\n  tls_key_file: key.pem\n"
    )
    exe = Path(sys.executable).with_name("anqi-central")
    proc = subprocess.Popen(
        [str(exe), "serve", "--config", str(cfgf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    secret = "anqi_secret_in_the_query_string"
    try:
        deadline = time.monotonic() + 30
        r = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(
                    f"https://127.0.0.1:{port}/openapi.json", timeout=2, verify=str(tmp / "cert.pem")
                )
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert r is not None and r.status_code == 200
        with __import__("pytest").raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2)  # plain HTTP is not served
        r = httpx.get(
            f"https://127.0.0.1:{port}/api/v1/persons",
            params={"from": "2026-05-01", "to": "2026-05-02", "token": secret},
            verify=str(tmp / "cert.pem"),
        )
        assert r.status_code == 401
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert secret not in err


def test_a_revoked_name_can_be_used_again_and_tokens_are_listed_without_secrets(store: CentralStore) -> None:
    """Before: a revoked name could never be given to a new token, and there was no way to list tokens."""
    from central_sync.sharing.access import list_tokens

    cfg = CentralConfig()
    first = create_token(store, cfg, "station-7", "police")
    with pytest.raises(ValueError, match="exists"):
        create_token(store, cfg, "station-7", "police")
    assert revoke_token(store, "station-7")
    second = create_token(store, cfg, "station-7", "analyst")  # rotation under the same name
    with pytest.raises(AccessDenied):
        authenticate(store, cfg, first)
    assert authenticate(store, cfg, second).role_name == "analyst"
    listed = list_tokens(store)
    assert [(t["name"].split("~")[0], t["role"], t["revoked_at"] is None) for t in listed] == [
        ("station-7", "police", False),
        ("station-7", "analyst", True),
    ]
    assert first not in str(listed) and second not in str(listed) and hash_token(second) not in str(listed)
