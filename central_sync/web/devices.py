"""Device health for the cockpit and the console, from the edge's MQTT ``status`` (retained, Last Will)
and ``heartbeat`` topics: the web service subscribes itself (read-only, its own client id) and keeps the
newest of each per device in ``web_device_health``."""

from __future__ import annotations

import logging
import ssl
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import Session

from anqi_contract import protocol as P
from anqi_contract.logs import log
from central_sync.config import CentralConfig
from central_sync.storage.store import CentralStore
from central_sync.storage.webtables import DeviceHealth, PassCount, PassHour

logger = logging.getLogger("anqi.central.web.devices")


class DeviceListener:
    """Subscribes to every device's status and heartbeat and records them (one row per device)."""

    def __init__(self, cfg: CentralConfig, store: CentralStore):
        self.cfg, self.store = cfg, store
        self.lock = threading.Lock()
        m = cfg.mqtt
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{m.client_id}-web", protocol=paho.MQTTv5
        )
        if m.username:
            from central_sync.config import read_secret

            self.client.username_pw_set(
                m.username, read_secret(m.password_env, "mqtt.password_env") if m.password_env else None
            )
        if m.ca_file:
            ctx = ssl.create_default_context(cafile=str(cfg.resolve(m.ca_file)))
            if m.cert_file and m.key_file:
                ctx.load_cert_chain(str(cfg.resolve(m.cert_file)), str(cfg.resolve(m.key_file)))
            self.client.tls_set_context(ctx)
        self.client.reconnect_delay_set(1, 8)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def start(self) -> DeviceListener:
        self.client.connect_async(self.cfg.mqtt.host, self.cfg.mqtt.port)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        f = P.central_filters(self.cfg.mqtt.topic_prefix)
        client.subscribe([(f[P.TopicKind.status], 1), (f[P.TopicKind.heartbeat], 0)])
        log(logger, "device_listener_connected", host=self.cfg.mqtt.host, port=self.cfg.mqtt.port)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            t = P.parse_topic(msg.topic, self.cfg.mqtt.topic_prefix)
            now = datetime.now(timezone.utc)
            with self.store.session() as s:
                row = s.get(DeviceHealth, t.device) or DeviceHealth(device_id=t.device, site_id=t.site)
                if t.kind is P.TopicKind.status:
                    st = P.decode_status(bytes(msg.payload))
                    row.state, row.status_at = st.state, now
                else:
                    hb = P.decode_heartbeat(bytes(msg.payload))
                    row.heartbeat_at, row.heartbeat = now, hb.model_dump(mode="json", exclude={"passes"})
                    if hb.passes:
                        store_passes(s, self.cfg, t.device, hb.passes, now)
                s.merge(row)
        except Exception as e:  # noqa: BLE001 - a bad message from one device must not stop the listener
            log(logger, "device_message_refused", topic=msg.topic, error=f"{type(e).__name__}: {e}")


#: intervals ending later than this after the receipt are refused (an edge clock far ahead)
FUTURE_SKEW = timedelta(minutes=10)


def store_passes(
    s: Session, cfg: CentralConfig, device_id: str, passes: list[P.PassCount], now: datetime
) -> int:
    """Upsert a heartbeat's pass counters (one row per device, point and interval start). The edge re-sends an
    interval while it counts on, and heartbeats may arrive out of order: each counter keeps the largest value seen.
    An interval for another point than the device is registered for, or far in the future, is refused (logged).
    Returns the intervals stored."""
    reg = cfg.registered(device_id)
    n = 0
    for p in passes:
        if reg is not None and reg.point_id is not None and p.point_id != reg.point_id:
            log(
                logger,
                "passes_refused",
                device=device_id,
                point=p.point_id,
                reason=f"registered for {reg.point_id}",
            )
            continue
        start = datetime.fromtimestamp(p.start, timezone.utc)
        end = datetime.fromtimestamp(p.end, timezone.utc)
        if end > now + FUTURE_SKEW:
            log(
                logger,
                "passes_refused",
                device=device_id,
                point=p.point_id,
                reason=f"interval ends {end.isoformat()}",
            )
            continue
        row = s.get(PassCount, (device_id, p.point_id, start))
        if row is None:
            row = PassCount(
                device_id=device_id,
                point_id=p.point_id,
                start=start,
                end=end,
                riders=0,
                violators=0,
                no_helmet=0,
                updated_at=now,
            )
            s.add(row)
        grown = (
            max(0, p.riders - row.riders),
            max(0, p.violators - row.violators),
            max(0, p.no_helmet - row.no_helmet),
        )
        row.end = max(_aware(row.end), end)
        row.riders += grown[0]
        row.violators += grown[1]
        row.no_helmet += grown[2]
        row.updated_at = now
        # the hourly sums grow by what the interval grew
        hour = start.replace(minute=0, second=0, microsecond=0)
        h = s.get(PassHour, (device_id, p.point_id, hour))
        if h is None:
            h = PassHour(
                device_id=device_id,
                point_id=p.point_id,
                hour=hour,
                last_end=end,
                riders=0,
                violators=0,
                no_helmet=0,
            )
            s.add(h)
        h.last_end = max(_aware(h.last_end), end)
        h.riders += grown[0]
        h.violators += grown[1]
        h.no_helmet += grown[2]
        n += 1
    return n


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def device_health(
    store: CentralStore, now: datetime, stale: timedelta = timedelta(seconds=90)
) -> list[dict[str, Any]]:
    """Online: status ``online`` and a heartbeat within ``stale`` (a device that died without its Last
    Will shows offline once its heartbeats stop)."""
    with store.session() as s:
        rows = s.execute(select(DeviceHealth).order_by(DeviceHealth.device_id)).scalars().all()
        out = []
        for r in rows:
            hb_at = r.heartbeat_at
            fresh = hb_at is not None and now - hb_at <= stale
            out.append(
                {
                    "device": r.device_id,
                    "site": r.site_id,
                    "online": r.state != "offline" and fresh,
                    "state": r.state,
                    "heartbeat_at": hb_at.isoformat() if hb_at else None,
                    "queue_depth": r.heartbeat.get("queue_depth"),
                    "fps": r.heartbeat.get("fps"),
                    "disk_free_mb": r.heartbeat.get("disk_free_mb"),
                    "components": r.heartbeat.get("components", {}),
                }
            )
    return out
