"""Table 2 task planning, one task per tier change, the webhook copy, feedback closing every case."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from central_sync.config import CentralConfig, parse_config
from central_sync.dispositions import DispositionDesk, PersonFacts, TaskKind, plan_tasks
from central_sync.storage.models import Disposition, Person, Task
from central_sync.storage.store import CentralStore, ViolationRecord
from central_sync.tiers import OffenderTier as T

AT = datetime(2026, 6, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "facts,old,new,expected",
    [
        (PersonFacts("p"), T.none, T.occasional, ["sms_reminder", "voice_reminder", "case_study_link"]),
        (
            PersonFacts("p", employer="Bus Co"),
            T.occasional,
            T.frequent,
            ["education_by_employer", "home_visit"],
        ),
        (PersonFacts("p", community="Feiying"), T.none, T.frequent, ["education_by_community", "home_visit"]),
        (
            PersonFacts("p", party_member=True),
            T.occasional,
            T.frequent,
            ["education_by_community", "party_index_deduction", "home_visit"],
        ),
        (PersonFacts("p"), T.frequent, T.repeat, ["public_notice", "credit_deduction"]),
        (PersonFacts("p"), T.frequent, T.occasional, []),  # falling tiers call for nothing
        (PersonFacts("p"), T.repeat, T.none, []),
        (PersonFacts("p"), T.occasional, T.occasional, []),
    ],
)
def test_tasks_follow_table_2(facts: PersonFacts, old: T, new: T, expected: list[str]) -> None:
    assert [k.value for k in plan_tasks(facts, old, new)] == expected


class Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Hook.received.append((self.headers.get("Authorization", ""), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Hook.received = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/tasks"
    srv.shutdown()
    srv.server_close()


def test_tier_rise_makes_tasks_once_posts_them_to_the_webhook_and_feedback_closes_them(
    store: CentralStore, webhook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setenv("ANQI_TEST_HOOK", "hook-secret")
    cfg = parse_config({"dispositions": {"webhook_url": webhook, "webhook_token_env": "ANQI_TEST_HOOK"}})
    published: list[tuple[str, dict[str, Any]]] = []

    def publish(topic: str, payload: bytes | str) -> bool:
        published.append((topic, json.loads(payload)))
        return True

    desk = DispositionDesk(cfg, store, publish=publish)
    desk.start()
    try:
        with store.session() as s:
            s.add(Person(person_id="P1", kind="enrolled", employer="Bus Co", party_member=True, tier="none"))
        store.add_violations(
            [ViolationRecord(str(uuid.uuid4()), "no_helmet", AT - timedelta(hours=i), "P1") for i in range(3)]
            + [ViolationRecord(str(uuid.uuid4()), "passenger", AT - timedelta(hours=3), "P1")]
        )
        a = store.assess_person("P1", AT, cfg.tiers)
        assert a.tier is T.frequent
        first = desk.apply_assessment(a)
        again = desk.apply_assessment(store.assess_person("P1", AT + timedelta(minutes=1), cfg.tiers))
        assert len(first) == 3 and again == []  # no duplicate storm for an unchanged tier
        # a passenger violation (issue 18) counts like any other; the tasks say what the person committed
        assert all(m.payload["violation_types"] == {"no_helmet": 3, "passenger": 1} for m in first)
        assert sorted(t.split("/")[-1] for t, _ in published) == [
            "education_by_employer",
            "home_visit",
            "party_index_deduction",
        ]
        deadline = time.monotonic() + 10
        while len(Hook.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(Hook.received) == 3 and all(auth == "Bearer hook-secret" for auth, _ in Hook.received)
        assert desk.publish_pending() == 0  # everything was published
        # every case closes: feedback for each task
        for _, task in published:
            status = "failed" if task["kind"] == "home_visit" else "done"
            assert desk.record_feedback(
                {"task_id": task["task_id"], "status": status, "time": (AT + timedelta(days=1)).isoformat()}
            )
            assert not desk.record_feedback(
                {"task_id": task["task_id"], "status": status, "time": (AT + timedelta(days=1)).isoformat()}
            )
        assert desk.open_tasks() == []
        with store.session() as s:
            kinds = sorted(d.kind for d in s.scalars(select(Disposition)))
            statuses = sorted((t.kind, t.status) for t in s.scalars(select(Task)))
        assert kinds == ["education", "party_index_deduction"]
        assert statuses == [
            ("education_by_employer", "done"),
            ("home_visit", "failed"),
            ("party_index_deduction", "done"),
        ]
        # the recorded education makes the next violation "repeat"
        store.add_violation(ViolationRecord(str(uuid.uuid4()), "no_helmet", AT + timedelta(days=2), "P1"))
        r = desk.apply_assessment(store.assess_person("P1", AT + timedelta(days=2), cfg.tiers))
        assert sorted(m.payload["kind"] for m in r) == ["credit_deduction", "public_notice"]
    finally:
        desk.stop()


def test_bad_feedback_is_refused_with_a_reason(store: CentralStore) -> None:
    desk = DispositionDesk(CentralConfig(), store)
    with pytest.raises(ValueError, match="status"):
        desk.record_feedback({"task_id": str(uuid.uuid4()), "status": "maybe", "time": AT.isoformat()})
    with pytest.raises(ValueError, match="unknown task_id"):
        desk.record_feedback({"task_id": str(uuid.uuid4()), "status": "done", "time": AT.isoformat()})
    with pytest.raises(ValueError, match="time"):
        desk.record_feedback(
            b'{"task_id": "00000000-0000-0000-0000-000000000000", "status": "done", "time": "2026-01-01T00:00:00"}'
        )


def test_unreachable_webhook_is_logged_and_tasks_stay_recorded(
    store: CentralStore, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    from anqi_contract.localbroker import free_port

    cfg = parse_config(
        {"dispositions": {"webhook_url": f"http://127.0.0.1:{free_port()}/x", "webhook_timeout_s": 1}}
    )
    desk = DispositionDesk(cfg, store)
    desk.start()
    try:
        with store.session() as s:
            s.add(Person(person_id="P2", kind="enrolled", tier="none"))
        store.add_violation(ViolationRecord(str(uuid.uuid4()), "no_helmet", AT, "P2"))
        with caplog.at_level("WARNING", logger="anqi.central.dispositions"):
            msgs = desk.apply_assessment(store.assess_person("P2", AT, cfg.tiers))
            deadline = time.monotonic() + 10
            while (
                sum(r.getMessage() == "webhook_failed" for r in caplog.records) < 3
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
        assert len(msgs) == 3 and sum(r.getMessage() == "webhook_failed" for r in caplog.records) == 3
        assert len(desk.open_tasks("P2")) == 3
    finally:
        desk.stop()
    assert TaskKind.sms_reminder.value in {t.kind for t in desk.open_tasks("P2")}
