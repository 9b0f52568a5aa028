"""Issue 20: attacks tried against the real deployment broker (config/mosquitto: TLS, passwords, per-role ACL,
client id = username, optional mutual TLS with a CRL) and the real central consumer with a device registry.

Each attack must be refused with nothing lost: the legitimate traffic around it still arrives."""

from __future__ import annotations

import logging
import os
import ssl
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from broker_pki import CENTRAL, DEV_A, DEV_B, DISPATCH, MOSQ, SITE, render_conf
from broker_pki import password as _pw
from mqtt_helpers import wait_for
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from anqi_contract import protocol as P
from anqi_contract.event import FaceInfo
from anqi_contract.localbroker import LocalBroker, free_port
from central_sync.config import parse_config
from central_sync.consumer import CentralConsumer
from central_sync.storage.models import Event, Person, Task
from edge.health import Health
from edge.relay import MqttRelay, Outbox

PFX = "anqi/v1"
FACE = [0.0883883476] * 128  # an L2-normalised 128-d vector: "someone's face"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki-attacks")
    subprocess.run(
        ["bash", str(MOSQ / "gen-dev-pki.sh"), str(out), CENTRAL, DEV_A, DEV_B, DISPATCH],
        check=True,
        capture_output=True,
        env={**os.environ, "ANQI_SITE": SITE},
    )
    return out


@pytest.fixture
def broker(pki: Path, broker_factory: Any, tmp_path: Path) -> LocalBroker:
    port = free_port()
    wd = tmp_path / "broker"
    wd.mkdir()
    return broker_factory(port=port, workdir=wd, base_conf=render_conf(pki, port, wd))


def _client(
    pki: Path, port: int, user: str, client_id: str | None = None, **tls: Any
) -> tuple[paho.Client, dict[str, Any]]:
    c = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
    )
    if user:
        c.username_pw_set(user, _pw(pki, user))
    c.tls_set(ca_certs=str(pki / "ca.crt"), **tls)
    st: dict[str, Any] = {"codes": {}, "disconnects": 0}
    c.on_connect = lambda cl, u, f, rc, p: st.setdefault("rc", rc)
    c.on_disconnect = lambda cl, u, f, rc, p: st.__setitem__("disconnects", st["disconnects"] + 1)
    c.on_publish = lambda cl, u, mid, rc, p: st["codes"].__setitem__(mid, rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    wait_for(lambda: "rc" in st, 10)
    return c, st


def _publish(c: paho.Client, st: dict[str, Any], topic: str, payload: bytes) -> Any:
    info = c.publish(topic, payload, qos=1)
    assert wait_for(lambda: info.mid in st["codes"], 10)
    return st["codes"][info.mid]


def _close(*clients: paho.Client) -> None:
    for c in clients:
        c.loop_stop()
        c.disconnect()


def _consumer(tmp: Path, pki: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> CentralConsumer:
    monkeypatch.setenv("ANQI_CENTRAL_PW", _pw(pki, CENTRAL))
    cfg = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp / 'central.db'}"},
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "username": CENTRAL,
                "password_env": "ANQI_CENTRAL_PW",
                "ca_file": str(pki / "ca.crt"),
                "client_id": "anqi-central-1",
            },
            "media": {"dir": str(tmp / "media")},
            "devices": [
                {"device_id": DEV_A, "site_id": SITE, "point_id": "point-1"},
                {"device_id": DEV_B, "site_id": SITE},
            ],
        },
        "central.yaml",
        tmp,
    )
    return CentralConsumer(cfg, media_grace_s=0.5).start()


def _counts(cons: CentralConsumer) -> tuple[int, int, int]:
    with cons.store.session() as s:
        return tuple(  # type: ignore[return-value]
            int(s.execute(select(func.count()).select_from(m)).scalar_one()) for m in (Event, Person, Task)
        )


def _face_event(make_event: Any, tmp: Path, device: str, site: str = SITE, i: int = 0) -> Any:
    ev, files = make_event(tmp, i, {}, device=device, site=site)
    return ev.model_copy(
        update={"face": FaceInfo(found=True, quality=0.9, embedding_model="sface", embedding=FACE)}
    ), files


def test_only_registered_devices_publish_events_under_their_own_site(
    tmp_path: Path, pki: Path, broker: LocalBroker, make_event: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # central itself may not publish events either (before the consumer connects: one connection per user)
    c, cst = _client(pki, broker.port, CENTRAL)
    ev0, _ = _face_event(make_event, tmp_path, CENTRAL)
    assert _publish(c, cst, P.event_topic(PFX, SITE, CENTRAL), P.encode_event(ev0)).is_failure
    _close(c)
    cons = _consumer(tmp_path, pki, broker.port, monkeypatch)
    # 1. the disposal systems' account makes up an event with someone's face under its own name
    d, dst = _client(pki, broker.port, DISPATCH)
    ev, _ = _face_event(make_event, tmp_path, DISPATCH)
    rc = _publish(d, dst, P.event_topic(PFX, SITE, DISPATCH), P.encode_event(ev))
    assert rc.is_failure and "authori" in str(rc).lower()
    # 2. a device publishes under another site id
    a, ast = _client(pki, broker.port, DEV_A)
    elsewhere, _ = _face_event(make_event, tmp_path, DEV_A, site="other-site", i=1)
    assert _publish(a, ast, P.event_topic(PFX, "other-site", DEV_A), P.encode_event(elsewhere)).is_failure
    # ... and an event that names another site than its topic, or another point than registered
    wrong_site, _ = _face_event(make_event, tmp_path, DEV_A, site="other-site", i=2)
    assert not _publish(a, ast, P.event_topic(PFX, SITE, DEV_A), P.encode_event(wrong_site)).is_failure
    wrong_point = _face_event(make_event, tmp_path, DEV_A, i=3)[0].model_copy(update={"point_id": "point-9"})
    assert not _publish(a, ast, P.event_topic(PFX, SITE, DEV_A), P.encode_event(wrong_point)).is_failure
    # the legitimate event still arrives
    good, _ = _face_event(make_event, tmp_path, DEV_A, i=4)
    assert not _publish(a, ast, P.event_topic(PFX, SITE, DEV_A), P.encode_event(good)).is_failure
    assert cons.wait_stored(1, 10)
    assert wait_for(lambda: cons.stats.rejected >= 2, 5)
    time.sleep(0.3)
    with cons.store.session() as s:
        assert [e for (e,) in s.execute(select(Event.event_id))] == [str(good.event_id)]
    events, persons, _ = _counts(cons)
    assert (events, persons) == (1, 1)  # one event, one person file: nothing from the forgeries
    _close(d, a)
    cons.stop()
    cons.store.close()


def test_central_refuses_unregistered_devices_even_on_an_open_broker(
    tmp_path: Path, make_event: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Defence in depth: a broker without ACL (development) still cannot make central store a stranger's event."""
    with LocalBroker(port=free_port(), workdir=tmp_path / "open") as open_broker:
        cons = CentralConsumer.for_broker(
            "127.0.0.1",
            open_broker.port,
            tmp_path / "c",
            media_grace_s=0.5,
            devices=[{"device_id": DEV_A, "site_id": SITE}],
        ).start()
        raw = paho.Client(CallbackAPIVersion.VERSION2, client_id="intruder", protocol=paho.MQTTv5)
        raw.connect("127.0.0.1", open_broker.port)
        raw.loop_start()
        ev, _ = _face_event(make_event, tmp_path, DISPATCH)
        moved, _ = _face_event(make_event, tmp_path, DEV_A, site="other-site", i=1)
        chunk = next(P.iter_media_chunks(ev.event_id, "face.jpg", b"\xff\xd8\xff fake face", 1024))[1]
        with caplog.at_level(logging.WARNING):
            raw.publish(
                P.media_topic(PFX, SITE, DISPATCH, ev.event_id, "face.jpg"), chunk, qos=1
            ).wait_for_publish(5)
            raw.publish(P.event_topic(PFX, SITE, DISPATCH), P.encode_event(ev), qos=1).wait_for_publish(5)
            raw.publish(
                P.event_topic(PFX, "other-site", DEV_A), P.encode_event(moved), qos=1
            ).wait_for_publish(5)
            assert wait_for(lambda: cons.stats.rejected == 2 and cons.stats.corrupt_chunks == 1, 10)
        reasons = [r.fields.get("reason", "") for r in caplog.records if r.getMessage() == "event_rejected"]  # type: ignore[attr-defined]
        assert any("not registered" in r for r in reasons) and any("registered at site" in r for r in reasons)
        assert _counts(cons) == (0, 0, 0)
        assert not (tmp_path / "c" / "media" / str(ev.event_id)).exists()
        raw.loop_stop()
        raw.disconnect()
        cons.stop()
        cons.store.close()


def test_a_device_cannot_take_over_another_devices_client_id(pki: Path, broker: LocalBroker) -> None:
    a, ast = _client(pki, broker.port, DEV_A, client_id=f"anqi-{DEV_A}")
    assert not ast["rc"].is_failure
    b, bst = _client(pki, broker.port, DEV_B, client_id=f"anqi-{DEV_A}")  # B claims A's client id
    assert not bst["rc"].is_failure
    time.sleep(1.0)
    assert ast["disconnects"] == 0, "the broker kicked the real device off"
    assert not _publish(a, ast, P.status_topic(PFX, SITE, DEV_A), b'{"state":"online"}').is_failure
    _close(a, b)


def test_forged_acks_from_anyone_but_central_are_refused(
    tmp_path: Path,
    pki: Path,
    broker: LocalBroker,
    make_event: Any,
    relay_config: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANQI_MQTT_PASSWORD", _pw(pki, DEV_A))
    cfg = relay_config(
        tmp_path / "edge",
        broker.port,
        username=DEV_A,
        password_env="ANQI_MQTT_PASSWORD",
        tls={"ca_file": str(pki / "ca.crt")},
        device={"device_id": DEV_A, "site_id": SITE},
    )
    outbox = Outbox.for_config(cfg.relay.outbox, cfg.data_dir)
    ev, files = make_event(tmp_path, 0, {"face.jpg": 3000}, device=DEV_A, site=SITE)
    outbox.add(ev, files)
    with MqttRelay(
        cfg.relay, cfg.device, outbox, Health(tmp_path / "h.json", DEV_A)
    ) as relay:  # no central: stays published
        assert relay.wait_drained(10, until="published")
        forged = P.encode_ack(P.Ack(event_id=ev.event_id, status="stored", media_complete=True))
        for user in (DEV_B, DISPATCH):
            c, st = _client(pki, broker.port, user)
            assert _publish(c, st, P.ack_topic(PFX, SITE, DEV_A), forged).is_failure, user
            _close(c)
        time.sleep(0.5)
    assert outbox.state_of(ev.event_id) == "published"
    assert outbox.media_state(ev.event_id) == {"face.jpg": (True, None)}


def test_on_an_open_dev_broker_acks_are_logged_and_unknown_ones_ignored(
    tmp_path: Path, make_event: Any, relay_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with LocalBroker(port=free_port(), workdir=tmp_path / "dev") as dev:
        cfg = relay_config(tmp_path / "edge", dev.port)
        outbox = Outbox.for_config(cfg.relay.outbox, cfg.data_dir)
        sent, sf = make_event(tmp_path, 0, {"face.jpg": 1000})
        outbox.add(sent, sf)
        raw = paho.Client(CallbackAPIVersion.VERSION2, client_id="forger", protocol=paho.MQTTv5)
        raw.connect("127.0.0.1", dev.port)
        raw.loop_start()
        ack_topic = P.ack_topic(PFX, cfg.device.site_id, cfg.device.device_id)
        with caplog.at_level(logging.INFO), MqttRelay(cfg.relay, cfg.device, outbox) as relay:
            assert relay.wait_drained(10, until="published")
            never = uuid.uuid4()
            raw.publish(
                ack_topic, P.encode_ack(P.Ack(event_id=never, status="stored", media_complete=True)), qos=1
            )
            raw.publish(
                ack_topic,
                P.encode_ack(P.Ack(event_id=sent.event_id, status="stored", media_complete=True)),
                qos=1,
            )
            assert wait_for(lambda: outbox.state_of(sent.event_id) == "acked", 10)
        fields = [(r.getMessage(), r.fields) for r in caplog.records if hasattr(r, "fields")]
        ignored = [f for m, f in fields if m == "ack_ignored"]
        applied = [f for m, f in fields if m == "ack_applied"]
        assert [f["event_id"] for f in ignored] == [str(never)]
        assert [f["event_id"] for f in applied] == [str(sent.event_id)]  # the applied one leaves a line
        raw.loop_stop()
        raw.disconnect()


def test_replayed_events_and_bad_media_chunks_are_refused_with_nothing_lost(
    tmp_path: Path, pki: Path, broker: LocalBroker, make_event: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cons = _consumer(tmp_path, pki, broker.port, monkeypatch)
    a, ast = _client(pki, broker.port, DEV_A)
    b, bst = _client(pki, broker.port, DEV_B)
    ev, files = make_event(tmp_path, 0, {"face.jpg": 4000}, device=DEV_A, site=SITE)
    for _, payload in P.iter_media_chunks(ev.event_id, "face.jpg", files["face.jpg"], 1024):
        assert not _publish(
            a, ast, P.media_topic(PFX, SITE, DEV_A, ev.event_id, "face.jpg"), payload
        ).is_failure
    assert not _publish(a, ast, P.event_topic(PFX, SITE, DEV_A), P.encode_event(ev)).is_failure
    assert cons.wait_stored(1, 10)
    # replayed: the same event again (a captured payload re-sent), and by another device on its own topic
    assert not _publish(a, ast, P.event_topic(PFX, SITE, DEV_A), P.encode_event(ev)).is_failure
    assert not _publish(b, bst, P.event_topic(PFX, SITE, DEV_B), P.encode_event(ev)).is_failure
    # malformed and hostile media chunks
    eid = uuid.uuid4()
    mt = P.media_topic(PFX, SITE, DEV_A, eid, "clip.mp4")
    hdr = P.ChunkHeader(
        event_id=eid,
        name="clip.mp4",
        index=0,
        count=1,
        offset=0,
        size=10 << 30,
        sha256="0" * 64,
        chunk_sha256="0" * 64,
    )
    bad = [
        b"not a chunk",
        P.MEDIA_MAGIC + b"\xff\xff" + b"{",  # header length past the end
        P.MEDIA_MAGIC + b"\x00\x05" + b"<xml>" + b"data",  # header not JSON
        P.encode_chunk(hdr, b"x" * 100),  # claims a 10 GiB file, wrong digests
    ]
    for payload in bad:
        assert not _publish(a, ast, mt, payload).is_failure  # the broker takes it; central must refuse it
    assert wait_for(lambda: cons.stats.corrupt_chunks >= len(bad), 10), cons.stats
    # bigger than the broker's max_packet_size (16 MiB): the broker drops the connection, nothing is stored
    big = a.publish(mt, b"\0" * (17 << 20), qos=1)
    assert wait_for(
        lambda: ast["disconnects"] >= 1 or (big.mid in ast["codes"] and ast["codes"][big.mid].is_failure), 15
    )
    # nothing lost: after all that a new legitimate event is stored with its media
    ev2, files2 = make_event(tmp_path, 1, {"face.jpg": 2000}, device=DEV_A, site=SITE)
    a2, a2st = _client(pki, broker.port, DEV_A)
    for _, payload in P.iter_media_chunks(ev2.event_id, "face.jpg", files2["face.jpg"], 1024):
        _publish(a2, a2st, P.media_topic(PFX, SITE, DEV_A, ev2.event_id, "face.jpg"), payload)
    _publish(a2, a2st, P.event_topic(PFX, SITE, DEV_A), P.encode_event(ev2))
    assert cons.wait_stored(2, 10)
    time.sleep(0.3)
    assert _counts(cons)[0] == 2 and cons.stats.duplicates >= 1 and cons.stats.rejected >= 1
    assert sorted(p.name for p in (tmp_path / "media").iterdir()) == sorted(
        [str(ev.event_id), str(ev2.event_id)]
    )
    _close(a, b, a2)
    cons.stop()
    cons.store.close()


def test_mutual_tls_binds_the_certificate_to_the_device_and_a_revoked_one_is_refused(
    tmp_path: Path, broker_factory: Any
) -> None:
    pki = tmp_path / "pki"
    subprocess.run(
        ["bash", str(MOSQ / "gen-dev-pki.sh"), str(pki), CENTRAL, DEV_A, DEV_B],
        check=True,
        capture_output=True,
    )
    port = free_port()
    wd = tmp_path / "b"
    wd.mkdir()
    broker = broker_factory(
        port=port, workdir=wd, base_conf=render_conf(pki, port, wd, "mosquitto-mtls.conf")
    )

    def connect(cert_user: str | None, user: str = "") -> tuple[paho.Client, dict[str, Any]]:
        c = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:6]}", protocol=paho.MQTTv5
        )
        if user:
            c.username_pw_set(user, (pki / "passwords" / user).read_text())
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        if cert_user:
            ctx.load_cert_chain(str(pki / f"{cert_user}.crt"), str(pki / f"{cert_user}.key"))
        c.tls_set_context(ctx)
        st: dict[str, Any] = {"codes": {}, "disconnects": 0}
        c.on_connect = lambda cl, u, f, rc, p: st.setdefault("rc", rc)
        c.on_publish = lambda cl, u, mid, rc, p: st["codes"].__setitem__(mid, rc)
        try:
            c.connect("127.0.0.1", port)
        except (ssl.SSLError, OSError) as e:
            st["rc"] = e
            return c, st
        c.loop_start()
        wait_for(lambda: "rc" in st, 3)
        return c, st

    def ok(st: dict[str, Any]) -> bool:
        rc = st.get("rc")
        return rc is not None and not isinstance(rc, Exception) and not rc.is_failure

    # a stolen password without the device's certificate does not connect
    c, st = connect(None, DEV_A)
    assert not ok(st)
    c.loop_stop()
    # the certificate says who it is: A's certificate publishes as A, not as B (whatever username it claims)
    c, st = connect(DEV_A, DEV_B)
    assert ok(st)
    assert not _publish(c, st, P.event_topic(PFX, SITE, DEV_A), b"{}").is_failure
    assert _publish(c, st, P.event_topic(PFX, SITE, DEV_B), b"{}").is_failure
    _close(c)
    # revoked: the CRL is re-read on a broker restart / reload, and A's certificate no longer connects
    subprocess.run(
        ["bash", str(MOSQ / "gen-dev-pki.sh"), "--revoke", str(pki), DEV_A], check=True, capture_output=True
    )
    broker.restart()
    c, st = connect(DEV_A)
    assert not ok(st)
    c.loop_stop()
    c, st = connect(DEV_B)  # another device is unaffected
    assert ok(st)
    _close(c)
