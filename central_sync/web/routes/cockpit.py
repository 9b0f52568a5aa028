"""The big-screen cockpit: ``/cockpit?token=`` (kiosk token, read-only), ``/cockpit/data``, decision frames, live
updates over ``/cockpit/stream`` (SSE)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from html import escape
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

import central_sync.web.auth as auth
import central_sync.web.cockpit as cockpit
from central_sync.web.cockpit import TIER_ZH, TYPE_ZH
from central_sync.web.routes.common import WebFaces, aware, page

#: seconds between count refreshes on the cockpit's stream when no event arrives
COUNTS_REFRESH_S = 10.0


def mount(app: FastAPI, web: WebFaces) -> None:
    """The cockpit's routes (kiosk token, read-only; live over server-sent events)."""
    store = web.store
    tz = web.tz
    frame_response = web.frame_response
    merged_devices = web.merged_devices

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

    def safe_period(safe: dict[str, dict[str, Any]]) -> str:
        """The span the rates cover: from the first counted interval to the end of the latest (local time)."""
        if not safe:
            return ""
        z = cockpit.ZoneInfo(tz)
        a = min(datetime.fromisoformat(v["from"]) for v in safe.values()).astimezone(z)
        b = max(datetime.fromisoformat(v["to"]) for v in safe.values()).astimezone(z)
        return f"统计时段 {a:%m-%d %H:%M} – {b:%m-%d %H:%M}"

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
            "safe": safe_rows(safe := cockpit.safe_riding(store, today - timedelta(days=6))),
            "safeperiod": safe_period(safe),
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
<tbody id="safe">{safe_rows(snap["safe7"])}</tbody></table><div class="period" id="safeperiod">{safe_period(snap["safe7"])}</div></section>
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
for(const k of ["safe","safeperiod","trend","tiers","tasks"])document.getElementById(k).innerHTML=d[k];
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
                    last = max(aware(datetime.fromisoformat(e["received_at"])) for e in new)
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
