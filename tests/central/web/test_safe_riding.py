"""Pass counters from the edge's heartbeat to the cockpit's safe-riding rate: a real mosquitto, the real edge
relay (outbox + MqttRelay, heartbeat every second), central's status/heartbeat reader and the cockpit query."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from anqi_contract import protocol as P
from central_sync.config import parse_config
from central_sync.storage.store import CentralStore
from central_sync.storage.webtables import PassCount
from central_sync.web import cockpit
from central_sync.web.devices import DeviceListener
from edge.health import Health
from edge.passes import PassCounter
from edge.relay import MqttRelay, Outbox


def wait(pred: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def rows(store: CentralStore) -> list[tuple[str, int, int, int]]:
    with store.session() as s:
        return [
            (r.point_id, r.riders, r.violators, r.no_helmet)
            for r in s.scalars(select(PassCount).order_by(PassCount.start))
        ]


def test_heartbeat_pass_counters_reach_the_cockpit_rate(
    tmp_path: Path, broker: Any, relay_config: Any
) -> None:
    cfg = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'c.db'}"},
            "mqtt": {"port": broker.port, "client_id": f"c-{uuid.uuid4().hex[:6]}"},
            "media": {"dir": str(tmp_path / "media")},
            "devices": [
                {"device_id": "anqi-dev-0001", "site_id": "huzhou-demo", "point_id": "renmin-rd"},
                {"device_id": "anqi-dev-0009", "site_id": "huzhou-demo", "point_id": "hongqi-rd"},
            ],
        },
        "test",
        tmp_path,
    )
    store = CentralStore.from_config(cfg)
    listener = DeviceListener(cfg, store).start()
    ecfg = relay_config(
        tmp_path / "edge", broker.port, device={"device_id": "anqi-dev-0001", "site_id": "huzhou-demo",
                                                 "point_id": "renmin-rd"},
    )  # fmt: skip
    counter = PassCounter("renmin-rd", 300, keep=12)
    now = datetime.now(timezone.utc)
    t0 = now - timedelta(seconds=now.timestamp() % 300) - timedelta(minutes=10)  # two intervals ago
    for k in range(8):
        counter.seen_in_zone(k, t0 + timedelta(seconds=20 * k))  # 8 riders in the first interval
    counter.violated(0, "no_helmet")
    counter.violated(1, "wrong_way")
    health = Health(tmp_path / "health.json", "anqi-dev-0001")
    outbox = Outbox.for_config(ecfg.relay.outbox, ecfg.data_dir, health)
    relay = MqttRelay(
        ecfg.relay, ecfg.device, outbox, health, heartbeat_info=lambda: {"passes": counter.snapshot()}
    ).start()
    try:
        assert wait(lambda: rows(store) == [("renmin-rd", 8, 2, 1)]), rows(store)
        # the interval counts on (a violation decided later, two more riders, a new interval): the same row grows
        counter.violated(2, "no_helmet")
        counter.seen_in_zone(100, t0 + timedelta(seconds=299))
        counter.seen_in_zone(101, t0 + timedelta(seconds=400))
        assert wait(lambda: rows(store) == [("renmin-rd", 9, 3, 2), ("renmin-rd", 1, 0, 0)]), rows(store)
        safe = cockpit.safe_riding(store, t0 - timedelta(days=1))
        assert safe["renmin-rd"]["riders"] == 10 and safe["renmin-rd"]["violators"] == 3
        assert safe["renmin-rd"]["rate"] == 0.7 and safe["renmin-rd"]["helmet_rate"] == 0.8
        assert cockpit.safe_riding(store, now + timedelta(hours=1)) == {}  # the period bounds the intervals

        # an older heartbeat arriving late never lowers a counter; a point the device is not registered for and an
        # interval in the future are refused; a broken heartbeat is refused without stopping the reader
        pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="late-edge")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        topic = P.heartbeat_topic("anqi/v1", "huzhou-demo", "anqi-dev-0001")

        def beat(passes: list[dict[str, Any]]) -> None:
            hb = P.Heartbeat(
                device_id="anqi-dev-0001",
                time=time.time(),
                uptime_s=1,
                queue_depth=0,
                passes=[P.PassCount.model_validate(p) for p in passes],
            )
            pub.publish(topic, P.encode_heartbeat(hb), qos=1).wait_for_publish(5)

        start = t0.timestamp()
        beat([{"point_id": "renmin-rd", "start": start, "end": start + 300, "riders": 5, "violators": 1}])
        beat([{"point_id": "hongqi-rd", "start": start, "end": start + 300, "riders": 50}])
        future = (now + timedelta(days=1)).timestamp()
        beat([{"point_id": "renmin-rd", "start": future, "end": future + 300, "riders": 50}])
        bad = {"v": 1, "device_id": "anqi-dev-0001", "time": 0, "uptime_s": 1, "queue_depth": 0,
               "passes": [{"point_id": "renmin-rd", "start": start, "end": start + 300, "riders": 1, "violators": 9}]}  # fmt: skip
        pub.publish(topic, json.dumps(bad).encode(), qos=1).wait_for_publish(5)
        counter.seen_in_zone(102, t0 + timedelta(seconds=401))
        assert wait(lambda: rows(store) == [("renmin-rd", 9, 3, 2), ("renmin-rd", 2, 0, 0)]), rows(store)
        pub.loop_stop()
        pub.disconnect()

        # the last interval's counts go out with the relay's last heartbeat at a clean stop (QoS 1): a relay
        # whose next periodic heartbeat is an hour away
        relay.stop()
        slow = relay_config(
            tmp_path / "edge", broker.port, device={"device_id": "anqi-dev-0001", "site_id": "huzhou-demo",
                                                     "point_id": "renmin-rd"}, relay={"heartbeat_s": 3600},
        )  # fmt: skip
        relay = MqttRelay(
            slow.relay, slow.device, outbox, health, heartbeat_info=lambda: {"passes": counter.snapshot()}
        ).start()
        assert relay.wait_connected(10)
        time.sleep(1.0)  # its first heartbeat (at connect) has gone; the next one is due in an hour
        counter.seen_in_zone(103, t0 + timedelta(seconds=402))
        counter.violated(103, "red_light")
        time.sleep(1.0)
        assert rows(store)[-1] == ("renmin-rd", 2, 0, 0)
        relay.stop()
        assert wait(lambda: rows(store)[-1] == ("renmin-rd", 3, 1, 0), 5), rows(store)
    finally:
        relay.stop()
        listener.stop()
        store.close()
