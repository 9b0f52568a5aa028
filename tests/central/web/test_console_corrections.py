"""The console's file corrections over HTTP (the real app, the real desk, SQLite): a merge names the officer and
his reason and re-assesses the target's tier at once; the person page shows the corrections history and undoes a
merge; open face-match reviews are listed and cleared with a note — each with the merge form's roles, community
scoping and CSRF check."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from central_sync.config import CentralConfig, parse_config
from central_sync.corrections import changes
from central_sync.dispositions import DispositionDesk
from central_sync.sharing.http import create_app
from central_sync.storage.models import AuditEntry, Person, Review, Task, TierChange
from central_sync.storage.store import CentralStore, ViolationRecord
from central_sync.web import auth

PASSWORD = "correct horse battery"


def config(tmp: Path) -> CentralConfig:
    return parse_config(
        {"database": {"url": f"sqlite:///{tmp / 'central.db'}"}, "media": {"dir": str(tmp / "media")}},
        "test",
        tmp,
    )


def violations(store: CentralStore, pid: str, hours: list[int]) -> None:
    now = datetime.now(timezone.utc)
    store.add_violations(
        [
            ViolationRecord(
                str(uuid.uuid4()), "no_helmet", now - timedelta(hours=h), pid, point_id="人民路口"
            )
            for h in hours
        ]
    )


def logged_in(store: CentralStore, cfg: CentralConfig, user: str, role: str, community: str) -> TestClient:
    auth.add_user(store, user, PASSWORD, role, [community])
    c = TestClient(create_app(cfg, store), follow_redirects=False)
    r = c.post("/console/login", data={"username": user, "password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/console"
    return c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no form with a CSRF token on the page"
    return m.group(1)


def tier(store: CentralStore, pid: str) -> str:
    with store.session() as s:
        p = s.get(Person, pid)
        assert p is not None
        return p.tier


def test_merge_unmerge_and_reviews_name_the_officer_and_respect_roles(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = CentralStore.from_config(cfg)
    with store.session() as s:
        store.ensure_person(s, "P-A", kind="enrolled", community="飞英社区")
        store.ensure_person(s, "P-A2", kind="enrolled", community="飞英社区")
        store.ensure_person(s, "P-B", kind="enrolled", community="龙溪社区")
        # unknown files carry no community from the consumer (only unscoped officers see them); give this one a
        # community so that the scoped officers below see it
        store.ensure_person(s, "U-1", kind="unknown", community="飞英社区")
    violations(store, "P-A", [30, 20])
    violations(store, "U-1", [10, 5])
    now = datetime.now(timezone.utc)
    desk = DispositionDesk(cfg, store)
    for pid in ("P-A", "U-1"):
        desk.send(desk.reassess(pid, now)[1])
    assert tier(store, "P-A") == "occasional"

    cop = logged_in(store, cfg, "cop", "police", "飞英社区")
    other_cop = logged_in(store, cfg, "cop2", "police", "龙溪社区")
    worker = logged_in(store, cfg, "w1", "community", "飞英社区")

    # ---- merge: the officer and a reason are on record, the target's tier follows at once
    page = cop.get("/console/person/U-1")
    assert page.status_code == 200 and 'id="merge-reason"' in page.text
    csrf = csrf_of(page.text)
    w_csrf = csrf_of(worker.get("/console/person/P-A").text)
    assert "/merge" not in worker.get("/console/person/U-1").text  # no merge form for a community worker
    assert (
        worker.post(
            "/console/person/U-1/merge", data={"target": "P-A", "reason": "同一人", "csrf": w_csrf}
        ).status_code
        == 403
    )
    assert (
        cop.post(
            "/console/person/U-1/merge", data={"target": "P-A", "reason": "同一人的照片", "csrf": "guess"}
        ).status_code
        == 403
    )
    assert cop.post("/console/person/U-1/merge", data={"target": "P-A", "csrf": csrf}).status_code == 422
    assert (
        cop.post(
            "/console/person/U-1/merge", data={"target": "P-B", "reason": "同一人", "csrf": csrf}
        ).status_code
        == 422
    )  # the target is outside the officer's communities
    assert tier(store, "P-A") == "occasional"  # nothing was merged by the refused forms
    r = cop.post(
        "/console/person/U-1/merge", data={"target": "P-A", "reason": "照片比对为同一人", "csrf": csrf}
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/person/P-A"
    [c] = changes(store, "P-A")
    assert (c["action"], c["from"], c["to"], c["by"], c["reason"]) == (
        "merge",
        "U-1",
        "P-A",
        "cop",
        "照片比对为同一人",
    )
    assert c["moved"]["events"] == 2
    # four violations in a day: the target is frequent now, not at the next event or the daily pass
    assert tier(store, "P-A") == "frequent"
    with store.session() as s:
        assert [t.to_tier for t in s.scalars(select(TierChange).where(TierChange.person_id == "P-A"))] == [
            "occasional",
            "frequent",
        ]
        assert s.scalars(select(Task).where(Task.person_id == "P-A", Task.tier == "frequent")).first()

    # ---- the person page shows the history; only a merging role gets the undo form
    page = cop.get("/console/person/P-A")
    assert 'id="changes"' in page.text and "照片比对为同一人" in page.text and "撤销合并" in page.text
    assert 'action="/console/person/U-1/unmerge"' in page.text
    wpage = worker.get("/console/person/P-A")
    assert "照片比对为同一人" in wpage.text and "/unmerge" not in wpage.text
    assert (
        worker.post("/console/person/U-1/unmerge", data={"reason": "认错人了", "csrf": w_csrf}).status_code
        == 403
    )
    o_csrf = csrf_of(other_cop.get("/console/person/P-B").text)
    assert (
        other_cop.post("/console/person/U-1/unmerge", data={"reason": "认错人了", "csrf": o_csrf}).status_code
        == 404
    )  # the merged-into file is outside his communities
    assert cop.post("/console/person/U-1/unmerge", data={"reason": "", "csrf": csrf}).status_code == 422
    assert (
        cop.post("/console/person/U-1/unmerge", data={"reason": "认错人了", "csrf": "guess"}).status_code
        == 403
    )
    assert tier(store, "P-A") == "frequent"
    r = cop.post("/console/person/U-1/unmerge", data={"reason": "复核后认定不是同一人", "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/console/person/P-A"
    assert tier(store, "P-A") == "occasional" and tier(store, "U-1") == "occasional"
    undo, merge = changes(store, "P-A")
    assert (undo["action"], undo["by"], undo["reason"]) == ("unmerge", "cop", "复核后认定不是同一人")
    assert merge["undone_by"] == undo["change"]
    page = cop.get("/console/person/P-A")
    assert (
        f"已撤销（#{undo['change']}）" in page.text
        and 'action="/console/person/U-1/unmerge"' not in page.text
    )
    # undoing twice is refused with the core's reason
    r = cop.post("/console/person/U-1/unmerge", data={"reason": "再撤销一次", "csrf": csrf})
    assert r.status_code == 404  # U-1 is no longer merged into anyone

    # ---- reviews: scoped to both persons' communities, cleared with a note by a merging role
    with store.session() as s:
        mine = Review(
            kind="uncertain_match", person_id="P-A", other_person_id="P-A2", score=0.71, other_score=0.69
        )
        cross = Review(
            kind="uncertain_match", person_id="P-A", other_person_id="P-B", score=0.70, other_score=0.69
        )
        s.add_all([mine, cross])
        s.flush()
        mine_id, cross_id = mine.id, cross.id
    page = cop.get("/console/reviews")
    assert page.status_code == 200
    assert f'action="/console/reviews/{mine_id}/clear"' in page.text
    assert f"/console/reviews/{cross_id}/clear" not in page.text and "P-B" not in page.text
    assert (
        "/clear" not in worker.get("/console/reviews").text and "P-A2" in worker.get("/console/reviews").text
    )
    ok = {"resolution": "confirmed", "note": "人工比对照片，匹配无误", "csrf": csrf}
    assert worker.post(f"/console/reviews/{mine_id}/clear", data={**ok, "csrf": w_csrf}).status_code == 403
    assert cop.post(f"/console/reviews/{mine_id}/clear", data={**ok, "csrf": "guess"}).status_code == 403
    assert cop.post(f"/console/reviews/{cross_id}/clear", data=ok).status_code == 404
    assert cop.post(f"/console/reviews/{mine_id}/clear", data={**ok, "note": " "}).status_code == 422
    assert (
        cop.post(f"/console/reviews/{mine_id}/clear", data={**ok, "resolution": "reassigned"}).status_code
        == 422
    )
    r = cop.post(f"/console/reviews/{mine_id}/clear", data=ok)
    assert r.status_code == 303 and r.headers["location"] == "/console/reviews"
    r = cop.post(f"/console/reviews/{mine_id}/clear", data=ok)
    assert r.status_code == 422 and "cleared already" in r.text
    with store.session() as s:
        got = s.get(Review, mine_id)
        assert got is not None
        assert (got.cleared_by, got.resolution, got.note) == ("cop", "confirmed", "人工比对照片，匹配无误")
        left = s.get(Review, cross_id)
        assert left is not None and left.cleared_at is None
        web = [
            a.action
            for a in s.scalars(select(AuditEntry).where(AuditEntry.actor == "cop"))
            if "web_" in a.action
        ]
        assert {"web_merge", "web_unmerge", "web_review_cleared"} <= set(web)
    assert f"/console/reviews/{mine_id}/clear" not in cop.get("/console/reviews").text
    store.close()
