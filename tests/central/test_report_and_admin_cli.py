"""Frequency statistics (8.2.3) and the administrative subcommands, through the real click commands."""

from __future__ import annotations

import csv
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from central_sync.cli import main
from central_sync.config import load_config
from central_sync.report import band_of
from central_sync.sharing.access import hash_token
from central_sync.storage.models import ApiToken, Disposition, Person
from central_sync.storage.store import CentralStore, ViolationRecord

T = datetime(2026, 5, 10, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, CentralStore]:
    cfgf = tmp_path / "central.yaml"
    cfgf.write_text("database:\n  url: sqlite:///central.db\nmedia:\n  dir: media\n")
    store = CentralStore.from_config(load_config(cfgf))
    with store.session() as s:
        s.add(
            Person(
                person_id="A1",
                kind="enrolled",
                name="Li Si",
                id_number="330502199001011234",
                community="Feiying",
                tier="frequent",
            )
        )
    recs = [
        ViolationRecord(str(uuid.uuid4()), "no_helmet", T + timedelta(hours=i), "A1", point_id="pt-1")
        for i in range(5)
    ]
    recs += [ViolationRecord(str(uuid.uuid4()), "no_helmet", T + timedelta(days=1), "U-x", point_id="pt-2")]
    recs += [
        ViolationRecord(str(uuid.uuid4()), "wrong_way", T + timedelta(days=1, hours=1), None, point_id="pt-2")
    ]
    recs += [ViolationRecord(str(uuid.uuid4()), "passenger", T + timedelta(days=1), "A1", point_id="pt-1")]
    store.add_violations(recs)
    return cfgf, store


@pytest.mark.parametrize(
    "n,band",
    [(0, "0"), (1, "1"), (2, "2"), (3, "3"), (4, "4-7"), (7, "4-7"), (8, "8-30"), (30, "8-30"), (31, ">30")],
)
def test_count_bands_follow_table_1(n: int, band: str) -> None:
    assert band_of(n) == band


def test_report_writes_csv_per_person_point_date_band_and_html(
    site: tuple[Path, CentralStore], tmp_path: Path
) -> None:
    cfgf, _ = site
    out = tmp_path / "rep"
    r = CliRunner().invoke(
        main,
        ["report", "--config", str(cfgf), "--from", "2026-05-01", "--to", "2026-05-31", "--out", str(out)],
    )
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "by_person.csv").open()))
    assert [(x["person_id"], x["count"], x["band"], x["points"], x["types"]) for x in rows] == [
        ("A1", "6", "4-7", "pt-1", "no_helmet:5;passenger:1"),  # a passenger event counts like the others
        ("U-x", "1", "1", "pt-2", "no_helmet:1"),
    ]
    assert {
        x["point_id"]: (x["violations"], x["persons"]) for x in csv.DictReader((out / "by_point.csv").open())
    } == {"pt-1": ("6", "1"), "pt-2": ("2", "1")}
    assert {x["date"]: x["violations"] for x in csv.DictReader((out / "by_date.csv").open())} == {
        "2026-05-10": "5",
        "2026-05-11": "3",
    }
    bands = {x["band"]: x["persons"] for x in csv.DictReader((out / "by_band.csv").open())}
    assert bands["1"] == "1" and bands["4-7"] == "1" and bands[">30"] == "0"
    page = (out / "report.html").read_text()
    assert "<td>passenger</td><td>1</td>" in page  # the by-type table
    assert "Li Si" in page and "330502199001011234" not in page and "<script" not in page


def test_report_refuses_a_reversed_range(site: tuple[Path, CentralStore], tmp_path: Path) -> None:
    cfgf, _ = site
    r = CliRunner().invoke(
        main,
        [
            "report",
            "--config",
            str(cfgf),
            "--from",
            "2026-05-31",
            "--to",
            "2026-05-01",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert r.exit_code != 0 and "to must be after from" in r.output


def test_token_create_prints_the_secret_once_and_stores_its_hash(site: tuple[Path, CentralStore]) -> None:
    cfgf, store = site
    r = CliRunner().invoke(
        main,
        [
            "token",
            "create",
            "--config",
            str(cfgf),
            "--name",
            "fy",
            "--role",
            "community",
            "--community",
            "Feiying",
        ],
    )
    assert r.exit_code == 0, r.output
    secret = r.output.strip().splitlines()[-1]
    with store.session() as s:
        t = s.execute(select(ApiToken)).scalar_one()
    assert t.token_hash == hash_token(secret) and secret not in (t.token_hash, t.name)
    r = CliRunner().invoke(
        main, ["token", "create", "--config", str(cfgf), "--name", "x", "--role", "community"]
    )
    assert r.exit_code == 2 and "--community" in r.output


def test_manual_fine_then_violation_makes_repeat_in_the_daily_pass(site: tuple[Path, CentralStore]) -> None:
    cfgf, store = site
    r = CliRunner().invoke(
        main,
        [
            "dispose",
            "--config",
            str(cfgf),
            "--person",
            "A1",
            "--kind",
            "fine",
            "--time",
            (T + timedelta(hours=2, minutes=30)).isoformat(),
        ],
    )
    assert r.exit_code == 0, r.output
    with store.session() as s:
        assert [d.kind for d in s.scalars(select(Disposition))] == ["fine"]
    r = CliRunner().invoke(
        main, ["reevaluate", "--config", str(cfgf), "--write", "--at", (T + timedelta(days=2)).isoformat()]
    )
    assert r.exit_code == 0, r.output
    counts = json.loads(r.output.strip().splitlines()[-1])
    assert counts["repeat"] == 1 and counts["occasional"] == 1
    with store.session() as s:
        assert s.get(Person, "A1").tier == "repeat"  # type: ignore[union-attr]
    r = CliRunner().invoke(main, ["tasks", "--config", str(cfgf)])
    assert r.exit_code == 0, r.output
    open_tasks = [json.loads(x) for x in r.output.strip().splitlines()]
    assert sorted(t["kind"] for t in open_tasks if t["person_id"] == "A1") == [
        "credit_deduction",
        "public_notice",
    ]
    assert all(
        t["status"] == "open" and not t["published"] for t in open_tasks
    )  # published by the consumer later


def test_config_errors_exit_2_naming_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers:\n  occasional_max_7d: lots\n")
    r = CliRunner().invoke(main, ["reevaluate", "--config", str(bad)])
    assert r.exit_code == 2 and "bad.yaml: tiers.occasional_max_7d:" in r.output


@pytest.mark.parametrize(
    "now,expected",
    [
        ("2026-05-10T02:00:00+08:00", "2026-05-10T02:30:00+08:00"),  # later today (local time)
        ("2026-05-10T02:30:00+08:00", "2026-05-11T02:30:00+08:00"),  # exactly now: tomorrow
        ("2026-05-10T23:00:00+08:00", "2026-05-11T02:30:00+08:00"),
    ],
)
def test_daily_reevaluation_is_scheduled_at_the_configured_local_time(now: str, expected: str) -> None:
    from central_sync.cli_service import _next_daily

    got = _next_daily(datetime.fromisoformat(now), "02:30", "Asia/Shanghai")
    assert got == datetime.fromisoformat(expected) and got.tzinfo is not None
