"""The deployment broker config (config/mosquitto/) run for real: TLS, passwords, per-device ACL.

The session generates dev certificates and passwords with ``config/mosquitto/gen-dev-pki.sh``,
renders ``mosquitto.conf`` with those paths and a free port, and runs mosquitto on it.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from broker_pki import CENTRAL, DEV_A, DEV_B, DISPATCH, MOSQ, SITE, render_conf
from mqtt_helpers import wait_for as _wait
from paho.mqtt.enums import CallbackAPIVersion

from anqi_contract import protocol as P
from anqi_contract.localbroker import LocalBroker, free_port
from anqi_tools.reference_consumer import ReferenceConsumer
from edge.config import EdgeConfig
from edge.health import Health
from edge.relay import MqttRelay, Outbox, RelayConfigError, check_config


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    subprocess.run(
        ["bash", str(MOSQ / "gen-dev-pki.sh"), str(out), CENTRAL, DEV_A, DEV_B, DISPATCH],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def deploy_broker(pki: Path, broker_factory: Any, tmp_path: Path) -> LocalBroker:
    port = free_port()
    wd = tmp_path / "broker"
    wd.mkdir()
    return broker_factory(port=port, workdir=wd, base_conf=render_conf(pki, port, wd))


def _pw(pki: Path, user: str) -> str:
    return (pki / "passwords" / user).read_text()


def _client(pki: Path, port: int, user: str, v5: bool = True, password: str | None = None) -> paho.Client:
    c = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"t-{user}-{uuid.uuid4().hex[:6]}",
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
    )
    c.username_pw_set(user, password if password is not None else _pw(pki, user))
    c.tls_set(ca_certs=str(pki / "ca.crt"))
    return c


def _connect(c: paho.Client, port: int) -> ReasonCodeLike:
    result: dict[str, Any] = {}
    c.on_connect = lambda cl, u, f, rc, p: result.setdefault("rc", rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    end = time.monotonic() + 10
    while "rc" not in result and time.monotonic() < end:
        time.sleep(0.02)
    return result.get("rc")


ReasonCodeLike = Any


def _device_cfg(
    tmp_path: Path, relay_config: Callable[..., EdgeConfig], pki: Path, port: int, device: str, **kw: Any
) -> EdgeConfig:
    return relay_config(
        tmp_path / device,
        port,
        username=device,
        password_env="ANQI_MQTT_PASSWORD",
        tls={"ca_file": str(pki / "ca.crt"), **kw.pop("tls", {})},
        device={"device_id": device, "site_id": SITE},
        **kw,
    )


def _central(pki: Path, port: int) -> ReferenceConsumer:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    return ReferenceConsumer(
        "127.0.0.1",
        port,
        client_id="anqi-central-test",
        username=CENTRAL,
        password=_pw(pki, CENTRAL),
        tls=ctx,
    ).start()


def test_device_relays_over_tls_with_password_and_gets_central_acks_through_the_acl(
    tmp_path: Path,
    pki: Path,
    deploy_broker: LocalBroker,
    make_event: Any,
    relay_config: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANQI_MQTT_PASSWORD", _pw(pki, DEV_A))
    cfg = _device_cfg(tmp_path, relay_config, pki, deploy_broker.port, DEV_A)
    assert check_config(cfg) == []
    central = _central(pki, deploy_broker.port)
    outbox = Outbox.for_config(cfg.relay.outbox, cfg.data_dir)
    evs = [make_event(tmp_path, i, {"face.jpg": 5000}, device=DEV_A, site=SITE) for i in range(3)]
    for ev, f in evs:
        outbox.add(ev, f)
    with MqttRelay(cfg.relay, cfg.device, outbox, Health(tmp_path / "h.json", DEV_A)) as relay:
        assert relay.wait_drained(20), outbox.stats()
    assert central.order == [e.event_id for e, _ in evs]
    assert _wait(lambda: central.statuses.get(DEV_A) == "offline", 5)
    central.stop()


def test_a_device_cannot_publish_as_another_device(
    tmp_path: Path, pki: Path, deploy_broker: LocalBroker, make_event: Any
) -> None:
    central = _central(pki, deploy_broker.port)
    forged, _ = make_event(tmp_path, 0, {}, device=DEV_B, site=SITE)
    own, _ = make_event(tmp_path, 1, {}, device=DEV_A, site=SITE)
    # MQTT 5: the broker answers the forged publish with a failure reason code
    a5 = _client(pki, deploy_broker.port, DEV_A, v5=True)
    codes: dict[int, Any] = {}
    a5.on_publish = lambda c, u, mid, rc, p: codes.__setitem__(mid, rc)
    assert not _connect(a5, deploy_broker.port).is_failure
    bad = a5.publish(P.event_topic("anqi/v1", SITE, DEV_B), P.encode_event(forged), qos=1)
    good = a5.publish(P.event_topic("anqi/v1", SITE, DEV_A), P.encode_event(own), qos=1)
    assert _wait(lambda: bad.mid in codes and good.mid in codes, 10)
    assert codes[bad.mid].is_failure and "authori" in str(codes[bad.mid]).lower()
    assert not codes[good.mid].is_failure
    a5.loop_stop()
    a5.disconnect()  # one connection per device: the client id is the username (use_username_as_clientid)
    # MQTT 3.1.1 has no way to say no: the broker drops it silently
    a3 = _client(pki, deploy_broker.port, DEV_A, v5=False)
    assert not _connect(a3, deploy_broker.port).is_failure
    a3.publish(
        P.media_topic("anqi/v1", SITE, DEV_B, forged.event_id, "face.jpg"), b"x", qos=1
    ).wait_for_publish(5)
    a3.publish(P.event_topic("anqi/v1", SITE, DEV_B), P.encode_event(forged), qos=1).wait_for_publish(5)
    a3.publish(
        P.ack_topic("anqi/v1", SITE, DEV_A),
        P.encode_ack(P.Ack(event_id=own.event_id, status="stored", media_complete=True)),
        qos=1,
    ).wait_for_publish(5)
    assert central.wait_for(1, 10)
    time.sleep(0.5)
    assert list(central.events) == [own.event_id]  # the legitimate one arrived, the forged ones did not
    assert central.corrupt_chunks == 0
    a3.loop_stop()
    a3.disconnect()
    central.stop()


def test_a_device_reads_only_its_own_acks(pki: Path, deploy_broker: LocalBroker) -> None:
    got: dict[str, list[str]] = {DEV_A: [], DEV_B: []}
    clients = {}
    for dev in (DEV_A, DEV_B):
        c = _client(pki, deploy_broker.port, dev)
        c.on_message = lambda cl, u, m, dev=dev: got[dev].append(m.topic)
        assert not _connect(c, deploy_broker.port).is_failure
        c.subscribe("anqi/v1/+/+/ack", qos=1)  # asks for everyone's acks
        clients[dev] = c
    central = _client(pki, deploy_broker.port, CENTRAL)
    assert not _connect(central, deploy_broker.port).is_failure
    time.sleep(0.3)
    ack = P.encode_ack(P.Ack(event_id=uuid.uuid4(), status="stored", media_complete=True))
    central.publish(P.ack_topic("anqi/v1", SITE, DEV_B), ack, qos=1).wait_for_publish(5)
    central.publish(P.ack_topic("anqi/v1", SITE, DEV_A), ack, qos=1).wait_for_publish(5)
    assert _wait(lambda: len(got[DEV_A]) == 1 and len(got[DEV_B]) == 1, 10), got
    time.sleep(0.3)
    assert got == {DEV_A: [P.ack_topic("anqi/v1", SITE, DEV_A)], DEV_B: [P.ack_topic("anqi/v1", SITE, DEV_B)]}
    for c in (*clients.values(), central):
        c.loop_stop()
        c.disconnect()


@pytest.mark.parametrize(
    "user, password, expect",
    [
        (DEV_A, "wrong-password", "refused"),
        ("nobody", "x", "refused"),
    ],
)
def test_unknown_users_and_wrong_passwords_are_refused(
    pki: Path, deploy_broker: LocalBroker, user: str, password: str, expect: str
) -> None:
    c = _client(pki, deploy_broker.port, user, password=password)
    rc = _connect(c, deploy_broker.port)
    assert rc is not None and rc.is_failure
    c.loop_stop()


def test_plain_tcp_to_the_tls_listener_does_not_connect(
    pki: Path,
    deploy_broker: LocalBroker,
    tmp_path: Path,
    relay_config: Any,
    make_event: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANQI_MQTT_PASSWORD", _pw(pki, DEV_A))
    cfg = relay_config(
        tmp_path,
        deploy_broker.port,
        username=DEV_A,
        password_env="ANQI_MQTT_PASSWORD",
        device={"device_id": DEV_A},
    )
    outbox = Outbox.for_config(cfg.relay.outbox, cfg.data_dir)
    ev, f = make_event(tmp_path, 0, {}, device=DEV_A)
    outbox.add(ev, f)
    relay = MqttRelay(cfg.relay, cfg.device, outbox).start()
    try:
        assert not relay.wait_connected(2)
        assert outbox.stats().pending == 1
    finally:
        relay.stop(flush_timeout_s=0)


def test_a_broker_certificate_from_another_ca_is_not_trusted(
    tmp_path: Path,
    pki: Path,
    deploy_broker: LocalBroker,
    relay_config: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = tmp_path / "other-pki"
    subprocess.run(["bash", str(MOSQ / "gen-dev-pki.sh"), str(other), DEV_A], check=True, capture_output=True)
    monkeypatch.setenv("ANQI_MQTT_PASSWORD", _pw(pki, DEV_A))
    cfg = relay_config(
        tmp_path,
        deploy_broker.port,
        username=DEV_A,
        password_env="ANQI_MQTT_PASSWORD",
        tls={"ca_file": str(other / "ca.crt")},
        device={"device_id": DEV_A},
    )
    health = Health(tmp_path / "h.json", DEV_A)
    with caplog.at_level(logging.ERROR):
        relay = MqttRelay(
            cfg.relay, cfg.device, Outbox.for_config(cfg.relay.outbox, cfg.data_dir), health
        ).start()
        try:
            assert not relay.wait_connected(2)
            relay_health = health.snapshot()["components"]["relay"]
            assert relay_health["status"] == "down"
            # the cause is said, in the health and in one log line: not "cannot reach broker"
            assert "certificate is not trusted" in relay_health["detail"], relay_health
            assert "tls.ca_file" in relay_health["detail"]
        finally:
            relay.stop(flush_timeout_s=0)
    causes = [r.fields["cause"] for r in caplog.records if r.getMessage() == "mqtt_connect_failed"]  # type: ignore[attr-defined]
    assert causes and "certificate is not trusted" in causes[0], causes


def test_an_unreachable_broker_is_logged_with_its_cause(
    tmp_path: Path, relay_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = relay_config(tmp_path, free_port())  # nothing listens there
    health = Health(tmp_path / "h.json", DEV_A)
    with caplog.at_level(logging.ERROR):
        relay = MqttRelay(
            cfg.relay, cfg.device, Outbox.for_config(cfg.relay.outbox, cfg.data_dir), health
        ).start()
        try:
            assert not relay.wait_connected(1.5)
            assert "connection refused" in health.snapshot()["components"]["relay"]["detail"]
        finally:
            relay.stop(flush_timeout_s=0)
    causes = [r.fields["cause"] for r in caplog.records if r.getMessage() == "mqtt_connect_failed"]  # type: ignore[attr-defined]
    assert causes and causes[0].startswith("connection refused"), causes
    assert len(causes) == 1  # once per cause, not once per retry


def test_client_certificate_when_the_broker_requires_one(
    tmp_path: Path,
    pki: Path,
    broker_factory: Any,
    relay_config: Any,
    make_event: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    wd = tmp_path / "mtls"
    wd.mkdir()
    broker_factory(
        port=port,
        workdir=wd,
        base_conf=render_conf(pki, port, wd, **{"require_certificate false": "require_certificate true"}),
    )
    monkeypatch.setenv("ANQI_MQTT_PASSWORD", _pw(pki, DEV_A))
    without = _device_cfg(tmp_path / "no-cert", relay_config, pki, port, DEV_A)
    relay = MqttRelay(
        without.relay, without.device, Outbox.for_config(without.relay.outbox, without.data_dir)
    ).start()
    try:
        assert not relay.wait_connected(2)
    finally:
        relay.stop(flush_timeout_s=0)
    cfg = _device_cfg(
        tmp_path,
        relay_config,
        pki,
        port,
        DEV_A,
        tls={"cert_file": str(pki / f"{DEV_A}.crt"), "key_file": str(pki / f"{DEV_A}.key")},
    )
    outbox = Outbox.for_config(cfg.relay.outbox, cfg.data_dir)
    ev, f = make_event(tmp_path, 0, {}, device=DEV_A, site=SITE)
    outbox.add(ev, f)
    with MqttRelay(cfg.relay, cfg.device, outbox) as relay:
        assert relay.wait_drained(10, until="published")


@pytest.mark.parametrize(
    "tls, match",
    [
        ({"ca_file": "missing-ca.crt"}, "relay.mqtt.tls.ca_file: file not found"),
        ({"ca_file": "garbage.pem"}, "relay.mqtt.tls.ca_file: not a PEM CA certificate"),
        (
            {"cert_file": "DEV.crt", "key_file": "OTHER.key"},
            "relay.mqtt.tls.cert_file/key_file: .* are not a matching",
        ),
        ({"cert_file": "DEV.crt", "key_file": "nokey.key"}, "relay.mqtt.tls.key_file: file not found"),
    ],
)
def test_bad_tls_files_are_named_in_the_error(
    tmp_path: Path,
    pki: Path,
    relay_config: Any,
    tls: dict[str, str],
    match: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "garbage.pem").write_text("not a certificate")
    tls = {
        k: (
            str(pki / f"{DEV_A}.crt")
            if v == "DEV.crt"
            else str(pki / f"{DEV_B}.key")
            if v == "OTHER.key"
            else str(tmp_path / v)
        )
        for k, v in tls.items()
    }
    monkeypatch.setenv("ANQI_MQTT_PASSWORD", "x")
    cfg = relay_config(tmp_path, 8883, username=DEV_A, password_env="ANQI_MQTT_PASSWORD", tls=tls)
    with pytest.raises(RelayConfigError, match=match):
        MqttRelay(cfg.relay, cfg.device, Outbox.for_config(cfg.relay.outbox, cfg.data_dir))
    problems = check_config(cfg)
    assert any(p.startswith("relay.mqtt.tls.") for p in problems), problems


def test_central_shared_subscription_and_dispatch_roles(
    tmp_path: Path, pki: Path, broker_factory: Any, make_event: Any
) -> None:
    """Central reads events through an MQTT 5 shared subscription and publishes tasks; the dispatch
    user reads tasks and reports feedback, and can neither read events nor forge acks."""
    port = free_port()
    wd = tmp_path / "b"
    wd.mkdir()
    broker_factory(port=port, workdir=wd, base_conf=render_conf(pki, port, wd))
    got: dict[str, list[str]] = {CENTRAL: [], DISPATCH: []}
    subacks: dict[str, list[Any]] = {}
    clients = {}
    for user, subs in (
        (CENTRAL, ["$share/anqi-central/anqi/v1/+/+/event", "$share/anqi-central/anqi/v1/central/feedback"]),
        (DISPATCH, ["anqi/v1/central/tasks/#", "anqi/v1/+/+/event"]),
    ):
        c = _client(pki, port, user)
        c.on_message = lambda cl, u, m, user=user: got[user].append(m.topic)
        c.on_subscribe = lambda cl, u, mid, rcs, p, user=user: subacks.__setitem__(user, rcs)
        assert not _connect(c, port).is_failure
        c.subscribe([(s, 1) for s in subs])
        clients[user] = c
    assert _wait(lambda: len(subacks) == 2, 10)
    assert not any(rc.is_failure for rc in subacks[CENTRAL])
    dev = _client(pki, port, DEV_A)
    assert not _connect(dev, port).is_failure
    ev, _ = make_event(tmp_path, 0, {}, device=DEV_A, site=SITE)
    dev.publish(P.event_topic("anqi/v1", SITE, DEV_A), P.encode_event(ev), qos=1).wait_for_publish(5)
    clients[CENTRAL].publish("anqi/v1/central/tasks/sms", b"{}", qos=1).wait_for_publish(5)
    codes: dict[int, Any] = {}
    clients[DISPATCH].on_publish = lambda c, u, mid, rc, p: codes.__setitem__(mid, rc)
    fb = clients[DISPATCH].publish("anqi/v1/central/feedback", b"{}", qos=1)
    forged = clients[DISPATCH].publish(P.ack_topic("anqi/v1", SITE, DEV_A), b"{}", qos=1)
    assert _wait(lambda: fb.mid in codes and forged.mid in codes, 10)
    assert not codes[fb.mid].is_failure and codes[forged.mid].is_failure
    assert _wait(lambda: len(got[CENTRAL]) == 2 and len(got[DISPATCH]) == 1, 10), got
    time.sleep(0.3)
    assert sorted(got[CENTRAL]) == sorted([P.event_topic("anqi/v1", SITE, DEV_A), "anqi/v1/central/feedback"])
    assert got[DISPATCH] == ["anqi/v1/central/tasks/sms"]  # the event was not readable for it
    for c in (*clients.values(), dev):
        c.loop_stop()
        c.disconnect()
