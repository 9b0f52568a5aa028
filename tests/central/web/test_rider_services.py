"""Rider services over HTTP (the real app, the real desk): the link the reminder tasks carry, the lesson video
with Range requests, the penalty query, and the quiz going through the desk's feedback rules."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_sync.config import CentralConfig, parse_config
from central_sync.dispositions import DispositionDesk
from central_sync.sharing.http import create_app
from central_sync.storage.models import AuditEntry, Disposition, Person, Task
from central_sync.storage.store import CentralStore, ViolationRecord
from central_sync.storage.webtables import RiderToken, token_hash
from central_sync.web.rider import PACKAGED, ContentError

RIGHT = {"q0": "0", "q1": "1", "q2": "1", "q3": "1"}  # the packaged bank's answers


def config(tmp: Path, **extra: Any) -> CentralConfig:
    return parse_config(
        {
            "database": {"url": f"sqlite:///{tmp / 'central.db'}"},
            "media": {"dir": str(tmp / "media")},
            "dispositions": {"rider_url": "https://anqi.example.cn/"},
            **extra,
        },
        "test",
        tmp,
    )


def rider_with_tasks(store: CentralStore, cfg: CentralConfig, pid: str) -> dict[str, dict[str, Any]]:
    """An enrolled rider with two violations an hour ago: the occasional tier's three tasks, by kind."""
    now = datetime.now(timezone.utc)
    with store.session() as s:
        s.add(Person(person_id=pid, kind="enrolled", name="张三", community="飞英社区", tier="none"))
    store.add_violations(
        [
            ViolationRecord(
                str(uuid.uuid4()), "no_helmet", now - timedelta(hours=2), pid, point_id="人民路口"
            ),
            ViolationRecord(
                str(uuid.uuid4()), "passenger", now - timedelta(hours=1), pid, point_id="红旗路口"
            ),
        ]
    )
    msgs = DispositionDesk(cfg, store).apply_assessment(store.assess_person(pid, now, cfg.tiers))
    return {m.payload["kind"]: m.payload for m in msgs}


def path_of(link: str) -> str:
    assert link.startswith("https://anqi.example.cn/rider/"), link
    return link[len("https://anqi.example.cn") :]


def test_reminder_tasks_carry_the_riders_link_lesson_streams_and_penalty_query(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = CentralStore.from_config(cfg)
    tasks = rider_with_tasks(store, cfg, "P-1")
    assert sorted(tasks) == ["case_study_link", "sms_reminder", "voice_reminder"]
    # one link per tier change: the SMS and the voice reminder carry the case-study task's link
    link = tasks["case_study_link"]["link"]
    assert tasks["sms_reminder"]["link"] == tasks["voice_reminder"]["link"] == link
    assert tasks["case_study_link"]["case_study_url"] == cfg.dispositions.case_study_url
    token = link.rsplit("/", 1)[1]
    with store.session() as s:
        row = s.get(RiderToken, token_hash(token))
        assert row is not None and row.task_id == tasks["case_study_link"]["task_id"]
        assert row.expires_at is not None and row.created_at is not None
        assert row.expires_at - row.created_at == timedelta(days=30)
        # the database keeps the token's hash, not the token
        assert s.get(RiderToken, token) is None

    client = TestClient(create_app(cfg, store))
    home = client.get(path_of(link))
    assert home.status_code == 200 and "我的违法记录" in home.text and "违法处理和处罚查询" in home.text
    assert f"/rider/{token}/lesson/lesson.mp4" in home.text

    # the lesson video: Range requests answered with 206 and the exact bytes (the player seeks with them)
    data = (PACKAGED / "lesson.mp4").read_bytes()
    whole = client.get(f"/rider/{token}/lesson/lesson.mp4")
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    part = client.get(f"/rider/{token}/lesson/lesson.mp4", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = client.get(f"/rider/{token}/lesson/lesson.mp4", headers={"Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == data[-500:]
    assert (
        client.get(f"/rider/{token}/lesson/lesson.mp4", headers={"Range": f"bytes={len(data)}-"}).status_code
        == 416
    )
    for bad in ("quiz.yaml", "..%2Fauth.py", "missing.mp4"):
        assert client.get(f"/rider/{token}/lesson/{bad}").status_code == 404, bad
    assert client.get("/rider/not-a-token/lesson/lesson.mp4").status_code == 404

    # 违法处理和处罚查询: both violations open, the reminders listed with their status
    q = client.get(f"/rider/{token}/query")
    assert q.status_code == 200 and "违法 2 起，待处理 2 起" in q.text
    assert "人民路口" in q.text and "违规载人" in q.text and "短信提醒" in q.text and "待办" in q.text

    # passing the quiz: the case-study task done as education (the repeat rule counts it), through the desk
    r = client.post(f"/rider/{token}/quiz", data=RIGHT)
    assert "考试通过，已记为学习教育" in r.text
    with store.session() as s:
        t = s.get(Task, tasks["case_study_link"]["task_id"])
        assert t is not None and t.status == "done" and t.outcome == "education"
        d = s.scalars(select(Disposition).where(Disposition.person_id == "P-1")).one()
        assert (d.kind, d.source, d.task_id) == ("education", "feedback", t.task_id)
    q = client.get(f"/rider/{token}/query")  # the link still shows the records until it expires
    assert "违法 2 起，待处理 0 起" in q.text and "已处理（学习教育" in q.text and "已办结" in q.text
    assert "本链接的考试已通过" in client.get(f"/rider/{token}").text
    again = client.post(f"/rider/{token}/quiz", data=RIGHT)
    assert "无需再考" in again.text
    with store.session() as s:
        assert len(s.scalars(select(Disposition)).all()) == 1
        # the rider's views of their own file are audited (who: the link's task; which person)
        seen = [
            (a.action, a.actor, a.persons)
            for a in s.scalars(
                select(AuditEntry).where(AuditEntry.role == "web:rider").order_by(AuditEntry.id)
            )
        ]
    actor = f"rider-link:{tasks['case_study_link']['task_id']}"
    assert seen[:2] == [("rider_page_view", actor, ["P-1"]), ("rider_penalty_query", actor, ["P-1"])]
    assert len(seen) == 4  # the page twice, the query twice
    store.close()


def test_the_quiz_does_not_bypass_the_feedback_rules(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = CentralStore.from_config(cfg)
    tasks = rider_with_tasks(store, cfg, "P-2")
    token = tasks["case_study_link"]["link"].rsplit("/", 1)[1]
    # the community closed the case-study task already (the rider was shown the case in person)
    desk = DispositionDesk(cfg, store)
    assert desk.record_feedback(
        {
            "task_id": tasks["case_study_link"]["task_id"],
            "status": "done",
            "time": datetime.now(timezone.utc).isoformat(),
        }
    )
    client = TestClient(create_app(cfg, store))
    r = client.post(f"/rider/{token}/quiz", data=RIGHT)
    assert r.status_code == 200 and "该任务已办结，本次不再记录" in r.text
    with store.session() as s:  # no education recorded behind the closed task's back
        assert [d.kind for d in s.scalars(select(Disposition))] == ["case_study_link"]

    # a failed quiz records nothing; a withdrawn task (identity corrected) and an expired link open nothing
    tasks3 = rider_with_tasks(store, cfg, "P-3")
    token3 = tasks3["case_study_link"]["link"].rsplit("/", 1)[1]
    wrong = client.post(f"/rider/{token3}/quiz", data={"q0": "1"})
    assert "未通过" in wrong.text
    with store.session() as s:
        t3 = s.get(Task, tasks3["case_study_link"]["task_id"])
        assert t3 is not None and t3.status == "open"
        t3.status = "cancelled"
    assert client.get(f"/rider/{token3}").status_code == 404
    assert client.post(f"/rider/{token3}/quiz", data=RIGHT).status_code == 404
    with store.session() as s:
        s.get(RiderToken, token_hash(token)).expires_at = datetime.now(timezone.utc) - timedelta(seconds=1)  # type: ignore[union-attr]
    assert client.get(f"/rider/{token}/query").status_code == 404
    store.close()


def test_a_configured_content_folder_is_checked_at_start(tmp_path: Path) -> None:
    folder = tmp_path / "content"
    folder.mkdir()
    (folder / "quiz.yaml").write_text(
        "pass_mark: 1\nquestions:\n  - q: 头盔？\n    options: [戴, 不戴]\n    answer: 2\n", encoding="utf-8"
    )
    cfg = config(tmp_path, web={"content_dir": str(folder)})
    store = CentralStore.from_config(cfg)
    with pytest.raises(ContentError, match=r"quiz.yaml: questions\[0\].answer"):
        create_app(cfg, store)
    (folder / "quiz.yaml").write_text(
        "pass_mark: 1\nquestions:\n  - q: 头盔？\n    options: [戴, 不戴]\n    answer: 0\n", encoding="utf-8"
    )
    (folder / "site-case.webm").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(2000))
    tasks = rider_with_tasks(store, cfg, "P-4")
    token = tasks["case_study_link"]["link"].rsplit("/", 1)[1]
    client = TestClient(create_app(cfg, store))
    home = client.get(f"/rider/{token}").text
    assert "头盔？" in home and "共 1 题" in home  # the site's bank, the package's case text
    assert "/lesson/lesson.mp4" in home and "/lesson/site-case.webm" in home
    r = client.get(f"/rider/{token}/lesson/site-case.webm", headers={"Range": "bytes=0-3"})
    assert (
        r.status_code == 206
        and r.content == b"\x1a\x45\xdf\xa3"
        and r.headers["content-type"] == "video/webm"
    )
    assert "考试通过" in client.post(f"/rider/{token}/quiz", data={"q0": "0"}).text
    with pytest.raises(ContentError, match="web.content_dir"):
        create_app(config(tmp_path, web={"content_dir": str(tmp_path / "nowhere")}), store)
    store.close()
