"""Time switch: window edges, midnight, whole-day windows, holidays, time zones; and Persuasion staying quiet."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.actuators.lights import GpioLightOutput
from edge.actuators.persuasion import Persuasion
from edge.actuators.prompts import PromptPacks
from edge.actuators.timeswitch import DailyWindow, TimeSwitch, window_value
from edge.config import ConfigError, parse_config
from edge.config.actuators import TimeSwitchConfig, TimeWindow
from edge.health import Health

SH = ZoneInfo("Asia/Shanghai")


def at(text: str, tz: ZoneInfo = SH) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def switch(
    windows: list[tuple[str, str]],
    holidays: Sequence[str] = (),
    holiday_windows: Sequence[tuple[str, str]] = (),
    tz: str = "Asia/Shanghai",
) -> TimeSwitch:
    cfg = TimeSwitchConfig(
        windows=[TimeWindow(start=s, end=e) for s, e in windows],
        holidays=[date.fromisoformat(d) for d in holidays],
        holiday_windows=[TimeWindow(start=s, end=e) for s, e in holiday_windows],
    )
    return TimeSwitch(cfg, tz)


@pytest.mark.parametrize(
    ("local", "active"),
    [
        ("2026-05-04 06:59:59", False),
        ("2026-05-04 07:00:00", True),  # start is inside
        ("2026-05-04 12:00:00", True),
        ("2026-05-04 19:59:59", True),
        ("2026-05-04 20:00:00", False),  # end is outside
        ("2026-05-04 23:00:00", False),
    ],
)
def test_day_window_edges(local: str, active: bool) -> None:
    assert switch([("07:00", "20:00")]).is_active_at(at(local)) is active


@pytest.mark.parametrize(
    ("local", "active"),
    [
        ("2026-05-04 21:59:00", False),
        ("2026-05-04 22:00:00", True),
        ("2026-05-04 23:59:59", True),
        ("2026-05-05 00:00:00", True),  # across midnight
        ("2026-05-05 01:59:59", True),
        ("2026-05-05 02:00:00", False),
        ("2026-05-05 12:00:00", False),
    ],
)
def test_window_crossing_midnight(local: str, active: bool) -> None:
    assert switch([("22:00", "02:00")]).is_active_at(at(local)) is active


def test_equal_start_and_end_is_the_whole_day_and_several_windows_combine() -> None:
    whole = switch([("00:00", "00:00")])
    assert all(whole.is_active_at(at(f"2026-05-04 {h:02d}:30:00")) for h in range(24))
    split = switch([("07:00", "09:00"), ("17:00", "19:30")])
    assert [
        split.is_active_at(at(f"2026-05-04 {t}")) for t in ("06:00", "08:00", "12:00", "18:00", "19:30")
    ] == [False, True, False, True, False]


def test_local_time_zone_is_used_not_utc() -> None:
    ts = switch([("07:00", "20:00")])
    assert ts.is_active_at(datetime(2026, 5, 4, 0, 30, tzinfo=timezone.utc)) is True  # 08:30 in Shanghai
    assert ts.is_active_at(datetime(2026, 5, 4, 12, 30, tzinfo=timezone.utc)) is False  # 20:30 in Shanghai
    berlin = switch([("07:00", "20:00")], tz="Europe/Berlin")
    assert berlin.is_active_at(datetime(2026, 5, 4, 0, 30, tzinfo=timezone.utc)) is False  # 02:30 in Berlin


def test_holiday_uses_holiday_windows_and_windows_belong_to_their_start_day() -> None:
    ts = switch(
        [("07:00", "20:00"), ("22:00", "02:00")],
        holidays=["2026-10-01"],
        holiday_windows=[("09:00", "17:00")],
    )
    assert ts.is_active_at(at("2026-10-01 08:00")) is False  # a working day would be on
    assert ts.is_active_at(at("2026-10-01 09:00")) is True
    assert ts.is_active_at(at("2026-10-01 18:00")) is False
    assert ts.is_active_at(at("2026-10-01 01:00")) is True  # the night window opened on 30 Sep (working day)
    assert ts.is_active_at(at("2026-10-01 23:00")) is False  # no night window opens on the holiday ...
    assert ts.is_active_at(at("2026-10-02 01:00")) is False  # ... so none runs past its midnight
    quiet = switch([("07:00", "20:00")], holidays=["2026-10-01"])
    assert not any(quiet.is_active_at(at(f"2026-10-01 {h:02d}:00")) for h in range(24))


def test_disabled_switch_is_always_active_and_changes_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    cfg = TimeSwitchConfig(enabled=False, windows=[])
    assert TimeSwitch(cfg).is_active_at(at("2026-05-04 03:00")) is True
    now = [at("2026-05-04 19:59:30")]
    ts = TimeSwitch(TimeSwitchConfig(windows=[TimeWindow(start="07:00", end="20:00")]), clock=lambda: now[0])
    with caplog.at_level("INFO", logger="edge.actuators.timeswitch"):
        assert ts.active is True
        now[0] = at("2026-05-04 20:00:00")
        assert ts.active is False
        assert ts.active is False
    lines = [r for r in caplog.records if r.getMessage() == "time_switch_changed"]
    assert len(lines) == 1 and lines[0].fields["active"] is False


def test_volume_windows_pick_the_first_match_across_midnight() -> None:
    windows = [
        (DailyWindow.from_config(TimeWindow(start="22:00", end="06:00")), 0.3),
        (DailyWindow.from_config(TimeWindow(start="05:00", end="08:00")), 0.6),
    ]
    assert [
        window_value(windows, datetime.fromisoformat(f"2026-05-04 {t}"), 1.0)
        for t in ("23:00", "03:00", "05:30", "07:00", "12:00")
    ] == [0.3, 0.3, 0.3, 0.6, 1.0]


@pytest.mark.parametrize(
    ("ts", "key"),
    [
        ({"windows": [{"start": "7:00", "end": "20:00"}]}, "time_switch.windows.0.start"),
        ({"windows": [{"start": "07:00", "end": "24:00"}]}, "time_switch.windows.0.end"),
        ({"holidays": ["2026-13-01"]}, "time_switch.holidays.0"),
        ({"window": []}, "time_switch.window"),
    ],
)
def test_bad_time_switch_config_names_the_key(ts: dict, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"time_switch": ts})
    assert any(p.startswith(f"{key}:") for p in e.value.problems), e.value.problems


def test_outside_the_window_lights_stay_dark_and_detection_is_not_blocked(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "speaker": {"backend": "none"},
            "lights": {
                "enabled": True,
                "on_time_s": 0.2,
                "gpio": {"pin_factory": "mock"},
                "outputs": {"laser": {"pin": "GPIO17"}},
            },
            "time_switch": {"windows": [{"start": "07:00", "end": "20:00"}]},
        }
    )
    now = [at("2026-05-04 20:00:00")]
    p = Persuasion.from_config(
        cfg.speaker,
        cfg.lights,
        cfg.time_switch,
        cfg.device.timezone,
        PromptPacks.for_site(cfg.speaker, cfg.rules, cfg.base_dir),
        Health(tmp_path / "h.json", "t"),
        clock=lambda: now[0],
    )
    p.start()
    try:
        laser = p.lights.outputs["laser"]
        assert isinstance(laser, GpioLightOutput)
        pin = laser.device.pin
        pin.clear_states()
        t0 = time.monotonic()
        p.on_violation("no_helmet", 1, t0)
        assert time.monotonic() - t0 < 0.05  # returns at once
        time.sleep(0.1)
        assert [s.state for s in pin.states] == [False]
        now[0] = at("2026-05-05 07:00:00")
        p.on_violation("no_helmet", 2, time.monotonic())
        deadline = time.monotonic() + 2
        while len(pin.states) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [s.state for s in pin.states] == [False, True, False]
    finally:
        p.close()
