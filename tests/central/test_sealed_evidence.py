"""Sealed evidence end to end: the edge seals to central's public key, the real relay sends it through a real
mosquitto, the central consumer opens it on receipt with its private key (from a key file / the environment),
stores the clear JPEGs and matches the opened embedding; a key it does not hold is logged, never acked."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from mqtt_helpers import wait_for
from sqlalchemy import select

from anqi_contract.event import ViolationType
from anqi_contract.localbroker import LocalBroker
from anqi_contract.paths import shared_dir
from anqi_contract.sealed import generate_keypair
from central_sync.config import ConfigError, load_keyring, parse_config
from central_sync.consumer import CentralConsumer
from central_sync.storage.models import Event, Media
from edge.config.device import DeviceConfig
from edge.config.privacy import SealConfig

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
LFW = shared_dir() / "faces" / "lfw-dev"


def _face_event(tmp: Path, seal: SealConfig, photo: Path, i: int = 0) -> Any:
    """A sealed event made by the edge's own evidence code (OpenCV + face models: the ``edge`` extra)."""
    cv2 = pytest.importorskip("cv2", reason="needs the edge extra (OpenCV): the edge seals a real event")
    from anqi_contract.manifest import resolve
    from edge.detect.faces import FaceDetector, FaceEmbedder
    from edge.evidence import EventAssembler
    from edge.evidence.adapters import SFaceEmbedding
    from edge.evidence.face import FaceCandidate, FaceQuality
    from edge.rules import Violation

    img = cv2.imread(str(photo))
    f = FaceDetector(resolve("yunet")[1], 0.6, min_face_px=8).detect(img)[0]
    box = tuple(float(v) for v in f.box)
    crop = img[int(box[1]) : int(box[3]), int(box[0]) : int(box[2])].copy()
    cand = FaceCandidate(i, 1.0, T0, box, f.score, FaceQuality(80, 100.0, 0.9, 0.9), crop, f.landmarks, img)  # type: ignore[arg-type]
    v = Violation(ViolationType.no_helmet, i, 1.0, 1.0, T0 + timedelta(seconds=i), 0.9, 20.0, 4.0, 180.0, {})
    asm = EventAssembler(
        DeviceConfig(), tmp / f"work{i}", SFaceEmbedding(FaceEmbedder(resolve("sface")[1])), seal=seal
    )
    return asm.assemble(v, T0, cand, None, None)


def _central(tmp: Path, port: int, **sealing: Any) -> CentralConsumer:
    cfg = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp / 'central.db'}"},
            "mqtt": {"port": port, "client_id": "c-sealed"},
            "media": {"dir": str(tmp / "media")},
            "sealing": sealing,
        },
        "test",
        tmp,
    )
    return CentralConsumer(cfg, media_grace_s=0.5)


def test_sealed_events_are_opened_on_receipt_across_a_key_rotation(
    tmp_path: Path, broker: LocalBroker, relay_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cv2 = pytest.importorskip("cv2", reason="needs the edge extra (OpenCV): the edge seals a real event")
    from edge.relay import MqttRelay, Outbox

    old_sk, old_pk = generate_keypair()
    new_sk, new_pk = generate_keypair()
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "k2026.key").write_text(old_sk)
    os.chmod(keys / "k2026.key", 0o600)
    monkeypatch.setenv("ANQI_SEAL_KEY_K2027", new_sk)  # the other one from the environment
    switch = datetime.now(timezone.utc) + timedelta(days=1)
    seal = SealConfig(
        key_id="k2026", public_key=old_pk, next_key_id="k2027", next_public_key=new_pk, next_from=switch
    )
    people = sorted(p for p in LFW.iterdir() if p.is_dir())[:2]
    ev_old = _face_event(tmp_path, seal, next(people[0].glob("*.jpg")), 0)
    # the same device after the switch time: the next key
    seal_after = SealConfig(
        key_id="k2026",
        public_key=old_pk,
        next_key_id="k2027",
        next_public_key=new_pk,
        next_from=datetime.now(timezone.utc) - timedelta(seconds=1),
    )
    ev_new = _face_event(tmp_path, seal_after, next(people[1].glob("*.jpg")), 1)
    assert {m.sealed_to for m in ev_old.event.media} == {"k2026"}
    assert {m.sealed_to for m in ev_new.event.media} == {"k2027"}

    cons = _central(tmp_path, broker.port, key_ids=["k2026", "k2027"], key_dir=str(keys)).start()
    cfg = relay_config(tmp_path / "edge", broker.port)
    outbox = Outbox.for_config(cfg.relay.outbox, cfg.data_dir)
    for ev in (ev_old, ev_new):
        outbox.add(ev.event, ev.media, move=True)
    with MqttRelay(cfg.relay, cfg.device, outbox) as relay:
        assert relay.wait_drained(20), outbox.stats()
    assert cons.wait_stored(2, 10)
    with cons.store.session() as s:
        rows = s.execute(select(Media)).scalars().all()
        assert len(rows) == 4
        for m in rows:
            img = cv2.imread(m.path)
            assert img is not None and img.shape[0] > 20, m.path  # the clear JPEG, opened on receipt
        bodies = [e.body for e in s.execute(select(Event)).scalars()]
        persons = {e.person_id for e in s.execute(select(Event)).scalars()}
    assert all(not b["face"].get("embedding_sealed") for b in bodies)
    assert len(persons) == 2 and None not in persons  # the opened embeddings opened two person files
    # acked with media complete: the edge deleted its sealed copies
    for ev in (ev_old, ev_new):
        assert all(not present for present, _ in outbox.media_state(ev.event.event_id).values())
    cons.stop()
    cons.store.close()


def test_a_key_central_does_not_hold_is_logged_and_the_event_is_not_acked(
    tmp_path: Path, broker: LocalBroker, relay_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("cv2", reason="needs the edge extra (OpenCV): the edge seals a real event")
    from edge.relay import MqttRelay, Outbox

    sk, _ = generate_keypair()
    _, foreign_pk = generate_keypair()
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "k1.key").write_text(sk)
    os.chmod(keys / "k1.key", 0o600)
    ev = _face_event(tmp_path, SealConfig(key_id="k9", public_key=foreign_pk), next(LFW.glob("*/*.jpg")))
    cons = _central(tmp_path, broker.port, key_ids=["k1"], key_dir=str(keys)).start()
    cfg = relay_config(tmp_path / "edge", broker.port)
    outbox = Outbox.for_config(cfg.relay.outbox, cfg.data_dir)
    outbox.add(ev.event, ev.media, move=True)
    with caplog.at_level(logging.ERROR), MqttRelay(cfg.relay, cfg.device, outbox) as relay:
        assert relay.wait_drained(10, until="published")
        # the event (its embedding) is opened before its media arrive: wait for both failures, not the first
        assert wait_for(
            lambda: "embedding_open_failed" in caplog.text and "media_open_failed" in caplog.text, 10
        )
    errors = {r.getMessage(): r.fields.get("error", "") for r in caplog.records if hasattr(r, "fields")}
    assert "media_open_failed" in errors and "does not hold" in errors["embedding_open_failed"]
    assert outbox.state_of(ev.event.event_id) == "published"  # kept, re-sent until central has the key
    assert all(present for present, _ in outbox.media_state(ev.event.event_id).values())
    cons.stop()
    cons.store.close()


def test_missing_or_exposed_private_keys_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config({"sealing": {"key_ids": ["k1"], "key_dir": "keys"}}, "central.yaml", tmp_path)
    with pytest.raises(ConfigError, match=r"key 'k1' not found .*seal-key-k1.*ANQI_SEAL_KEY_K1"):
        load_keyring(cfg)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "k1.key").write_text(generate_keypair()[0])
    os.chmod(tmp_path / "keys" / "k1.key", 0o644)
    with pytest.raises(ConfigError, match="readable by group/others"):
        load_keyring(cfg)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "seal-key-k1").write_text("not a key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with pytest.raises(ConfigError, match="not base64"):
        load_keyring(cfg)
    (creds / "seal-key-k1").write_text(generate_keypair()[0])
    assert load_keyring(cfg).key_ids == ["k1"]
