"""Table 1: boundaries of every window, the gaps, repeat after education vs a mere SMS, windows sliding.

Each case is checked three ways: the pure function, the service's store path (``classify_lines``),
and the real ``anqi-central classify`` CLI on a JSONL file.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import Result

from central_sync.classify import classify_lines
from central_sync.config import TierThresholds
from central_sync.tiers import OffenderTier, classify_counts, history_from_times, is_repeat, parse_aware_time

AT = datetime(2026, 6, 1, 0, 0, tzinfo=timezone(timedelta(hours=8)))
TH = TierThresholds()
D = timedelta(days=1)
US = timedelta(microseconds=1)


def ev(pid: str, t: datetime, **kw: object) -> dict[str, object]:
    return {"person_id": pid, "violation_type": "no_helmet", "time": t.isoformat(), **kw}


def disp(pid: str, kind: str, t: datetime) -> dict[str, object]:
    return {"person_id": pid, "disposition": kind, "time": t.isoformat()}


def burst(pid: str, n7: int, n30_only: int = 0, n365_only: int = 0) -> list[dict[str, object]]:
    """n7 events inside (at-7d, at], n30_only inside (at-30d, at-7d], n365_only inside (at-365d, at-30d]."""
    out = [ev(pid, AT - timedelta(hours=1, minutes=i)) for i in range(n7)]
    out += [ev(pid, AT - 10 * D - timedelta(minutes=i)) for i in range(n30_only)]
    out += [ev(pid, AT - 100 * D - timedelta(minutes=i)) for i in range(n365_only)]
    return out


# (n7, n30 outside the 7-day window) -> tier; covers 0/1/3/4/7/8 in 7 d and 1/3/4/7/8/30/31 in 30 d
COUNT_CASES = [
    (0, 0, "none"),
    (1, 0, "occasional"),
    (3, 0, "occasional"),
    (4, 0, "frequent"),  # 3 < N <= 7 in 7 d wins over "3-7 in 30 d"
    (7, 0, "frequent"),
    (8, 0, "frequent"),  # gap above the table: stays frequent
    (0, 1, "occasional"),  # gap: 1-2 in 30 d, none in 7 d
    (0, 2, "occasional"),
    (0, 3, "occasional"),
    (0, 4, "occasional"),
    (0, 7, "occasional"),
    (0, 8, "frequent"),
    (0, 30, "frequent"),
    (0, 31, "frequent"),  # gap above the table: stays frequent
    (3, 4, "occasional"),  # 3 in 7 d, 7 in 30 d
    (3, 5, "frequent"),  # 3 in 7 d, 8 in 30 d
    (1, 29, "frequent"),
    (2, 1, "occasional"),
]


@pytest.mark.parametrize("n7,n30_only,tier", COUNT_CASES)
def test_window_counts_map_to_table_1_tier(n7: int, n30_only: int, tier: str) -> None:
    assert classify_counts(n7, n7 + n30_only, repeat=False, th=TH).value == tier
    recs = burst("p", n7, n30_only, n365_only=2)
    res, info = classify_lines([json.dumps(r) for r in recs], AT)
    assert not info.problems
    if n7 + n30_only == 0:
        assert [r.as_json() for r in res] == [
            {"person_id": "p", "count_7d": 0, "count_30d": 0, "count_365d": 2, "tier": "none"}
        ]
    else:
        assert [r.as_json() for r in res] == [
            {
                "person_id": "p",
                "count_7d": n7,
                "count_30d": n7 + n30_only,
                "count_365d": n7 + n30_only + 2,
                "tier": tier,
            }
        ]


def test_inconsistent_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        classify_counts(5, 3, False, TH)


# single-event window edges: (offset before at, expected counts 7/30/365)
EDGE_CASES = [
    (timedelta(0), (1, 1, 1)),  # at itself counts
    (7 * D - US, (1, 1, 1)),
    (7 * D, (0, 1, 1)),  # exactly 7 days before: out of the 7-day window
    (30 * D - US, (0, 1, 1)),
    (30 * D, (0, 0, 1)),
    (365 * D - US, (0, 0, 1)),
    (365 * D, (0, 0, 0)),
    (-US, None),  # after at: ignored, person not listed
]


@pytest.mark.parametrize("offset,counts", EDGE_CASES)
def test_windows_are_half_open_at_minus_n_days_to_at(
    offset: timedelta, counts: tuple[int, int, int] | None
) -> None:
    res, _ = classify_lines([json.dumps(ev("p", AT - offset))], AT)
    if counts is None:
        assert res == []
        return
    (r,) = res
    assert (r.count_7d, r.count_30d, r.count_365d) == counts
    expected = "occasional" if counts[1] else "none"
    assert r.tier.value == expected


def test_window_edge_with_other_offsets_in_input() -> None:
    """Times in different offsets denote the same instants: +08:00 and Z spellings of at-7d."""
    t = (AT - 7 * D).astimezone(timezone.utc)
    lines = [
        json.dumps(
            {"person_id": "p", "violation_type": "no_helmet", "time": t.strftime("%Y-%m-%dT%H:%M:%SZ")}
        ),
        json.dumps(ev("p", AT - 7 * D + timedelta(seconds=1))),
    ]
    (r,) = classify_lines(lines, AT)[0]
    assert (r.count_7d, r.count_30d) == (1, 2)


REPEAT_CASES = [
    # (disposition kind, disposition offset before at, violation offsets before at, expected tier)
    ("education", 20 * D, [10 * D], "repeat"),
    ("fine", 20 * D, [10 * D], "repeat"),
    ("sms_reminder", 20 * D, [10 * D], "occasional"),  # an SMS reminder never makes "repeat"
    ("sms", 20 * D, [10 * D], "occasional"),
    ("voice_reminder", 20 * D, [10 * D], "occasional"),
    ("education", 10 * D, [20 * D], "occasional"),  # violation before the education: not repeat
    ("education", 10 * D, [10 * D], "occasional"),  # same instant: not "after"
    ("education", 300 * D, [200 * D], "repeat"),  # both inside 365 d, nothing in 30 d: still repeat
    ("education", 365 * D, [200 * D], "none"),  # disposition exactly 365 d before: out of the window
    ("education", 365 * D - US, [200 * D], "repeat"),
    ("education", 400 * D, [200 * D], "none"),
    ("education", -D, [10 * D], "occasional"),  # disposition after at: ignored
    ("education", 20 * D, [-D], "none"),  # violation after at: ignored (person listed, counts 0)
    ("education", 20 * D, [10 * D, 25 * D], "repeat"),
    ("education", 20 * D, [D, 2 * D, 3 * D, 4 * D], "repeat"),  # repeat > frequent
]


@pytest.mark.parametrize("kind,d_off,v_offs,tier", REPEAT_CASES)
def test_repeat_needs_a_violation_after_education_or_fine_within_365_days(
    kind: str, d_off: timedelta, v_offs: list[timedelta], tier: str
) -> None:
    lines = [json.dumps(disp("p", kind, AT - d_off))] + [json.dumps(ev("p", AT - o)) for o in v_offs]
    res, info = classify_lines(lines, AT)
    assert not info.problems
    if d_off < timedelta(0) and all(o < timedelta(0) for o in v_offs):
        assert res == []
        return
    (r,) = res
    assert r.tier.value == tier
    ref = history_from_times(
        AT, [AT - o for o in v_offs], [AT - d_off] if kind in ("education", "fine") else [], TH
    )
    assert (r.count_7d, r.count_30d, r.count_365d) == (ref.count_7d, ref.count_30d, ref.count_365d)
    assert (r.tier is OffenderTier.repeat) == is_repeat(ref)


def test_tiers_slide_as_the_evaluation_time_moves() -> None:
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    lines = [json.dumps(ev("p", t0 + timedelta(minutes=i))) for i in range(4)]
    seq = [
        (t0 + timedelta(minutes=3), "frequent", (4, 4, 4)),
        (t0 + 7 * D, "occasional", (3, 4, 4)),  # the first event (t0) is now exactly 7 d old: 3 in 7 d
        (t0 + 7 * D + timedelta(minutes=3), "occasional", (0, 4, 4)),
        (t0 + 30 * D, "occasional", (0, 3, 4)),
        (t0 + 30 * D + timedelta(minutes=2), "occasional", (0, 1, 4)),
        (t0 + 30 * D + timedelta(minutes=3), "none", (0, 0, 4)),
        (t0 + 365 * D + timedelta(minutes=3), "none", (0, 0, 0)),
    ]
    for at, tier, counts in seq:
        (r,) = classify_lines(lines, at)[0]
        assert (r.tier.value, (r.count_7d, r.count_30d, r.count_365d)) == (tier, counts), at


def test_duplicate_event_ids_count_once_like_the_consumer() -> None:
    line = json.dumps(ev("p", AT - D, event_id="7d1c3f1e-9d2a-4c51-8f0e-3c1f7c2b9a10"))
    res, info = classify_lines([line] * 5, AT)
    assert info.duplicates == 4 and res[0].count_7d == 1


def test_store_path_agrees_with_reference_on_random_histories() -> None:
    rng = random.Random(6)
    lines: list[str] = []
    truth: dict[str, tuple[list[datetime], list[datetime]]] = {}
    for k in range(60):
        pid = f"p{k:02d}"
        vs = [AT - timedelta(seconds=rng.randint(-5 * 86400, 400 * 86400)) for _ in range(rng.randint(0, 40))]
        # a few exact boundaries
        vs += [AT - rng.choice([7, 30, 365]) * D for _ in range(rng.randint(0, 2))]
        ds = [AT - timedelta(seconds=rng.randint(-5 * 86400, 400 * 86400)) for _ in range(rng.randint(0, 2))]
        kinds = [rng.choice(["education", "fine", "sms_reminder"]) for _ in ds]
        lines += [json.dumps(ev(pid, t)) for t in vs] + [
            json.dumps(disp(pid, kd, t)) for kd, t in zip(kinds, ds, strict=False)
        ]
        truth[pid] = (vs, [t for kd, t in zip(kinds, ds, strict=False) if kd != "sms_reminder"])
    rng.shuffle(lines)
    res, info = classify_lines(lines, AT)
    assert not info.problems
    got = {r.person_id: r for r in res}
    checked = 0
    for pid, (vs, ds) in truth.items():
        ref = history_from_times(AT, vs, ds, TH)
        if pid not in got:
            assert not any(t <= AT for t in vs) and not any(t <= AT for t in ds)
            continue
        r = got[pid]
        assert (r.count_7d, r.count_30d, r.count_365d) == (ref.count_7d, ref.count_30d, ref.count_365d), pid
        assert r.tier == classify_counts(ref.count_7d, ref.count_30d, is_repeat(ref), TH), pid
        checked += 1
    assert checked > 40


def test_thresholds_from_config_change_the_tiers() -> None:
    from central_sync.config import CentralConfig

    cfg = CentralConfig(tiers=TierThresholds(occasional_max_7d=1))
    (r,) = classify_lines([json.dumps(x) for x in burst("p", 2)], AT, cfg)[0]
    assert r.tier is OffenderTier.frequent


def test_naive_and_malformed_times_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_aware_time("2026-06-01T00:00:00")
    with pytest.raises(ValueError, match="not an ISO 8601"):
        parse_aware_time("yesterday")


# ---------------------------------------------------------------- the real CLI
def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("anqi-central")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "central_sync.cli"]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli() + args, capture_output=True, text=True, timeout=60)


def test_classify_cli_prints_one_json_line_per_person(tmp_path: Path) -> None:
    recs: list[dict[str, object]] = []
    expected: dict[str, dict[str, object]] = {}
    for i, (n7, n30, tier) in enumerate(COUNT_CASES):
        pid = f"c{i:02d}"
        recs += burst(pid, n7, n30, n365_only=1)
        expected[pid] = {
            "person_id": pid,
            "count_7d": n7,
            "count_30d": n7 + n30,
            "count_365d": n7 + n30 + 1,
            "tier": "none" if n7 + n30 == 0 else tier,
        }
    recs += [disp("edu", "education", AT - 20 * D), ev("edu", AT - 10 * D)]
    expected["edu"] = {"person_id": "edu", "count_7d": 0, "count_30d": 1, "count_365d": 1, "tier": "repeat"}
    recs += [disp("sms", "sms_reminder", AT - 20 * D), ev("sms", AT - 10 * D)]
    expected["sms"] = {
        "person_id": "sms",
        "count_7d": 0,
        "count_30d": 1,
        "count_365d": 1,
        "tier": "occasional",
    }
    recs += [ev("edge7", AT - 7 * D), ev("future", AT + US)]
    expected["edge7"] = {
        "person_id": "edge7",
        "count_7d": 0,
        "count_30d": 1,
        "count_365d": 1,
        "tier": "occasional",
    }
    random.Random(1).shuffle(recs)
    f = tmp_path / "events.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    p = _run(["classify", "--events", str(f), "--at", AT.isoformat()])
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert all(list(x) == ["person_id", "count_7d", "count_30d", "count_365d", "tier"] for x in lines)
    assert {x["person_id"]: x for x in lines} == expected
    assert len(lines) == len(expected)


def test_classify_cli_groups_embedding_only_events_into_unknown_files(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=128), rng.normal(size=128)
    recs = [
        {
            "embedding": (a + 0.05 * rng.normal(size=128)).tolist(),
            "violation_type": "no_helmet",
            "time": (AT - timedelta(hours=i)).isoformat(),
        }
        for i in range(4)
    ]
    recs += [
        {
            "face": {"found": True, "embedding": (b + 0.05 * rng.normal(size=128)).tolist()},
            "violation_type": "no_helmet",
            "time": (AT - timedelta(hours=i)).isoformat(),
        }
        for i in range(2)
    ]
    f = tmp_path / "faces.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in recs))
    p = _run(["classify", "--events", str(f), "--at", AT.isoformat()])
    assert p.returncode == 0, p.stderr
    got = sorted((x["count_7d"], x["tier"]) for x in map(json.loads, p.stdout.splitlines()))
    assert got == [(2, "occasional"), (4, "frequent")]


def test_classify_cli_reports_bad_lines_and_keeps_the_good_ones(tmp_path: Path) -> None:
    f = tmp_path / "mixed.jsonl"
    f.write_text(
        "\n".join(
            [
                json.dumps(ev("ok", AT - D)),
                "{not json",
                json.dumps({"person_id": "x", "time": AT.isoformat()}),
                json.dumps({"person_id": "y", "violation_type": "no_helmet", "time": "2026-05-30T10:00:00"}),
            ]
        )
    )
    p = _run(["classify", "--events", str(f), "--at", AT.isoformat()])
    assert p.returncode == 0
    assert [json.loads(x)["person_id"] for x in p.stdout.splitlines()] == ["ok"]
    assert "mixed.jsonl:2: not valid JSON" in p.stderr
    assert "mixed.jsonl:3: violation_type: required key is missing" in p.stderr
    assert "mixed.jsonl:4: time:" in p.stderr and "no UTC offset" in p.stderr
    assert _invoke(["classify", "--events", str(f), "--at", AT.isoformat(), "--strict"]).exit_code == 2


def _invoke(args: list[str]) -> Result:
    """The same click command in-process (cheaper than a subprocess for the error paths)."""
    from click.testing import CliRunner

    from central_sync.cli import main

    return CliRunner().invoke(main, args)


def test_classify_cli_refuses_a_naive_at_and_a_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "e.jsonl"
    f.write_text(json.dumps(ev("p", AT)))
    r = _invoke(["classify", "--events", str(f), "--at", "2026-06-01T00:00:00"])
    assert r.exit_code == 2 and "no UTC offset" in r.output
    r = _invoke(["classify", "--events", str(tmp_path / "nope.jsonl"), "--at", AT.isoformat()])
    assert r.exit_code == 2 and "nope.jsonl" in r.output


def test_classify_rejects_lines_of_an_unknown_schema_version() -> None:
    lines = [
        json.dumps({**ev("p", AT), "schema_version": 2}),
        json.dumps({**ev("q", AT), "schema_version": 1}),
    ]
    res, info = classify_lines(lines, AT)
    assert [r.person_id for r in res] == ["q"]
    assert info.problems == ["<stdin>:1: schema_version: 2 is not supported (this build reads 1)"]


def test_classify_cli_matches_embeddings_against_the_configured_gallery(tmp_path: Path) -> None:
    import numpy as np

    from central_sync.config import load_config
    from central_sync.identity import EnrolmentRecord
    from central_sync.persons import enrol_embeddings, load_resolver
    from central_sync.storage.store import CentralStore

    cfgf = tmp_path / "central.yaml"
    cfgf.write_text("database:\n  url: sqlite:///c.db\n")
    cfg = load_config(cfgf)
    store = CentralStore.from_config(cfg)
    face = np.random.default_rng(1).normal(size=128)
    face /= np.linalg.norm(face)
    enrol_embeddings(store, cfg, load_resolver(store, cfg), EnrolmentRecord("P-1"), face[None, :])
    store.close()
    f = tmp_path / "e.jsonl"
    f.write_text(
        "\n".join(
            json.dumps(
                {
                    "embedding": (face + 0.01 * i).tolist(),
                    "violation_type": "no_helmet",
                    "time": (AT - timedelta(hours=i)).isoformat(),
                }
            )
            for i in range(4)
        )
    )
    p = _run(["classify", "--events", str(f), "--at", AT.isoformat(), "--config", str(cfgf), "--use-gallery"])
    assert p.returncode == 0, p.stderr
    assert [json.loads(x) for x in p.stdout.splitlines()] == [
        {"person_id": "P-1", "count_7d": 4, "count_30d": 4, "count_365d": 4, "tier": "frequent"}
    ]
    empty = tmp_path / "empty.yaml"
    empty.write_text("database:\n  url: sqlite:///nothing.db\n")
    r = _invoke(
        ["classify", "--events", str(f), "--at", AT.isoformat(), "--config", str(empty), "--use-gallery"]
    )
    assert r.exit_code == 2 and "--use-gallery" in r.output


def test_numeric_person_ids_come_back_as_numbers(tmp_path: Path) -> None:
    f = tmp_path / "n.jsonl"
    f.write_text(
        json.dumps({"person_id": 17, "violation_type": "no_helmet", "time": AT.isoformat()})
        + "\n"
        + json.dumps({"person_id": "a", "violation_type": "no_helmet", "time": AT.isoformat()})
        + "\n"
    )
    r = _invoke(["classify", "--events", str(f), "--at", AT.isoformat()])
    assert r.exit_code == 0
    ids = [json.loads(x)["person_id"] for x in r.output.splitlines() if x.startswith("{")]
    assert ids == [17, "a"]
