"""Edge replay -> real mosquitto -> central consumer -> ack -> tier -> disposition tasks.

The whole product once, with real parts only: the bike-lane clip through the edge daemon (real
models, clip writer, outbox, MQTT relay), a mosquitto process, and the central consumer storing the
events idempotently, acknowledging them, filing the rider under one (unknown) person by face
embedding, classifying the tier and publishing the table-2 tasks.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from mqtt_helpers import Listener, wait_for
from sqlalchemy import select

from anqi_contract.localbroker import LocalBroker
from edge.config import parse_config
from edge.daemon import EdgeDaemon

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "examples" / "bikelane-cyclists.yaml"
VIDEO = ROOT.parent / "shared" / "video" / "bikelane-cyclists.mp4"

pytestmark = pytest.mark.skipif(not VIDEO.exists(), reason=f"needs {VIDEO} (../shared beside the checkout)")


def test_edge_replay_reaches_central_which_acks_classifies_and_dispatches(
    tmp_path: Path, broker: LocalBroker
) -> None:
    from central_sync.consumer import CentralConsumer
    from central_sync.storage.models import Event, Person
    from central_sync.web import cockpit
    from central_sync.web.devices import DeviceListener

    consumer = CentralConsumer.for_broker("127.0.0.1", broker.port, tmp_path / "central").start()
    # central's reader of the status / heartbeat topics (the web service runs it): device health, pass counters
    devices = DeviceListener(consumer.cfg, consumer.store).start()
    collector = Listener(broker.port, ["anqi/v1/+/+/ack", "anqi/v1/central/tasks/#"])
    try:
        data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
        data["device"]["data_dir"] = str(tmp_path / "edge")
        data["source"]["uri"] = str(VIDEO)
        data["speaker"]["backend"] = "none"
        data["relay"]["mqtt"]["host"] = "127.0.0.1"
        data["relay"]["mqtt"]["port"] = broker.port
        cfg = parse_config(data, CONFIG.name, CONFIG.parent)
        daemon = EdgeDaemon(cfg, mode="until_eof", install_signals=False, relay_wait_s=60)
        daemon.run()

        events = daemon.events
        assert events, "the edge found no violation in the bike-lane clip"
        ids = {e.event_id for e in events}
        assert len(ids) == len(events)

        # central stored every event (media verified and reassembled) and acknowledged each one
        assert consumer.wait_stored(len(events), timeout=60), consumer.stats
        assert wait_for(
            lambda: {a.event_id for a in collector.acks() if a.status == "stored"} >= ids, timeout=30
        )
        for ack in collector.acks():
            assert ack.media_complete, ack

        # one file per rider: every event with a face embedding is filed under a person whose first
        # violation makes an occasional offender; an event without a face is stored unassigned
        with_face = {str(e.event_id) for e in events if e.face.embedding is not None}
        assert with_face, "no event carried a face embedding"
        with consumer.store.session() as s:
            rows = s.execute(select(Event.event_id, Event.person_id)).all()
            tiers = dict(s.execute(select(Person.person_id, Person.tier)).all())
        assert {r.event_id for r in rows} == {str(i) for i in ids}
        persons = {r.person_id for r in rows if r.event_id in with_face}
        assert None not in persons
        assert all(r.person_id is None for r in rows if r.event_id not in with_face), rows
        assert all(tiers[p] == "occasional" for p in persons), tiers

        # table 2: a first violation -> SMS, voice reminder, case-study link, once per person
        assert wait_for(lambda: len(collector.tasks()) >= 3 * len(persons), timeout=30)
        by_person: dict[str, list[str]] = {}
        for t in collector.tasks():
            by_person.setdefault(t["person_id"], []).append(t["kind"])
        assert set(by_person) == persons
        for kinds in by_person.values():
            assert sorted(kinds) == ["case_study_link", "sms_reminder", "voice_reminder"], by_person

        # the safe-riding rate of the point: the edge counted the riders through its zone and its violators per
        # interval, the heartbeats (the last one at the relay's stop, QoS 1) carried them, central stored them
        tracks = {e.track_id for e in events}
        helmetless = {e.track_id for e in events if e.violation_type.value == "no_helmet"}
        counted = daemon.pipeline.passes.snapshot()
        assert sum(p["violators"] for p in counted) == len(tracks), (counted, tracks)
        assert sum(p["no_helmet"] for p in counted) == len(helmetless)
        riders = sum(p["riders"] for p in counted)
        assert riders >= len(tracks) and riders <= daemon.stats.tracks
        assert wait_for(
            lambda: bool(cockpit.safe_riding(consumer.store, datetime(2000, 1, 1, tzinfo=timezone.utc))),
            timeout=10,
        )
        safe = cockpit.safe_riding(consumer.store, datetime(2000, 1, 1, tzinfo=timezone.utc))
        assert list(safe) == [cfg.device.point_id]
        got = safe[cfg.device.point_id]
        assert (got["riders"], got["violators"], got["no_helmet"]) == (riders, len(tracks), len(helmetless))
        assert got["rate"] == pytest.approx((riders - len(tracks)) / riders)
    finally:
        collector.close()
        devices.stop()
        consumer.stop()
