"""The officers' console: ``/console`` (login, CSRF, roles scoped to communities, person views audited), person
files, media, dispositions, merges and their undoing (with who and why), face-match reviews, tasks, devices, audit log,
accounts."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from html import escape
from typing import Any

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

import central_sync.web.auth as auth
import central_sync.web.cockpit as cockpit
from central_sync.config import ApiRole
from central_sync.corrections import CorrectionError, changes, unmerge
from central_sync.dispositions import DispositionDesk, DispositionKind, record_disposition
from central_sync.reviews import RESOLUTIONS, ReviewError, clear_review, list_reviews
from central_sync.sharing.access import Caller, audit
from central_sync.storage.models import Disposition, Event, Media, Person, Review, Task, TierChange
from central_sync.web.cockpit import TIER_ZH, TYPE_ZH
from central_sync.web.routes.common import COOKIE, WebFaces, aware, page

#: the roles that may merge files, undo merges and clear face-match reviews
CORRECTORS = ("admin", "police")
CHANGE_ZH = {"merge": "合并", "unmerge": "撤销合并", "reassign": "改派事件"}
REVIEW_ZH = {"confirmed": "确认", "dismissed": "驳回"}
REVIEW_KIND_ZH = {"uncertain_match": "匹配不确定", "enrolment_conflict": "登记照片冲突"}


def mount(app: FastAPI, web: WebFaces) -> None:
    """The console's routes (login, CSRF, roles scoped to communities, person views audited)."""
    store = web.store
    cfg = web.cfg
    tz = web.tz
    frame_response = web.frame_response
    merged_devices = web.merged_devices

    def officer(request: Request) -> tuple[auth.Officer, str]:
        o = auth.session_officer(store, request.cookies.get(COOKIE))
        if o is None:
            raise HTTPException(303, headers={"Location": "/console/login"})
        return o

    def check_csrf(csrf_session: str, csrf_form: str) -> None:
        if not secrets.compare_digest(csrf_session, csrf_form or ""):
            raise HTTPException(403, "CSRF token mismatch")

    def web_audit(o: auth.Officer, action: str, params: dict[str, Any], rows: int, request: Request) -> None:
        caller = Caller(o.username, "web:" + o.role, ApiRole(), ",".join(o.communities) or None)
        audit(store, caller, action, params, rows, request.client.host if request.client else None)

    def nav(o: auth.Officer) -> str:
        admin = (
            '<a href="/console/audit">审计日志</a><a href="/console/users">账户</a>'
            if o.role == "admin"
            else ""
        )
        return (
            f'<nav><a href="/console">人员档案</a><a href="/console/tasks">任务队列</a>'
            f'<a href="/console/reviews">人脸复核</a>'
            f'<a href="/console/devices">设备</a>{admin}<span>{escape(o.username)}（{auth.ROLE_ZH[o.role]}）</span>'
            f'<form method="post" action="/console/logout" style="display:inline"><button>退出</button></form></nav>'
        )

    @app.get("/console/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(error: str = "") -> HTMLResponse:
        err = f'<p class="err">{escape(error)}</p>' if error else ""
        return page(
            "安骑管理端登录",
            f'<div class="con"><h1>安骑管理端 登录</h1>{err}<form method="post" action="/console/login">'
            '<p><label>用户名 <input name="username" id="username" autocomplete="username"></label></p>'
            '<p><label>密码 <input name="password" id="password" type="password"></label></p>'
            '<p><button id="login">登录</button></p></form></div>',
        )

    @app.post("/console/login", include_in_schema=False)
    def login_post(username: str = Form(...), password: str = Form(...)) -> Response:
        try:
            sid, _ = auth.login(store, username, password)
        except auth.LoginError as e:
            return RedirectResponse(f"/console/login?error={e}", status_code=303)
        r = RedirectResponse("/console", status_code=303)
        r.set_cookie(
            COOKIE, sid, httponly=True, samesite="strict", max_age=int(auth.SESSION_TTL.total_seconds())
        )
        return r

    @app.post("/console/logout", include_in_schema=False)
    def logout_post(request: Request) -> Response:
        sid = request.cookies.get(COOKIE)
        if sid:
            auth.logout(store, sid)
        r = RedirectResponse("/console/login", status_code=303)
        r.delete_cookie(COOKIE)
        return r

    @app.get("/console", response_class=HTMLResponse, include_in_schema=False)
    def console_home(request: Request) -> HTMLResponse:
        o, _ = officer(request)
        with store.session() as s:
            rows = s.execute(
                select(Person.person_id, Person.kind, Person.name, Person.community, Person.tier)
                .where(Person.merged_into.is_(None))
                .order_by(Person.person_id)
                .limit(500)
            ).all()
        trs = "".join(
            f'<tr><td><a href="/console/person/{escape(r.person_id)}">{escape(r.person_id)}</a></td>'
            f"<td>{'已登记' if r.kind == 'enrolled' else '未知'}</td><td>{escape(r.name or '')}</td>"
            f"<td>{escape(r.community or '')}</td><td>{TIER_ZH.get(r.tier, r.tier)}</td></tr>"
            for r in rows
            if o.sees(r.community)
        )
        return page(
            "人员档案",
            f'<div class="con">{nav(o)}<h1>人员档案</h1><table><tr><th>编号</th><th>类别</th><th>姓名</th>'
            f"<th>社区</th><th>分级</th></tr>{trs}</table></div>",
        )

    @app.get("/console/person/{pid}", response_class=HTMLResponse, include_in_schema=False)
    def person_page(pid: str, request: Request) -> HTMLResponse:
        o, csrf = officer(request)
        with store.session() as s:
            p = s.get(Person, pid)
            if p is None or not o.sees(p.community):
                web_audit(o, "web_person_denied", {"person": pid}, 0, request)
                raise HTTPException(404, "no such person (or outside your communities)")
            events = (
                s.execute(select(Event).where(Event.person_id == pid).order_by(Event.time.desc()).limit(200))
                .scalars()
                .all()
            )
            media = s.execute(
                select(Media.event_id, Media.name, Media.kind).where(
                    Media.event_id.in_([e.event_id for e in events])
                )
            ).all()
            tiers = (
                s.execute(select(TierChange).where(TierChange.person_id == pid).order_by(TierChange.at))
                .scalars()
                .all()
            )
            tasks = (
                s.execute(select(Task).where(Task.person_id == pid).order_by(Task.created_at)).scalars().all()
            )
            disp = (
                s.execute(select(Disposition).where(Disposition.person_id == pid).order_by(Disposition.time))
                .scalars()
                .all()
            )
            ev_rows = []
            have: dict[str, list[str]] = {}
            for m in media:
                have.setdefault(m.event_id, []).append(m.name)
            for e in events:
                names = have.get(e.event_id, [])
                clip = next((n for n in names if n.endswith(".mp4")), None)
                vid = (
                    f'<video controls preload="metadata" width="360" src="/console/media/{e.event_id}/{clip}"></video>'
                    if clip
                    else ""
                )
                img = (
                    f'<img width="240" src="/console/media/{e.event_id}/violation.jpg">'
                    if "violation.jpg" in names
                    else ""
                )
                ev_rows.append(
                    f"<tr><td>{aware(e.time).astimezone(cockpit.ZoneInfo(tz)):%Y-%m-%d %H:%M:%S}</td><td>{escape(e.point_id)}</td>"
                    f"<td>{TYPE_ZH.get(e.violation_type, e.violation_type)}</td><td>{img}</td><td>{vid}</td></tr>"
                )
            tier_rows = "".join(
                f"<tr><td>{aware(t.at):%Y-%m-%d}</td><td>{TIER_ZH.get(t.from_tier, t.from_tier)} → {TIER_ZH.get(t.to_tier, t.to_tier)}</td></tr>"
                for t in tiers
            )
            task_rows = "".join(
                f"<tr><td>{escape(t.kind)}</td><td>{escape(t.status)}</td><td>{escape(t.outcome or '')}</td></tr>"
                for t in tasks
            )
            disp_rows = "".join(
                f"<tr><td>{aware(d.time):%Y-%m-%d}</td><td>{escape(d.kind)}</td><td>{escape(d.source)}</td><td>{escape(d.note or '')}</td></tr>"
                for d in disp
            )
            head = f"{escape(p.name or '')} {escape(p.community or '')} 分级：{TIER_ZH.get(p.tier, p.tier)}"
            if p.merged_into:
                head += (
                    f' 已并入 <a href="/console/person/{escape(p.merged_into)}">{escape(p.merged_into)}</a>'
                )
            kind = p.kind
            merged = p.merged_into
            faces = "".join(
                f'<img class="face" alt="人脸" height="96" src="/console/media/{e.event_id}/{n}">'
                for e in events[:12]
                for n in have.get(e.event_id, [])
                if n.startswith("face") and n.endswith(".jpg")
            )
        web_audit(o, "web_person_view", {"person": pid}, len(events), request)
        may_correct = o.role in CORRECTORS
        change_rows = "".join(
            f"<tr><td>{escape(c['time'][:16].replace('T', ' '))}</td><td>{CHANGE_ZH.get(c['action'], escape(c['action']))}</td>"
            f'<td><a href="/console/person/{escape(c["from"])}">{escape(c["from"])}</a></td>'
            f'<td><a href="/console/person/{escape(c["to"])}">{escape(c["to"])}</a></td>'
            f"<td>{escape(c['by'])}</td><td>{escape(c['reason'] or '')}</td><td>{c['moved'].get('events', 0)}</td><td>"
            + (
                f"已撤销（#{c['undone_by']}）"
                if c["undone_by"]
                else (
                    f'<form method="post" action="/console/person/{escape(c["from"])}/unmerge" class="unmerge">'
                    f'<input type="hidden" name="csrf" value="{csrf}">'
                    f'<input name="reason" required minlength="3" maxlength="2000" placeholder="撤销原因"> '
                    f"<button>撤销合并</button></form>"
                    if may_correct and c["action"] == "merge"
                    else ""
                )
            )
            + "</td></tr>"
            for c in changes(store, pid, 100)
        )
        kinds = "".join(f'<option value="{k.value}">{k.value}</option>' for k in DispositionKind)
        form = (
            f'<h2>登记处置</h2><form method="post" action="/console/person/{escape(pid)}/dispose">'
            f'<input type="hidden" name="csrf" value="{csrf}"><select name="kind" id="kind">{kinds}</select> '
            f'<input name="note" id="note" placeholder="备注"> <button id="dispose">登记</button></form>'
            if o.may_write
            else ""
        )
        if kind == "unknown" and not merged and may_correct:
            form += (
                f'<h2>并入已登记人员</h2><form method="post" action="/console/person/{escape(pid)}/merge">'
                f'<input type="hidden" name="csrf" value="{csrf}"><input name="target" id="target" placeholder="已登记人员编号"> '
                f'<input name="reason" id="merge-reason" required minlength="3" maxlength="2000" placeholder="合并原因（必填）"> '
                f'<button id="merge">合并</button></form>'
            )
        body = (
            f'<div class="con">{nav(o)}<h1>人员档案 {escape(pid)}</h1><p>{head}</p>'
            f'<h2>人脸照片</h2><div id="faces">{faces or "无"}</div>'
            f'<h2>违法事件</h2><table id="events"><tr><th>时间</th><th>点位</th><th>类型</th><th>判定帧</th><th>视频</th></tr>{"".join(ev_rows)}</table>'
            f"<h2>分级记录</h2><table>{tier_rows or '<tr><td>无</td></tr>'}</table>"
            f"<h2>任务与反馈</h2><table>{task_rows or '<tr><td>无</td></tr>'}</table>"
            f'<h2>处置记录</h2><table id="dispositions">{disp_rows or "<tr><td>无</td></tr>"}</table>'
            f'<h2>档案更正记录</h2><table id="changes"><tr><th>时间</th><th>操作</th><th>来源档案</th><th>目标档案</th>'
            f"<th>操作人</th><th>原因</th><th>事件数</th><th></th></tr>{change_rows or '<tr><td colspan=8>无</td></tr>'}</table>"
            f"{form}</div>"
        )
        return page(f"人员档案 {pid}", body)

    @app.get("/console/media/{event_id}/{name}", include_in_schema=False)
    def console_media(event_id: str, name: str, request: Request) -> Response:
        o, _ = officer(request)
        with store.session() as s:
            e = s.get(Event, event_id)
            p = s.get(Person, e.person_id) if e and e.person_id else None
            if e is None or not o.sees(p.community if p else None):
                raise HTTPException(404, "no such media")
        web_audit(o, "web_media_view", {"event": event_id, "name": name}, 1, request)
        return frame_response(event_id, name)

    @app.post("/console/person/{pid}/dispose", include_in_schema=False)
    def dispose(
        pid: str, request: Request, kind: str = Form(...), note: str = Form(""), csrf: str = Form("")
    ) -> Response:
        o, csrf_s = officer(request)
        check_csrf(csrf_s, csrf)
        if not o.may_write:
            raise HTTPException(403, "read-only account")
        with store.session() as s:
            p = s.get(Person, pid)
            if p is None or not o.sees(p.community):
                raise HTTPException(404, "no such person")
        try:
            k = DispositionKind(kind)
        except ValueError:
            raise HTTPException(422, f"unknown disposition {kind!r}") from None
        record_disposition(store, pid, k, datetime.now(timezone.utc), note or None)
        web_audit(o, "web_disposition", {"person": pid, "kind": kind}, 1, request)
        return RedirectResponse(f"/console/person/{pid}", status_code=303)

    @app.get("/console/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit_page(request: Request) -> HTMLResponse:
        o, _ = officer(request)
        if o.role != "admin":
            raise HTTPException(403, "administrators only")
        from central_sync.storage.models import AuditEntry

        with store.session() as s:
            rows = s.execute(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(300)).scalars().all()
            trs = "".join(
                f"<tr><td>{aware(a.time):%Y-%m-%d %H:%M:%S}</td><td>{escape(a.actor)}</td><td>{escape(a.role)}</td>"
                f"<td>{escape(a.action)}</td><td>{escape(json.dumps(a.params, ensure_ascii=False))}</td></tr>"
                for a in rows
            )
        return page("审计日志", f'<div class="con">{nav(o)}<h1>审计日志</h1><table>{trs}</table></div>')

    @app.get("/console/tasks", response_class=HTMLResponse, include_in_schema=False)
    def tasks_page(request: Request, status: str = "open") -> HTMLResponse:
        o, _ = officer(request)
        with store.session() as s:
            rows = s.execute(
                select(
                    Task.task_id, Task.kind, Task.status, Task.created_at, Task.person_id, Person.community
                )
                .join(Person, Person.person_id == Task.person_id)
                .where(Task.status == status)
                .order_by(Person.community, Task.created_at)
                .limit(2000)
            ).all()
        groups: dict[str, list[str]] = {}
        for r in rows:
            if o.sees(r.community):
                groups.setdefault(r.community or "未登记", []).append(
                    f'<tr><td>{aware(r.created_at):%Y-%m-%d %H:%M}</td><td><a href="/console/person/{escape(r.person_id)}">'
                    f"{escape(r.person_id)}</a></td><td>{escape(r.kind)}</td><td>{escape(r.status)}</td></tr>"
                )
        body = "".join(
            f'<h2>{escape(c)}（{len(v)}）</h2><table class="tasks">{"".join(v)}</table>'
            for c, v in sorted(groups.items())
        )
        return page(
            "任务队列",
            f'<div class="con">{nav(o)}<h1>任务队列（{escape(status)}）</h1>{body or "<p>无</p>"}</div>',
        )

    @app.get("/console/devices", response_class=HTMLResponse, include_in_schema=False)
    def devices_page(request: Request) -> HTMLResponse:
        o, _ = officer(request)
        devs = merged_devices(cockpit.devices(store, datetime.now(timezone.utc)))
        trs = "".join(
            f"<tr><td>{escape(d['device'])}</td><td>{'在线' if d['online'] else '离线'}</td>"
            f"<td>{escape(str(d.get('heartbeat_at') or '-'))}</td><td>{'' if d.get('queue_depth') is None else d['queue_depth']}</td>"
            f"<td>{escape(str(d.get('disk_free_mb') or ''))}</td>"
            f"<td>{escape(', '.join(f'{k}:{v}' for k, v in (d.get('components') or {}).items()))}</td><td>{d['events']}</td></tr>"
            for d in devs
        )
        return page(
            "设备",
            f'<div class="con">{nav(o)}<h1>设备</h1><p>在线：状态为 online 且 90 秒内收到心跳。</p><table id="devices"><tr><th>设备</th>'
            f"<th>状态</th><th>最近心跳</th><th>待发事件</th><th>剩余磁盘 MB</th><th>组件</th><th>30天事件</th></tr>{trs}</table></div>",
        )

    @app.post("/console/person/{pid}/merge", include_in_schema=False)
    def merge(
        pid: str, request: Request, target: str = Form(...), reason: str = Form(""), csrf: str = Form("")
    ) -> Response:
        from central_sync.persons import merge_person

        o, csrf_s = officer(request)
        check_csrf(csrf_s, csrf)
        if o.role not in CORRECTORS:
            raise HTTPException(403, "merging files needs an administrator or traffic police account")
        reason = reason.strip()
        if not 3 <= len(reason) <= 2000:
            raise HTTPException(422, "reason: why the files are merged (3-2000 characters)")
        with store.session() as s:
            src, dst = s.get(Person, pid), s.get(Person, target)
            if src is None or src.kind != "unknown" or src.merged_into:
                raise HTTPException(422, "only an unmerged unknown-person file can be merged")
            if dst is None or dst.kind == "unknown" or not o.sees(dst.community):
                raise HTTPException(422, "the target must be an enrolled person in your communities")
        cid = merge_person(store, pid, target, actor=o.username, reason=reason)
        # the target's tier now counts the merged events: assess it at once (not at the next event / daily pass);
        # the tasks it makes are published by the running consumer (publish_pending), as for the CLI's corrections
        desk = DispositionDesk(cfg, store)
        _, msgs = desk.reassess(target, datetime.now(timezone.utc))
        desk.send(msgs)
        web_audit(o, "web_merge", {"source": pid, "target": target, "change": str(cid)}, 1, request)
        return RedirectResponse(f"/console/person/{target}", status_code=303)

    @app.post("/console/person/{pid}/unmerge", include_in_schema=False)
    def unmerge_post(pid: str, request: Request, reason: str = Form(""), csrf: str = Form("")) -> Response:
        o, csrf_s = officer(request)
        check_csrf(csrf_s, csrf)
        if o.role not in CORRECTORS:
            raise HTTPException(403, "undoing a merge needs an administrator or traffic police account")
        with store.session() as s:
            src = s.get(Person, pid)
            dst = s.get(Person, src.merged_into) if src is not None and src.merged_into else None
            if dst is None or not o.sees(dst.community):
                raise HTTPException(404, "no merged file of that id in your communities")
            target = dst.person_id
        try:
            c = unmerge(store, cfg, DispositionDesk(cfg, store), pid, o.username, reason)
        except CorrectionError as e:
            raise HTTPException(
                422, str(e).replace("--reason", "reason").replace("--person", "person")
            ) from None
        web_audit(o, "web_unmerge", {"source": pid, "target": target, "change": str(c.change_id)}, 1, request)
        return RedirectResponse(f"/console/person/{target}", status_code=303)

    def persons_seen(o: auth.Officer, ids: set[str]) -> set[str]:
        """The ids among ``ids`` whose file the officer may see (a review naming one outside his communities is
        not his to see or clear)."""
        with store.session() as s:
            rows = s.execute(
                select(Person.person_id, Person.community).where(Person.person_id.in_(ids))
            ).all()
        return {r.person_id for r in rows if o.sees(r.community)}

    @app.get("/console/reviews", response_class=HTMLResponse, include_in_schema=False)
    def reviews_page(request: Request, error: str = "") -> HTMLResponse:
        o, csrf = officer(request)
        rows = list_reviews(store, open_only=True, limit=500)
        seen = persons_seen(o, {p for r in rows for p in (r["person_id"], r["other_person_id"]) if p})
        rows = [r for r in rows if all(p in seen for p in (r["person_id"], r["other_person_id"]) if p)]
        opts = "".join(f'<option value="{k}">{REVIEW_ZH[k]}</option>' for k in RESOLUTIONS)

        def person(pid: str | None) -> str:
            return f'<a href="/console/person/{escape(pid)}">{escape(pid)}</a>' if pid else ""

        def score(v: float | None) -> str:
            return "" if v is None else f"{v:.3f}"

        trs = "".join(
            f"<tr><td>{escape(r['created_at'][:16].replace('T', ' '))}</td><td>{REVIEW_KIND_ZH.get(r['kind'], escape(r['kind']))}</td>"
            f"<td>{person(r['person_id'])}</td><td>{score(r['score'])}</td><td>{person(r['other_person_id'])}</td>"
            f"<td>{score(r['other_score'])}</td><td>{escape(r['event_id'] or '')}</td><td>"
            + (
                f'<form method="post" action="/console/reviews/{r["id"]}/clear" class="clear-review">'
                f'<input type="hidden" name="csrf" value="{csrf}"><select name="resolution">{opts}</select> '
                f'<input name="note" required maxlength="2000" placeholder="说明（必填）"> <button>提交</button></form>'
                if o.role in CORRECTORS
                else ""
            )
            + "</td></tr>"
            for r in rows
        )
        err = f'<p class="err">{escape(error)}</p>' if error else ""
        return page(
            "人脸复核",
            f'<div class="con">{nav(o)}<h1>待复核的人脸匹配（{len(rows)}）</h1>{err}'
            "<p>确认：匹配无误；驳回：无需处理（如有意登记的双胞胎）。事件归属有误时，请在人员档案中撤销合并，"
            "或用 anqi-central reassign 改派事件。</p>"
            '<table id="reviews"><tr><th>时间</th><th>类型</th><th>人员</th><th>相似度</th><th>另一人员</th>'
            f"<th>相似度</th><th>事件</th><th>处理</th></tr>{trs or '<tr><td colspan=8>无</td></tr>'}</table></div>",
        )

    @app.post("/console/reviews/{review_id}/clear", include_in_schema=False)
    def review_clear(
        review_id: int,
        request: Request,
        resolution: str = Form(...),
        note: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        o, csrf_s = officer(request)
        check_csrf(csrf_s, csrf)
        if o.role not in CORRECTORS:
            raise HTTPException(403, "clearing a review needs an administrator or traffic police account")
        note = note.strip()
        if not note:
            raise HTTPException(422, "note: say what was checked")
        with store.session() as s:
            r = s.get(Review, review_id)
            names = {p for p in (r.person_id, r.other_person_id) if p} if r is not None else set()
        if r is None or persons_seen(o, names) != names:
            raise HTTPException(404, "no such review (or outside your communities)")
        try:
            clear_review(store, review_id, o.username, resolution, note[:2000])
        except ReviewError as e:
            raise HTTPException(
                422, str(e).replace("--resolution", "resolution").replace("--id", "review")
            ) from None
        web_audit(o, "web_review_cleared", {"review": str(review_id), "resolution": resolution}, 1, request)
        return RedirectResponse("/console/reviews", status_code=303)

    @app.get("/console/users", response_class=HTMLResponse, include_in_schema=False)
    def users_page(request: Request, error: str = "") -> HTMLResponse:
        o, csrf = officer(request)
        if o.role != "admin":
            raise HTTPException(403, "administrators only")
        with store.session() as s:
            us = s.execute(select(auth.WebUser).order_by(auth.WebUser.username)).scalars().all()
            trs = "".join(
                f"<tr><td>{escape(u.username)}</td><td>{auth.ROLE_ZH.get(u.role, u.role)}</td>"
                f"<td>{escape('、'.join(u.communities or []) or '全部')}</td><td>{escape(u.created_by or '')}</td></tr>"
                for u in us
            )
        roles = "".join(
            f'<option value="{r}">{auth.ROLE_ZH[r]}</option>'
            for r, n in auth.ROLES.items()
            if n <= auth.ROLES[o.role]
        )
        err = f'<p class="err">{escape(error)}</p>' if error else ""
        return page(
            "账户",
            f'<div class="con">{nav(o)}<h1>账户</h1>{err}<table><tr><th>用户名</th><th>角色</th><th>社区</th><th>授权人</th></tr>{trs}</table>'
            f'<h2>新建账户（逐级授权）</h2><form method="post" action="/console/users"><input type="hidden" name="csrf" value="{csrf}">'
            f'<input name="username" placeholder="用户名"> <input name="password" type="password" placeholder="密码（至少10位）"> '
            f'<select name="role">{roles}</select> <input name="communities" placeholder="社区（逗号分隔，空=全部）"> <button>创建</button></form></div>',
        )

    @app.post("/console/users", include_in_schema=False)
    def users_post(
        request: Request,
        username: str = Form(...),
        password: str = Form(...),
        role: str = Form(...),
        communities: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        o, csrf_s = officer(request)
        check_csrf(csrf_s, csrf)
        comms = [c.strip() for c in communities.replace("，", ",").split(",") if c.strip()]
        try:
            auth.add_user(store, username, password, role, comms, granted_by=o)
        except (ValueError, PermissionError) as e:
            return RedirectResponse(f"/console/users?error={e}", status_code=303)
        web_audit(o, "web_user_created", {"user": username, "role": role, "communities": comms}, 1, request)
        return RedirectResponse("/console/users", status_code=303)
