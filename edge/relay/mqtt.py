"""``MqttRelay``: publishes the outbox to the central office over MQTT, nothing lost.

One publisher thread (the *pump*, owned and started by :meth:`MqttRelay.start`) plus paho's
network thread. The pump takes pending events from the :class:`~edge.relay.outbox.Outbox` in
insertion order, publishes each event's media chunks and then the event JSON with QoS 1, and
keeps at most ``max_inflight`` messages waiting for their PUBACK and at most
``max_unacked_events`` events at the broker without central's ack (flow control). An event is marked
``published`` when every one of its messages has been PUBACKed, and ``acked`` when central's
``.../ack`` says it is stored. paho re-sends un-PUBACKed messages itself after a reconnect (same
process); after a restart the outbox still holds them as ``pending`` and they go out again;
events the broker took but central never acknowledged go out again after ``ack_timeout_s``.
Duplicates are harmless: central is idempotent on ``event_id`` and media chunks.

Paho callbacks only put facts on queues; every outbox write happens in the pump (batched).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from anqi_contract import protocol as P
from anqi_contract.logs import log
from edge import __version__
from edge.config.device import DeviceConfig
from edge.config.relay import RelayConfig, TlsConfig
from edge.health import Health, Status
from edge.relay.outbox import Outbox, OutboxItem

logger = logging.getLogger("anqi.relay.mqtt")


class RelayConfigError(ValueError):
    """A relay setting that cannot be used; the message names the key (and file)."""


def read_password(password_env: str | None) -> str | None:
    """The broker password from ``$<password_env>`` or ``$CREDENTIALS_DIRECTORY/<password_env>``."""
    if not password_env:
        return None
    value = os.environ.get(password_env)
    if value:
        return value
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        f = Path(cred_dir) / password_env
        try:
            return f.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            pass
        except OSError as e:
            raise RelayConfigError(
                f"relay.mqtt.password_env: cannot read credential {f}: {e.strerror}"
            ) from None
    raise RelayConfigError(
        f"relay.mqtt.password_env: environment variable {password_env} is not set"
        + (
            f" and {cred_dir}/{password_env} does not exist"
            if cred_dir
            else " (nor a systemd credential of that name)"
        )
    )


def connect_problem(
    host: str, port: int, ctx: ssl.SSLContext | None, insecure: bool = False, timeout: float = 3.0
) -> str:
    """Why a connection to the broker fails, in words: name resolution, TCP (refused, no answer) or the TLS
    handshake (an untrusted certificate names the verification error, e.g. an unknown CA)."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as e:
        return f"host name {host!r} does not resolve ({e.strerror})"
    except ConnectionRefusedError:
        return "connection refused (no broker listening on that port)"
    except TimeoutError:
        return f"no answer within {timeout:g} s (host down or a firewall drops the packets)"
    except OSError as e:
        return f"TCP connection failed: {e.strerror or e}"
    with sock:
        if ctx is None:
            return "TCP connects but MQTT fails (a TLS listener? then set relay.mqtt.tls)"
        try:
            if insecure:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            with ctx.wrap_socket(sock, server_hostname=host):
                pass
        except ssl.SSLCertVerificationError as e:
            return (
                f"TLS handshake failed: the broker's certificate is not trusted ({e.verify_message}); "
                "check relay.mqtt.tls.ca_file"
            )
        except ssl.SSLError as e:
            return f"TLS handshake failed: {e.reason or e} (is the port a TLS listener? client certificate?)"
        except OSError as e:
            return f"TLS handshake failed: {e.strerror or e}"
    return "TCP and TLS work, but the MQTT connection failed (see the broker's log)"


def config_path(p: Path | str, base_dir: Path | None) -> Path:
    """A path of the config: as written when absolute, else relative to ``base_dir`` (the config file's folder;
    the working directory when None)."""
    p = Path(p).expanduser()
    return p if p.is_absolute() else ((base_dir or Path.cwd()) / p).resolve()


def tls_context(tls: TlsConfig | None, base_dir: Path | None = None) -> ssl.SSLContext | None:
    """Build the TLS context of ``relay.mqtt.tls`` (files relative to ``base_dir``); :class:`RelayConfigError`
    names the key and file when one is wrong."""
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if tls.ca_file is not None:
        ca = config_path(tls.ca_file, base_dir)
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except FileNotFoundError:
            raise RelayConfigError(f"relay.mqtt.tls.ca_file: file not found: {ca}") from None
        except PermissionError:
            raise RelayConfigError(f"relay.mqtt.tls.ca_file: not readable: {ca}") from None
        except (ssl.SSLError, OSError) as e:
            raise RelayConfigError(f"relay.mqtt.tls.ca_file: not a PEM CA certificate: {ca} ({e})") from None
    if tls.cert_file is not None and tls.key_file is not None:
        cert, key = config_path(tls.cert_file, base_dir), config_path(tls.key_file, base_dir)
        for k, p in (("cert_file", cert), ("key_file", key)):
            if not p.is_file():
                raise RelayConfigError(f"relay.mqtt.tls.{k}: file not found: {p}")
            if not os.access(p, os.R_OK):
                raise RelayConfigError(f"relay.mqtt.tls.{k}: not readable: {p}")
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError) as e:
            raise RelayConfigError(
                f"relay.mqtt.tls.cert_file/key_file: {cert} and {key} are not a matching PEM certificate and key ({e})"
            ) from None
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
    return ctx


def _temperature_c() -> float | None:
    best: float | None = None
    for zone in Path("/sys/class/thermal").glob("thermal_zone*/temp"):
        try:
            t = int(zone.read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
        best = t if best is None else max(best, t)
    return best


def _pubacked(info: paho.MQTTMessageInfo) -> bool:
    """Whether paho has the PUBACK of this QoS 1 message. ``is_published()`` raises for a message
    handed over while disconnected (its rc stays NO_CONN) although paho queued it and sends it
    after the reconnect; the completion flag itself is still right, so read it directly."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return bool(getattr(info, "_published", False))


@dataclass
class _InFlight:
    item: OutboxItem
    remaining: int
    submitted: float


class MqttRelay:
    """Publishes the outbox over MQTT (QoS 1, ordered, bounded window), applies central's acks.

    ``start()`` / ``stop()``; :meth:`wait_drained` blocks until everything is published or acked.
    Health component ``relay``: connected, queue_depth, oldest_unsent_age_s, disk_used_mb.
    """

    def __init__(
        self,
        relay: RelayConfig,
        device: DeviceConfig,
        outbox: Outbox,
        health: Health | None = None,
        heartbeat_info: Callable[[], dict[str, Any]] | None = None,
        *,
        base_dir: Path | None = None,
    ):
        """The ``relay`` and ``device`` sections; ``base_dir`` (the config file's folder) for relative TLS files."""
        self.relay = relay
        self.device = device
        self.mc = relay.mqtt
        if self.mc.host is None:
            raise RelayConfigError(
                "relay.mqtt.host: no broker configured; use edge.relay.connect_or_start_local(cfg.relay) for a development broker"
            )
        self.outbox = outbox
        self.health = health
        self.heartbeat_info = heartbeat_info
        dev = device
        self.prefix = self.mc.topic_prefix
        self.topics = {
            k: P.topic_for(self.prefix, dev.site_id, dev.device_id, k)
            for k in (P.TopicKind.event, P.TopicKind.status, P.TopicKind.heartbeat, P.TopicKind.ack)
        }
        self.client_id = self.mc.client_id or f"anqi-{dev.device_id}"
        self.chunk_bytes = self.mc.media_chunk_kb * 1024
        self._password = read_password(self.mc.password_env)
        self._tls = tls_context(self.mc.tls, base_dir)
        self._protocol = paho.MQTTv311 if self.mc.protocol == "3.1.1" else paho.MQTTv5
        self._client: paho.Client | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._pump_thread: threading.Thread | None = None
        # pump thread only: messages handed to paho and not yet PUBACKed, and per-event progress
        self._tracked: deque[tuple[paho.MQTTMessageInfo, int | None]] = deque()
        self._inflight: dict[int, _InFlight] = {}
        # filled by paho callbacks (guarded by _lock); paho calls on_publish holding its own
        # message lock, so the pump never holds _lock while it calls into paho
        self._refused: dict[int, ReasonCode] = {}
        self._acks: deque[tuple[list[P.Ack], int, int]] = (
            deque()
        )  # (acks of one message, mid, qos): PUBACKed after the commit
        self._refused_until = 0.0
        self._rescan = False
        self._health_info: dict[str, Any] = {}
        self._fallback_requested = False
        self._started = time.monotonic()
        self.connects = 0
        self.published_events = 0
        self.stats_acks: dict[str, int] = {}
        self._last_fail: tuple[str, float] = ("", 0.0)  #: last connect failure cause logged, and when

    # --- paho client -------------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        v5 = self._protocol == paho.MQTTv5
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=self._protocol,
            clean_session=None if v5 else False,
            reconnect_on_failure=True,
            manual_ack=True,
        )  # an ack message is PUBACKed only after the outbox committed it
        c.max_inflight_messages_set(self.mc.max_inflight)
        c.max_queued_messages_set(0)  # the pump bounds what it hands to paho (the window)
        # exponential back-off from min to max; paho annotates ints but computes with any number
        c.reconnect_delay_set(self.mc.reconnect_min_s, self.mc.reconnect_max_s)  # type: ignore[arg-type]
        if self.mc.username:
            c.username_pw_set(self.mc.username, self._password)
        if self._tls is not None:
            c.tls_set_context(self._tls)
            if self.mc.tls and self.mc.tls.insecure_skip_verify:
                c.tls_insecure_set(True)
        will = P.encode_status(P.DeviceStatus(state="offline", device_id=self.device.device_id))
        c.will_set(self.topics[P.TopicKind.status], will, qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_connect_fail = self._on_connect_fail
        return c

    def _connect_async(self, c: paho.Client) -> None:
        if self._protocol == paho.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.mc.session_expiry_s
            c.connect_async(
                self.mc.host or "", self.mc.port, self.mc.keepalive_s, clean_start=False, properties=props
            )
        else:
            c.connect_async(self.mc.host or "", self.mc.port, self.mc.keepalive_s)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            unsupported = rc.value in (0x01, 0x84)
            if unsupported and self.mc.protocol == "auto" and self._protocol == paho.MQTTv5:
                self._fallback_requested = True
            log(
                logger,
                "mqtt_connect_refused",
                logging.ERROR,
                host=self.mc.host,
                port=self.mc.port,
                reason=str(rc),
                hint="check relay.mqtt.username / password_env and the broker's ACL"
                if rc.value in (0x04, 0x05, 0x86, 0x87)
                else "",
            )
            self._set_health("down", f"broker refused the connection: {rc}")
            return
        self.connects += 1
        client.subscribe(self.topics[P.TopicKind.ack], qos=1)
        client.publish(
            self.topics[P.TopicKind.status],
            P.encode_status(
                P.DeviceStatus(
                    state="online", device_id=self.device.device_id, time=time.time(), version=__version__
                )
            ),
            qos=1,
            retain=True,
        )
        log(
            logger,
            "mqtt_connected",
            host=self.mc.host,
            port=self.mc.port,
            mqtt="5" if self._protocol == paho.MQTTv5 else "3.1.1",
            session_present=bool(getattr(flags, "session_present", False)),
            tls=self._tls is not None,
        )
        self._connected.set()
        self._poke()

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._stop.is_set():
            log(logger, "mqtt_disconnected", logging.WARNING, reason=str(rc))
            self._set_health("down", f"disconnected: {rc}")

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        # paho does not say why; find out (a TCP connect and, with TLS, a handshake) and say it once per cause
        cause = connect_problem(
            self.mc.host or "127.0.0.1",
            self.mc.port,
            self._tls,
            self.mc.tls is not None and self.mc.tls.insecure_skip_verify,
        )
        self._set_health("down", f"cannot connect to broker {self.mc.host}:{self.mc.port}: {cause}")
        now = time.monotonic()
        if cause != self._last_fail[0] or now - self._last_fail[1] > 60:
            self._last_fail = (cause, now)
            log(
                logger,
                "mqtt_connect_failed",
                logging.ERROR,
                host=self.mc.host,
                port=self.mc.port,
                cause=cause,
            )

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with self._lock:
            if rc.is_failure:  # MQTT 5 brokers say so when the ACL refuses a topic
                self._refused[mid] = rc
            self._wake.notify_all()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic != self.topics[P.TopicKind.ack]:
            client.ack(msg.mid, msg.qos)
            return
        try:
            acks = P.decode_acks(bytes(msg.payload))  # one Ack, or a batch of them (AckBatch)
        except P.ProtocolError as e:
            log(logger, "ack_invalid", logging.WARNING, error=str(e)[:200])
            client.ack(msg.mid, msg.qos)
            return
        with self._lock:
            self._acks.append((acks, msg.mid, msg.qos))
            self._wake.notify_all()

    # --- pump --------------------------------------------------------------------------------

    def _poke(self) -> None:
        if self._lock.acquire(timeout=0.01):  # never block the caller (outbox add)
            try:
                self._wake.notify_all()
            finally:
                self._lock.release()

    def start(self) -> MqttRelay:
        if self._pump_thread is not None:
            return self
        self._stop.clear()
        self.outbox.add_listener(self._poke)
        self._client = self._make_client()
        self._connect_async(self._client)
        self._client.loop_start()
        self._pump_thread = threading.Thread(target=self._pump, name="anqi-relay", daemon=True)
        self._pump_thread.start()
        self._set_health("down", "connecting")
        log(
            logger,
            "relay_started",
            host=self.mc.host,
            port=self.mc.port,
            client_id=self.client_id,
            protocol=self.mc.protocol,
        )
        return self

    def _collect_pubacks(self) -> list[int]:
        """Pump thread: retire PUBACKed messages; returns seqs whose every message is PUBACKed."""
        done: list[int] = []
        refused_any: ReasonCode | None = None
        still: deque[tuple[paho.MQTTMessageInfo, int | None]] = deque()
        for info, seq in self._tracked:
            if not _pubacked(info):
                still.append((info, seq))
                continue
            with self._lock:
                rc = self._refused.pop(info.mid, None)
            if seq is None:
                continue
            fl = self._inflight.get(seq)
            if fl is None:
                continue
            if rc is not None:
                refused_any = rc
                del self._inflight[seq]  # stays pending in the outbox; tried again after a pause
                continue
            fl.remaining -= 1
            if fl.remaining <= 0:
                del self._inflight[seq]
                done.append(seq)
        self._tracked = still
        if refused_any is not None:
            self._refused_until = time.monotonic() + max(5.0, self.mc.reconnect_min_s)
            self._rescan = True
            log(
                logger,
                "mqtt_publish_refused",
                logging.ERROR,
                reason=str(refused_any),
                hint="the broker's ACL must allow this device's topics",
            )
            if self.health:
                self.health.alarm(
                    "relay_publish_refused",
                    f"broker refused a publish ({refused_any}); check the ACL for user {self.mc.username}",
                )
        return done

    def _apply_feedback(self) -> None:
        # acks first, PUBACKs second: the broker's PUBACK of an event reaches paho before central's ack of it,
        # so every acked event is marked published in this same batch (an ack for an event never published
        # is ignored by the outbox)
        with self._lock:
            acks = list(self._acks)
            self._acks.clear()
        done = self._collect_pubacks()
        if not done and not acks:
            return
        with self.outbox.batch():  # one commit for the whole burst
            if done:
                self.published_events += self.outbox.mark_published(done)
            for batch, _, _ in acks:
                for ack in batch:
                    if ack.status == "stored":
                        outcome = self.outbox.mark_acked(ack.event_id, ack.media_complete, ack.missing_media)
                    else:
                        outcome = self.outbox.mark_rejected(ack.event_id, ack.reason or "no reason given")
                    self.stats_acks[outcome] = self.stats_acks.get(outcome, 0) + 1
                    if outcome == "unknown":  # never published by this device: a forged or misrouted ack
                        log(
                            logger,
                            "ack_ignored",
                            logging.WARNING,
                            event_id=str(ack.event_id),
                            status=ack.status,
                            reason="event not published by this device",
                        )
                    else:
                        log(
                            logger,
                            "ack_applied",
                            event_id=str(ack.event_id),
                            status=ack.status,
                            media_complete=ack.media_complete,
                            outcome=outcome,
                        )
        client = self._client
        if client is not None:
            for _, mid, qos in acks:
                client.ack(mid, qos)  # committed: now the broker may forget them

    def _submit(self, item: OutboxItem) -> bool:
        """Publish one event's media chunks then the event; False if stopped midway."""
        dev = self.device
        media = item.media_to_send()
        fl = _InFlight(
            item, sum(P.chunk_count(m.size, self.chunk_bytes) for m in media) + 1, time.monotonic()
        )
        self._inflight[item.seq] = fl
        for m in media:
            topic = P.media_topic(self.prefix, dev.site_id, dev.device_id, item.event_id, m.name)
            expected = P.chunk_count(m.size, self.chunk_bytes)
            sent = 0
            try:
                for _, payload in P.iter_media_chunks(
                    item.event_id, m.name, m.path, self.chunk_bytes, sha256=m.sha256
                ):
                    if not self._publish_tracked(topic, payload, item.seq):
                        self._inflight.pop(item.seq, None)
                        return False
                    sent += 1
            except OSError as e:  # dropped by the disk policy meanwhile, or unreadable
                log(
                    logger,
                    "media_file_unreadable",
                    logging.ERROR,
                    event_id=str(item.event_id),
                    media=m.name,
                    error=e.strerror or str(e),
                )
            fl.remaining -= expected - sent
        if not self._publish_tracked(self.topics[P.TopicKind.event], item.payload, item.seq):
            self._inflight.pop(item.seq, None)
            return False
        return True

    def _publish_tracked(self, topic: str, payload: bytes, seq: int | None, retain: bool = False) -> bool:
        """Pump thread: publish QoS 1 once the window has room."""
        client = self._client
        assert client is not None
        while len(self._tracked) >= self.mc.max_inflight:
            if self._stop.is_set():
                return False
            done = self._collect_pubacks()
            if done:
                self.published_events += self.outbox.mark_published(done)
                continue
            with self._wake:
                # paho marks the info published just after on_publish returns: re-check soon
                self._wake.wait(0.005)
        info = client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            log(logger, "mqtt_publish_error", logging.ERROR, topic=topic, rc=int(info.rc))
            return False
        self._tracked.append((info, seq))
        return True

    def _pump(self) -> None:
        cursor = 0
        seen_requeue = self.outbox.requeued
        last_hb = 0.0
        last_health = 0.0
        last_house = time.monotonic()
        while not self._stop.is_set():
            try:
                self._apply_feedback()
                now = time.monotonic()
                if self._fallback_requested:
                    self._fall_back_to_311()
                    cursor = 0
                if now - last_health >= 1.0:
                    self._update_health()
                    last_health = now
                if self._connected.is_set() and now - last_hb >= self.relay.heartbeat_s:
                    self._heartbeat()
                    last_hb = now
                if now - last_house >= min(30.0, self.relay.outbox.ack_timeout_s / 2):
                    self.outbox.requeue_unacked(self.relay.outbox.ack_timeout_s)
                    self.outbox.housekeeping()
                    last_house = now
                if not self._connected.is_set() or now < self._refused_until:
                    with self._wake:
                        self._wake.wait(0.2)
                    continue
                if self.outbox.requeued != seen_requeue or self._rescan:
                    seen_requeue = self.outbox.requeued
                    self._rescan = False
                    cursor = 0
                room = self.mc.max_inflight - len(self._tracked)
                # flow control: central must keep up (acks) before more goes to the broker
                ack_room = (
                    self.mc.max_unacked_events - self.outbox.count_state("published") - len(self._inflight)
                )
                items = (
                    self.outbox.next_pending(cursor, limit=min(room, ack_room))
                    if room > 0 and ack_room > 0
                    else []
                )
                if not items:
                    with self._wake:
                        if not self._acks:
                            self._wake.wait(0.005 if self._tracked else 0.2)
                    continue
                for item in items:
                    if self._stop.is_set():
                        break
                    if item.seq in self._inflight:
                        cursor = item.seq
                        continue
                    if not self._submit(item):
                        break
                    cursor = item.seq
            except Exception as e:  # the pump must survive anything a disk or a broker can do
                log(logger, "relay_pump_error", logging.ERROR, error=f"{type(e).__name__}: {e}"[:300])
                self._stop.wait(1.0)

    def _fall_back_to_311(self) -> None:
        self._fallback_requested = False
        log(logger, "mqtt_fallback", logging.WARNING, detail="broker does not speak MQTT 5; using 3.1.1")
        old = self._client
        if old is not None:
            old.loop_stop()
            old.disconnect()
        self._tracked.clear()
        self._inflight.clear()
        self._protocol = paho.MQTTv311
        self._client = self._make_client()
        self._connect_async(self._client)
        self._client.loop_start()

    # --- health / heartbeat ------------------------------------------------------------------

    def _set_health(self, status: Status, detail: str) -> None:
        if self.health:
            self.health.set("relay", status, detail, **self._health_info)

    def _update_health(self) -> None:
        st = self.outbox.stats()
        info = dict(
            connected=self._connected.is_set(),
            queue_depth=st.unacked,
            pending=st.pending,
            published=st.published,
            rejected=st.rejected,
            oldest_unsent_age_s=None
            if st.oldest_unacked_age_s is None
            else round(st.oldest_unacked_age_s, 1),
            disk_used_mb=round(st.disk_used_bytes / 1e6, 2),
        )
        self._health_info = info
        if self.health:
            age = st.oldest_unacked_age_s
            late = age is not None and age > self.relay.backlog_alarm_s
            self.health.alarm(
                "relay_backlog",
                f"{st.unacked} event(s) not acknowledged by central, oldest {age:.0f} s ago "
                f"({'connected' if self._connected.is_set() else 'broker unreachable'})"
                if late and age is not None
                else None,
            )
            if self._connected.is_set():
                self.health.set(
                    "relay",
                    "up" if not st.rejected else "degraded",
                    f"connected to {self.mc.host}:{self.mc.port}",
                    **info,
                )
            else:
                self.health.update_info("relay", **info)

    def _heartbeat(self, qos: int = 0) -> Any:
        st = self.outbox.stats()
        extra = self.heartbeat_info() if self.heartbeat_info else {}
        comps: dict[str, str] = {}
        fps = extra.get("fps")
        if self.health:
            snap = self.health.snapshot()
            comps = {k: str(v.get("status")) for k, v in snap["components"].items()}
            if fps is None:
                fps = next(
                    (
                        v[k]
                        for v in snap["components"].values()
                        for k in ("fps", "detect_fps")
                        if isinstance(v.get(k), (int, float))
                    ),
                    None,
                )
        try:
            stv = os.statvfs(self.outbox.root)
            free_mb: float | None = stv.f_bavail * stv.f_frsize / 1e6
        except OSError:
            free_mb = None
        hb = P.Heartbeat(
            device_id=self.device.device_id,
            time=time.time(),
            uptime_s=time.monotonic() - self._started,
            fps=fps,
            queue_depth=st.unacked,
            oldest_unsent_age_s=st.oldest_unacked_age_s,
            disk_used_mb=st.disk_used_bytes / 1e6,
            disk_free_mb=free_mb,
            temperature_c=extra.get("temperature_c", _temperature_c()),
            components=comps,
            passes=extra.get("passes", []),
        )
        if self._client is None:
            return None
        return self._client.publish(self.topics[P.TopicKind.heartbeat], P.encode_heartbeat(hb), qos=qos)

    # --- public ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_drained(self, timeout: float, until: str = "acked") -> bool:
        """Block until the outbox holds nothing unpublished (``published``) or unacknowledged
        (``acked``, the default); False on timeout. The daemon's ``--until-eof`` uses it."""
        if until not in ("published", "acked"):
            raise ValueError("until must be 'published' or 'acked'")
        return self.outbox.wait_until(until, timeout)  # type: ignore[arg-type]

    def stop(self, flush_timeout_s: float | None = None) -> None:
        """Stop publishing; wait up to ``flush_timeout_s`` (default ``relay.flush_timeout_s``) for
        PUBACKs of what is in flight, mark them, publish ``offline`` and disconnect. What is not
        PUBACKed by then stays ``pending`` in the outbox and goes out after the next start."""
        if self._pump_thread is None:
            return
        bound = self.relay.flush_timeout_s if flush_timeout_s is None else flush_timeout_s
        deadline = time.monotonic() + bound
        self._stop.set()
        self._poke()
        self._pump_thread.join()
        while self._tracked and self._connected.is_set() and time.monotonic() < deadline:
            self._apply_feedback()
            with self._wake:
                self._wake.wait(0.02)
        self._apply_feedback()
        c = self._client
        if c is not None:
            if self._connected.is_set():
                # a last heartbeat, QoS 1: the pass counters of the last interval reach central before we go
                try:
                    last = self._heartbeat(qos=1)
                    if last is not None:
                        last.wait_for_publish(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
                except (RuntimeError, ValueError, OSError) as e:
                    log(logger, "last_heartbeat_failed", logging.WARNING, error=str(e)[:200])
                info = c.publish(
                    self.topics[P.TopicKind.status],
                    P.encode_status(
                        P.DeviceStatus(state="offline", device_id=self.device.device_id, time=time.time())
                    ),
                    qos=1,
                    retain=True,
                )
                try:
                    info.wait_for_publish(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
                except (RuntimeError, ValueError):
                    pass
            c.disconnect()
            c.loop_stop()
        self._connected.clear()
        left = len(self._tracked)
        self._tracked.clear()
        self._inflight.clear()
        self._pump_thread = None
        self._client = None
        self.outbox.remove_listener(self._poke)
        self._set_health("off", "stopped")
        log(logger, "relay_stopped", unacknowledged_messages=left, published_events=self.published_events)

    def __enter__(self) -> MqttRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
