"""Rider services: ``/rider/{token}`` (one-time link of a reminder task): own violations, case study, lessons,
penalty query, quiz."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from html import escape

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy import select

import central_sync.web.auth as auth
import central_sync.web.cockpit as cockpit
import central_sync.web.rider as rider_content
from anqi_contract.logs import log
from central_sync.config import ApiRole
from central_sync.dispositions import DispositionDesk
from central_sync.sharing.access import Caller, audit
from central_sync.storage.models import Event
from central_sync.web.cockpit import TYPE_ZH
from central_sync.web.routes.common import WebFaces, aware, page

logger = logging.getLogger("anqi.central.web")


def mount(app: FastAPI, web: WebFaces) -> None:
    """The rider services' routes (one-time link of a reminder task)."""
    cfg = web.cfg
    store = web.store
    tz = web.tz
    content = web.content
    frame_response = web.frame_response

    def rider(token: str) -> auth.RiderToken:
        r = auth.rider_of(store, token)
        if r is None:
            raise HTTPException(404, "链接无效或已使用")
        return r

    def rider_audit(r: auth.RiderToken, action: str, rows: int, request: Request) -> None:
        """A rider's view of their own file is audited like an officer's (actor: the link's task)."""
        caller = Caller(f"rider-link:{r.task_id}", "web:rider", ApiRole(), None)
        host = request.client.host if request.client else None
        audit(store, caller, action, {"task": r.task_id}, rows, host, persons=[r.person_id])

    @app.get("/rider/{token}", response_class=HTMLResponse, include_in_schema=False)
    def rider_home(token: str, request: Request) -> HTMLResponse:
        r = rider(token)
        with store.session() as s:
            evs = (
                s.execute(
                    select(Event).where(Event.person_id == r.person_id).order_by(Event.time.desc()).limit(20)
                )
                .scalars()
                .all()
            )
            items = "".join(
                f"<li>{aware(e.time).astimezone(cockpit.ZoneInfo(tz)):%Y-%m-%d %H:%M} {escape(e.point_id)} "
                f"{TYPE_ZH.get(e.violation_type, e.violation_type)}"
                f'<br><img alt="判定帧" src="/rider/{escape(token)}/frame/{e.event_id}"></li>'
                for e in evs
            )
        rider_audit(r, "rider_page_view", len(evs), request)
        case = content.case_text()
        video = "".join(
            f'<video controls preload="metadata" src="/rider/{escape(token)}/lesson/{escape(n)}"></video>'
            for n in content.lessons()
        )
        q = content.quiz()
        qs = "".join(
            f"<fieldset><legend>{i + 1}. {escape(item['q'])}</legend>"
            + "".join(
                f'<label><input type="radio" name="q{i}" value="{j}"> {escape(opt)}</label><br>'
                for j, opt in enumerate(item["options"])
            )
            + "</fieldset>"
            for i, item in enumerate(q["questions"])
        )
        body = (
            f'<div class="rider"><h1>我的违法记录</h1><ul>{items or "<li>无</li>"}</ul>'
            f'<p><a id="query" href="/rider/{escape(token)}/query">违法处理和处罚查询</a></p>'
            f'<h2>案例学习</h2><div class="case">{"".join(f"<p>{escape(line)}</p>" for line in case.splitlines() if line.strip())}</div>{video}'
            f"<h2>安全考试</h2><p>共 {len(q['questions'])} 题，答对 {q['pass_mark']} 题及格。</p>"
            + (
                f'<form method="post" action="/rider/{escape(token)}/quiz">{qs}<input type="submit" id="submit" value="提交"></form>'
                if r.used_at is None
                else '<p id="passed">本链接的考试已通过。</p>'
            )
            + "</div>"
        )
        return page("安骑 骑行安全服务", body)

    @app.get("/rider/{token}/frame/{event_id}", include_in_schema=False)
    def rider_frame(token: str, event_id: str) -> Response:
        r = rider(token)
        with store.session() as s:
            e = s.get(Event, event_id)
            if e is None or e.person_id != r.person_id:
                raise HTTPException(404, "no such event")
        return frame_response(event_id)

    @app.get("/rider/{token}/lesson/{name}", include_in_schema=False)
    def rider_lesson(token: str, name: str) -> Response:
        """A lesson video of the content folder; FileResponse answers Range requests (206), so the phone's
        player seeks and streams without downloading the whole file."""
        rider(token)
        found = content.lesson(name)
        if found is None:
            raise HTTPException(404, "no such lesson")
        return FileResponse(found[0], media_type=found[1])

    @app.get("/rider/{token}/query", response_class=HTMLResponse, include_in_schema=False)
    def rider_query(token: str, request: Request) -> HTMLResponse:
        """违法处理和处罚查询: the rider's own violations with their handling status, dispositions, tasks."""
        r = rider(token)
        z = cockpit.ZoneInfo(tz)
        q = rider_content.penalty_query(store, r.person_id)
        rider_audit(r, "rider_penalty_query", len(q["violations"]), request)

        def day(d: datetime | None) -> str:
            return "" if d is None else f"{d.astimezone(z):%Y-%m-%d %H:%M}"

        vrows = "".join(
            f"<tr><td>{day(v['time'])}</td><td>{escape(v['point'])}</td><td>{TYPE_ZH.get(v['type'], escape(v['type']))}</td>"
            + (
                f'<td class="done">已处理（{rider_content.DISPOSITION_ZH.get(v["handled"]["kind"], "")} {day(v["handled"]["time"])[:10]}）</td>'
                if v["handled"]
                else '<td class="open">待处理</td>'
            )
            + "</tr>"
            for v in q["violations"]
        )
        drows = "".join(
            f"<tr><td>{day(d['time'])}</td><td>{rider_content.DISPOSITION_ZH.get(d['kind'], escape(d['kind']))}</td></tr>"
            for d in q["dispositions"]
        )
        trows = "".join(
            f"<tr><td>{day(t['created_at'])[:10]}</td><td>{rider_content.TASK_ZH.get(t['kind'], escape(t['kind']))}</td>"
            f"<td>{rider_content.STATUS_ZH.get(t['status'], escape(t['status']))}</td></tr>"
            for t in q["tasks"]
        )
        open_n = sum(1 for v in q["violations"] if not v["handled"])
        body = (
            f'<div class="rider"><h1>违法处理和处罚查询</h1><p id="summary">违法 {len(q["violations"])} 起，待处理 {open_n} 起。</p>'
            f'<h2>违法记录</h2><table id="violations"><tr><th>时间</th><th>点位</th><th>类型</th><th>处理状态</th></tr>'
            f"{vrows or '<tr><td>无</td></tr>'}</table>"
            f'<h2>处理和处罚</h2><table id="dispositions"><tr><th>时间</th><th>方式</th></tr>{drows or "<tr><td>无</td></tr>"}</table>'
            f'<h2>提醒和教育任务</h2><table id="tasks"><tr><th>日期</th><th>任务</th><th>状态</th></tr>{trows or "<tr><td>无</td></tr>"}</table>'
            f'<p><a href="/rider/{escape(token)}">返回</a></p></div>'
        )
        return page("违法处理和处罚查询", body)

    @app.post("/rider/{token}/quiz", response_class=HTMLResponse, include_in_schema=False)
    async def rider_quiz(token: str, request: Request) -> HTMLResponse:
        r = rider(token)
        form = await request.form()
        q = content.quiz()
        right = sum(
            1 for i, item in enumerate(q["questions"]) if str(form.get(f"q{i}")) == str(item["answer"])
        )
        passed = right >= int(q["pass_mark"])
        msg = "未通过，请复习案例后重试。"
        if r.used_at is not None:
            msg = "本链接的考试已通过，无需再考。"
        elif passed:
            # the outcome goes through the desk's feedback rules (no feedback after the task is done or
            # withdrawn, once per state change); a second submit of the same link is the same feedback id
            fb = {
                "task_id": r.task_id,
                "status": "done",
                "time": datetime.now(timezone.utc).isoformat(),
                "disposition": "education",
                "feedback_id": "quiz-" + r.token_hash[:40],
                "note": "self-study quiz passed (rider link)",
            }
            try:
                DispositionDesk(cfg, store).record_feedback(fb)
                msg = "考试通过，已记为学习教育。"
            except ValueError as e:
                log(logger, "rider_quiz_feedback_refused", task=r.task_id, error=str(e)[:200])
                msg = "考试通过；该任务已办结，本次不再记录。"
            auth.spend_rider_token(store, token)
        return page(
            "考试结果",
            f'<div class="rider"><h1 id="result">{msg}</h1><p>答对 {right} / {len(q["questions"])} 题</p></div>',
        )
