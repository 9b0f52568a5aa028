"""Routes of the web faces, mounted on the data-sharing FastAPI app (``anqi-central serve``)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy import select

from anqi_contract.logs import log
from central_sync.config import ApiRole, CentralConfig
from central_sync.dispositions import DispositionDesk, DispositionKind, record_disposition
from central_sync.sharing.access import Caller, audit
from central_sync.storage.models import Disposition, Event, Media, Person, Task, TierChange
from central_sync.storage.store import CentralStore
from central_sync.web import auth, cockpit
from central_sync.web import rider as rider_content
from central_sync.web.cockpit import TIER_ZH, TYPE_ZH
from central_sync.web.devices import DeviceListener, device_health

logger = logging.getLogger("anqi.central.web")
STATIC = Path(__file__).parent / "static"
COOKIE = "anqi_sid"
#: seconds between count refreshes on the cockpit's stream when no event arrives
COUNTS_REFRESH_S = 10.0

CSS = """
*{box-sizing:border-box}body{margin:0;font-family:"WenQuanYi Micro Hei","Noto Sans CJK SC",sans-serif;}
.ck{background:#0b1a2b;color:#e6f0fa;width:100vw;height:100vh;overflow:hidden;display:grid;
grid-template-columns:1fr 1fr 1fr;grid-template-rows:64px 1fr 1fr;gap:12px;padding:12px}
.ck h1{grid-column:1/4;margin:0;font-size:34px;text-align:center;color:#7fd0ff}
.panel{background:#12263d;border:1px solid #24507a;border-radius:6px;padding:10px 14px;overflow:hidden;min-width:0}
.panel h2{margin:0 0 8px;font-size:22px;color:#7fd0ff}
.ck table{width:100%;border-collapse:collapse;font-size:18px}.ck td,.ck th{padding:3px 6px;text-align:left}
.big{font-size:40px;color:#ffd166}.feed{display:flex;flex-direction:column;gap:6px}
.feed .item{display:flex;gap:10px;align-items:center;font-size:17px}.feed img{width:96px;height:60px;object-fit:cover}
.on{color:#5fe08a}.off{color:#ff6b6b}.big-rate{color:#ffd166;font-weight:bold}
.con{max-width:1100px;margin:0 auto;padding:16px}.con nav a{margin-right:14px}
.con table{border-collapse:collapse;width:100%}.con td,.con th{border:1px solid #ccd;padding:4px 8px;text-align:left}
.err{color:#b00}.rider{max-width:390px;margin:0 auto;padding:12px;font-size:17px}
.rider img,.rider video,.con video,.con img{max-width:100%}
.rider button,.rider input[type=submit]{font-size:18px;padding:10px 16px;width:100%}
.rider table{width:100%;border-collapse:collapse;font-size:15px}.rider td,.rider th{border-bottom:1px solid #dde;padding:4px 2px;text-align:left}
.rider .open{color:#b00}.rider .done{color:#070}
"""


def page(title: str, body: str, cls: str = "", refresh: str = "") -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f'<body class="{cls}">{body}</body></html>'
    )


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def mount_web(
    app: FastAPI,
    cfg: CentralConfig,
    store: CentralStore,
    content_dir: Path | None = None,
    listen_devices: bool = True,
) -> None:
    auth.ensure_tables(store)
    if listen_devices:  # the edge's status / heartbeat topics, while the service runs
        listener: list[DeviceListener] = []
        app.router.on_startup.append(lambda: listener.append(DeviceListener(cfg, store).start()))

        def stop_listener() -> None:
            for x in listener:
                x.stop()

        app.router.on_shutdown.append(stop_listener)
    folder = content_dir or (cfg.resolve(cfg.web.content_dir) if cfg.web.content_dir else None)
    content = rider_content.Content(folder)
    content.check()
    tz = cfg.timezone

    # ------------------------------------------------------------------ cockpit
    def kiosk(request: Request) -> str:
        token = request.query_params.get("token")
        if not auth.kiosk_ok(store, token):
            raise HTTPException(401, "kiosk token required")
        return token or ""

    def table(d: dict[str, int], names: dict[str, str] | None = None) -> str:
        rows = "".join(
            f"<tr><td>{escape((names or {}).get(k, k))}</td><td>{v}</td></tr>"
            for k, v in sorted(d.items(), key=lambda kv: -kv[1])
        )
        return f"<table>{rows or '<tr><td>暂无</td></tr>'}</table>"

    def feed_html(items: list[dict[str, Any]], token: str) -> str:
        return "".join(feed_item(e, token) for e in items)

    def feed_item(e: dict[str, Any], token: str) -> str:
        img = (
            f'<img alt="判定帧" src="/cockpit/frame/{escape(e["event_id"])}?token={escape(token)}">'
            if e["frame"]
            else '<span style="width:96px">无图</span>'
        )
        t = datetime.fromisoformat(e["time"]).astimezone(cockpit.ZoneInfo(tz)).strftime("%m-%d %H:%M:%S")
        return (
            f'<div class="item" data-event="{escape(e["event_id"])}">{img}<span>{t}</span>'
            f"<span>{escape(e['point'])}</span><b>{escape(e['type_zh'])}</b></div>"
        )

    def merged_devices(event_devs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Heartbeat health per device, with its 30-day event count; devices only seen in events are
        listed without a heartbeat (offline)."""
        counts = {d["device"]: d["events"] for d in event_devs}
        out = [
            {**h, "events": counts.pop(h["device"], 0)}
            for h in device_health(store, datetime.now(timezone.utc))
        ]
        out += [
            {"device": d, "online": False, "events": n, "queue_depth": None, "state": "no heartbeat"}
            for d, n in counts.items()
        ]
        return out

    def devices_rows(devs: list[dict[str, Any]]) -> str:
        return "".join(
            f'<tr><td>{escape(d["device"])}</td><td class="{"on" if d["online"] else "off"}">'
            f"{'在线' if d['online'] else '离线'}</td><td>{d['events']}</td>"
            f"<td>{'' if d.get('queue_depth') is None else d['queue_depth']}</td></tr>"
            for d in devs
        )

    def by_type_rows(snap: dict[str, Any]) -> str:
        return "".join(
            f"<tr><td>{escape(TYPE_ZH.get(t, t))}</td><td>{snap['today'].get(t, 0)}</td>"
            f"<td>{snap['d7'].get(t, 0)}</td><td>{snap['d30'].get(t, 0)}</td></tr>"
            for t in sorted(set(snap["d30"]) | set(TYPE_ZH))
        )

    def safe_rows(safe: dict[str, dict[str, Any]]) -> str:
        def pct(x: float | None) -> str:
            return "-" if x is None else f"{100 * x:.1f}%"

        return (
            "".join(
                f"<tr><td>{escape(p)}</td><td>{v['riders']}</td><td>{v['violators']}</td>"
                f'<td class="big-rate">{pct(v["rate"])}</td><td>{pct(v["helmet_rate"])}</td></tr>'
                for p, v in safe.items()
            )
            or '<tr><td colspan="5">暂无通过计数（设备心跳）</td></tr>'
        )

    def live_counts() -> dict[str, Any]:
        today = cockpit.local_midnight(datetime.now(timezone.utc), tz)
        snap = {
            k: cockpit.counts_by_type(store, today - timedelta(days=d))
            for k, d in (("today", 0), ("d7", 6), ("d30", 29))
        }
        return {
            "totals": " / ".join(str(sum(snap[k].values())) for k in ("today", "d7", "d30")),
            "bytype": by_type_rows(snap),
            "points": table(cockpit.counts_by_point(store, today - timedelta(days=29))),
            "safe": safe_rows(cockpit.safe_riding(store, today - timedelta(days=6))),
            "trend": cockpit.trend_svg(cockpit.daily_trend(store, datetime.now(timezone.utc), tz)),
            "devices": devices_rows(merged_devices(cockpit.devices(store, datetime.now(timezone.utc)))),
            "tiers": table(cockpit.tier_distribution(store), TIER_ZH),
            "tasks": table(cockpit.open_tasks_by_community(store)),
        }

    @app.get("/cockpit", response_class=HTMLResponse, include_in_schema=False)
    def cockpit_page(request: Request) -> HTMLResponse:
        token = kiosk(request)
        snap = cockpit.snapshot(store, tz)
        snap["devices"] = merged_devices(snap["devices"])
        totals = " / ".join(str(sum(snap[k].values())) for k in ("today", "d7", "d30"))
        devs = devices_rows(snap["devices"])
        body = f"""<h1>安骑 电动自行车安全骑行 驾驶舱</h1>
<section class="panel"><h2>违法总数 今日 / 7天 / 30天</h2><div class="big" id="totals">{totals}</div>
<table><tr><th>类型</th><th>今日</th><th>7天</th><th>30天</th></tr><tbody id="bytype">{by_type_rows(snap)}</tbody></table></section>
<section class="panel"><h2>30天趋势</h2><div id="trend">{cockpit.trend_svg(snap["trend"])}</div></section>
<section class="panel"><h2>实时违法</h2><div class="feed" id="feed">{feed_html(snap["feed"][:6], token)}</div></section>
<section class="panel"><h2>各点位违法（30天）</h2><div id="points">{table(snap["points30"])}</div>
<h2>安全骑行率（近7天，（通过−违法）/通过）</h2><table><tr><th>点位</th><th>通过</th><th>违法</th><th>安全骑行率</th><th>头盔佩戴率</th></tr>
<tbody id="safe">{safe_rows(snap["safe7"])}</tbody></table></section>
<section class="panel"><h2>设备状态（心跳）</h2><table id="devices"><thead><tr><th>设备</th><th>状态</th><th>30天事件</th><th>待发</th></tr></thead>
<tbody id="devrows">{devs}</tbody></table>
<h2>人员分级</h2><div id="tiers">{table(snap["tiers"], TIER_ZH)}</div></section>
<section class="panel"><h2>待处置任务（按社区）</h2><div id="tasks">{table(snap["tasks"])}</div></section>
<script>
const es=new EventSource("/cockpit/stream?token="+encodeURIComponent({json.dumps(token)}));
es.onmessage=(m)=>{{const d=JSON.parse(m.data);const f=document.getElementById("feed");
if(d.html){{const w=document.createElement("div");w.innerHTML=d.html;f.prepend(w.firstChild);
while(f.children.length>6)f.lastChild.remove();}}document.getElementById("totals").textContent=d.totals;
document.getElementById("bytype").innerHTML=d.bytype;document.getElementById("points").innerHTML=d.points;
for(const k of ["safe","trend","tiers","tasks"])document.getElementById(k).innerHTML=d[k];
document.getElementById("devrows").innerHTML=d.devices;}};
</script>"""
        return page("安骑驾驶舱", body, "ck")

    @app.get("/cockpit/data", include_in_schema=False)
    def cockpit_data(request: Request) -> dict[str, Any]:
        kiosk(request)
        return cockpit.snapshot(store, tz)

    @app.get("/cockpit/frame/{event_id}", include_in_schema=False)
    def cockpit_frame(event_id: str, request: Request) -> Response:
        kiosk(request)
        return frame_response(event_id, cockpit.PREVIEW)

    def frame_response(event_id: str, name: str = "violation.jpg") -> Response:
        with store.session() as s:
            m = s.execute(
                select(Media).where(Media.event_id == event_id, Media.name == name)
            ).scalar_one_or_none()
        if m is None:
            raise HTTPException(404, "no such media")
        p = Path(m.path)
        if not p.is_absolute():
            p = Path(cfg.media.dir) / p
        if not p.is_file():
            raise HTTPException(404, "media file missing")
        return FileResponse(p, media_type=m.content_type)

    @app.get("/cockpit/stream", include_in_schema=False)
    async def cockpit_stream(request: Request) -> StreamingResponse:
        token = kiosk(request)

        async def gen() -> Any:
            last = datetime.now(timezone.utc)
            counted = asyncio.get_running_loop().time()
            yield ": connected\n\n"
            while not await request.is_disconnected():
                new = await asyncio.to_thread(cockpit.newest_events, store, 20, last)
                if new:
                    last = max(_aware(datetime.fromisoformat(e["received_at"])) for e in new)
                    counts = await asyncio.to_thread(live_counts)
                    counted = asyncio.get_running_loop().time()
                    for e in reversed(new):
                        data = {"html": feed_item(e, token), "event": e, **counts}
                        yield f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
                elif asyncio.get_running_loop().time() - counted >= COUNTS_REFRESH_S:
                    # no new event: the counts still follow (pass counters arrive with the heartbeats)
                    counts = await asyncio.to_thread(live_counts)
                    counted = asyncio.get_running_loop().time()
                    yield f"data: {json.dumps(counts, ensure_ascii=False)}\n\n"
                await asyncio.sleep(0.5)

        return StreamingResponse(gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # ------------------------------------------------------------------ console
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
                    f"<tr><td>{_aware(e.time).astimezone(cockpit.ZoneInfo(tz)):%Y-%m-%d %H:%M:%S}</td><td>{escape(e.point_id)}</td>"
                    f"<td>{TYPE_ZH.get(e.violation_type, e.violation_type)}</td><td>{img}</td><td>{vid}</td></tr>"
                )
            tier_rows = "".join(
                f"<tr><td>{_aware(t.at):%Y-%m-%d}</td><td>{TIER_ZH.get(t.from_tier, t.from_tier)} → {TIER_ZH.get(t.to_tier, t.to_tier)}</td></tr>"
                for t in tiers
            )
            task_rows = "".join(
                f"<tr><td>{escape(t.kind)}</td><td>{escape(t.status)}</td><td>{escape(t.outcome or '')}</td></tr>"
                for t in tasks
            )
            disp_rows = "".join(
                f"<tr><td>{_aware(d.time):%Y-%m-%d}</td><td>{escape(d.kind)}</td><td>{escape(d.source)}</td><td>{escape(d.note or '')}</td></tr>"
                for d in disp
            )
            head = f"{escape(p.name or '')} {escape(p.community or '')} 分级：{TIER_ZH.get(p.tier, p.tier)}"
            kind = p.kind
            faces = "".join(
                f'<img class="face" alt="人脸" height="96" src="/console/media/{e.event_id}/{n}">'
                for e in events[:12]
                for n in have.get(e.event_id, [])
                if n.startswith("face") and n.endswith(".jpg")
            )
        web_audit(o, "web_person_view", {"person": pid}, len(events), request)
        kinds = "".join(f'<option value="{k.value}">{k.value}</option>' for k in DispositionKind)
        form = (
            f'<h2>登记处置</h2><form method="post" action="/console/person/{escape(pid)}/dispose">'
            f'<input type="hidden" name="csrf" value="{csrf}"><select name="kind" id="kind">{kinds}</select> '
            f'<input name="note" id="note" placeholder="备注"> <button id="dispose">登记</button></form>'
            if o.may_write
            else ""
        )
        if kind == "unknown" and o.role in ("admin", "police"):
            form += (
                f'<h2>并入已登记人员</h2><form method="post" action="/console/person/{escape(pid)}/merge">'
                f'<input type="hidden" name="csrf" value="{csrf}"><input name="target" id="target" placeholder="已登记人员编号"> '
                f'<button id="merge">合并</button></form>'
            )
        body = (
            f'<div class="con">{nav(o)}<h1>人员档案 {escape(pid)}</h1><p>{head}</p>'
            f'<h2>人脸照片</h2><div id="faces">{faces or "无"}</div>'
            f'<h2>违法事件</h2><table id="events"><tr><th>时间</th><th>点位</th><th>类型</th><th>判定帧</th><th>视频</th></tr>{"".join(ev_rows)}</table>'
            f"<h2>分级记录</h2><table>{tier_rows or '<tr><td>无</td></tr>'}</table>"
            f"<h2>任务与反馈</h2><table>{task_rows or '<tr><td>无</td></tr>'}</table>"
            f'<h2>处置记录</h2><table id="dispositions">{disp_rows or "<tr><td>无</td></tr>"}</table>{form}</div>'
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
                f"<tr><td>{_aware(a.time):%Y-%m-%d %H:%M:%S}</td><td>{escape(a.actor)}</td><td>{escape(a.role)}</td>"
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
                    f'<tr><td>{_aware(r.created_at):%Y-%m-%d %H:%M}</td><td><a href="/console/person/{escape(r.person_id)}">'
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
    def merge(pid: str, request: Request, target: str = Form(...), csrf: str = Form("")) -> Response:
        from central_sync.persons import merge_person

        o, csrf_s = officer(request)
        check_csrf(csrf_s, csrf)
        if o.role not in ("admin", "police"):
            raise HTTPException(403, "merging files needs an administrator or traffic police account")
        with store.session() as s:
            src, dst = s.get(Person, pid), s.get(Person, target)
            if src is None or src.kind != "unknown" or src.merged_into:
                raise HTTPException(422, "only an unmerged unknown-person file can be merged")
            if dst is None or dst.kind == "unknown" or not o.sees(dst.community):
                raise HTTPException(422, "the target must be an enrolled person in your communities")
        merge_person(store, pid, target)
        web_audit(o, "web_merge", {"source": pid, "target": target}, 1, request)
        return RedirectResponse(f"/console/person/{target}", status_code=303)

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

    # ------------------------------------------------------------------ rider services
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
                f"<li>{_aware(e.time).astimezone(cockpit.ZoneInfo(tz)):%Y-%m-%d %H:%M} {escape(e.point_id)} "
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
