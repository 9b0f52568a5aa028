"""The consumer's MQTT session: one paho client (MQTT 5, TLS and credentials from ``mqtt``), its subscriptions,
and publishing that remembers what the broker has not confirmed yet (``stop()`` waits for it)."""

from __future__ import annotations

import collections
import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from anqi_contract.logs import log
from central_sync.config import MqttConsumerConfig, read_secret

logger = logging.getLogger("anqi.central.consumer")

Subscriptions = Callable[[], list[tuple[str, int]]]
OnMessage = Callable[[str, bytes], None]


class MqttSession:
    """Connects (retrying), subscribes on every connect, hands each message to ``on_message`` (network thread)
    and calls ``on_connected`` after each subscription was sent."""

    def __init__(
        self,
        mqtt: MqttConsumerConfig,
        resolve: Callable[[Path], Path],
        subscriptions: Subscriptions,
        on_message: OnMessage,
        on_connected: Callable[[], None],
        stopping: threading.Event,
    ):
        self.mqtt = mqtt
        self._resolve = (
            resolve  # a configured path (ca_file, cert_file, key_file) relative to the config file
        )
        self._subscriptions = subscriptions
        self._on_message_cb = on_message
        self._on_connected_cb = on_connected
        self._connected = threading.Event()
        self._stopping = stopping  # set by the owner when it stops: a disconnect then is no warning
        self._sub_mid: int | None = -1
        self._pub_lock = threading.Lock()
        self._unconfirmed: collections.deque[paho.MQTTMessageInfo] = collections.deque(maxlen=100_000)
        self.client = self._make_client()

    def _make_client(self) -> paho.Client:
        m = self.mqtt
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=m.client_id, protocol=paho.MQTTv5)
        if m.username:
            c.username_pw_set(
                m.username, read_secret(m.password_env, "mqtt.password_env") if m.password_env else None
            )
        if m.ca_file:
            ctx = ssl.create_default_context(cafile=str(self._resolve(m.ca_file)))
            if m.cert_file and m.key_file:
                ctx.load_cert_chain(str(self._resolve(m.cert_file)), str(self._resolve(m.key_file)))
            c.tls_set_context(ctx)
        c.max_inflight_messages_set(100)
        c.reconnect_delay_set(1, 8)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        return c

    @property
    def connected(self) -> bool:
        """Connected and subscribed: from now on nothing published is missed."""
        return self._connected.is_set()

    def connect(self) -> None:
        """Start the network thread; it connects (and reconnects) in the background."""
        props = Properties(PacketTypes.CONNECT)
        # failover: with the default expiry 0 the session (its place in the share group, the media subscription)
        # ends with the connection, so the broker hands the other consumers every later event at once
        expiry = self.mqtt.session_expiry_s
        props.SessionExpiryInterval = expiry
        self.client.connect_async(
            self.mqtt.host,
            self.mqtt.port,
            self.mqtt.keepalive_s,
            clean_start=expiry == 0,  # never resume a session left by an older version of this consumer
            properties=props,
        )
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        if self._connected.wait(timeout):
            return True
        log(
            logger,
            "consumer_not_connected",
            logging.WARNING,
            host=self.mqtt.host,
            port=self.mqtt.port,
            hint="keeps retrying; check mqtt.host / port / credentials",
        )
        return False

    def close(self) -> None:
        """Wait (at most 10 s) for the broker to confirm what was published, then disconnect."""
        self.flush(10.0)  # a disconnect drops what paho still holds back (beyond the in-flight window)
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> bool:
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return False
        with self._pub_lock:  # kept until the broker confirmed it, so that close() can wait for it
            self._unconfirmed.append(info)
            while self._unconfirmed and self._unconfirmed[0].is_published():
                self._unconfirmed.popleft()
        return True

    def flush(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until the broker confirmed the acks and tasks published so far."""
        end = time.monotonic() + timeout
        with self._pub_lock:
            pending = list(self._unconfirmed)
        for info in pending:
            while not info.is_published() and self.connected and time.monotonic() < end:
                time.sleep(0.01)

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log(logger, "consumer_connect_refused", logging.ERROR, host=self.mqtt.host, reason=str(rc))
            return
        _, self._sub_mid = client.subscribe(self._subscriptions())
        log(
            logger,
            "consumer_connected",
            host=self.mqtt.host,
            port=self.mqtt.port,
            session_present=bool(getattr(flags, "session_present", False)),
            group=self.mqtt.share_group,
        )
        self._on_connected_cb()

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        failed = [str(rc) for rc in rcs if rc.is_failure]
        if failed:
            log(
                logger,
                "subscribe_refused",
                logging.ERROR,
                reasons=",".join(failed),
                hint="check the broker ACL for the consumer user",
            )
        if mid == self._sub_mid:
            self._connected.set()  # subscribed: from now on nothing published is missed

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log(logger, "consumer_disconnected", logging.WARNING, reason=str(rc))

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._on_message_cb(msg.topic, bytes(msg.payload))
