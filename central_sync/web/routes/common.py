"""What the three web faces share: the page frame and its style, the session cookie, and :class:`WebFaces` (the
service's config, store, time zone, rider content; media files and device health as the faces show them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy import select

import central_sync.web.rider as rider_content
from central_sync.config import CentralConfig
from central_sync.storage.models import Media
from central_sync.storage.store import CentralStore
from central_sync.web.devices import device_health

COOKIE = "anqi_sid"

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
.period{color:#9fb3c8;font-size:16px;margin-top:4px}
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


def aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


@dataclass
class WebFaces:
    """The service the routes of :mod:`central_sync.web.routes` serve."""

    cfg: CentralConfig
    store: CentralStore
    content: rider_content.Content

    @property
    def tz(self) -> str:
        return self.cfg.timezone

    def frame_response(self, event_id: str, name: str = "violation.jpg") -> Response:
        """A stored media file of an event (404 when it is not recorded or its file is gone)."""
        with self.store.session() as s:
            m = s.execute(
                select(Media).where(Media.event_id == event_id, Media.name == name)
            ).scalar_one_or_none()
        if m is None:
            raise HTTPException(404, "no such media")
        p = Path(m.path)
        if not p.is_absolute():
            p = Path(self.cfg.media.dir) / p
        if not p.is_file():
            raise HTTPException(404, "media file missing")
        return FileResponse(p, media_type=m.content_type)

    def merged_devices(self, event_devs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Heartbeat health per device, with its 30-day event count; devices only seen in events are
        listed without a heartbeat (offline)."""
        counts = {d["device"]: d["events"] for d in event_devs}
        out = [
            {**h, "events": counts.pop(h["device"], 0)}
            for h in device_health(self.store, datetime.now(timezone.utc))
        ]
        out += [
            {"device": d, "online": False, "events": n, "queue_depth": None, "state": "no heartbeat"}
            for d, n in counts.items()
        ]
        return out
