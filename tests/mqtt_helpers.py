"""Helpers for tests that talk to a real broker: a listening MQTT client and a polling wait.

Importable from any test module (``pytest.ini`` puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from anqi_contract import protocol as P


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> bool:
    """Poll ``cond`` every ``step`` s until it holds or ``timeout`` passes; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


class Listener:
    """A real MQTT client collecting what central publishes (acks, tasks)."""

    def __init__(self, port: int, topics: list[str]):
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.c = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex[:6]}", protocol=paho.MQTTv5
        )
        ready = threading.Event()
        self.c.on_connect = lambda c, *a: (c.subscribe([(t, 1) for t in topics]), None)[1]
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert ready.wait(10)

    def _on_message(self, c: Any, u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def acks(self) -> list[P.Ack]:
        with self._lock:
            return [a for t, p in self.messages if t.endswith("/ack") for a in P.decode_acks(p)]

    def tasks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(p) for t, p in self.messages if "/central/tasks/" in t]

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
