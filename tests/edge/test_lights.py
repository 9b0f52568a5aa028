"""Lights: GPIO relays through gpiozero's MockFactory pins, RS-485 frames through a pty pair and loop://."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gpiozero
import pytest

from edge.actuators.lights import GpioLightOutput, LightBoard, SerialLightOutput
from edge.actuators.persuasion import Persuasion
from edge.actuators.prompts import PromptPacks
from edge.config import ConfigError, parse_config
from edge.config.actuators import LightsConfig
from edge.health import Health


def health(tmp_path: Path) -> Health:
    return Health(tmp_path / "health.json", "anqi-test")


def gpio_lights(**outputs: dict) -> LightsConfig:
    return LightsConfig.model_validate(
        {
            "enabled": True,
            "backend": "gpio",
            "on_time_s": 0.3,
            "gpio": {"pin_factory": "mock"},
            "outputs": outputs,
        }
    )


def pin_of(board: LightBoard, name: str) -> Any:  # the MockPin behind a gpiozero OutputDevice
    out = board.outputs[name]
    assert isinstance(out, GpioLightOutput)
    return out.device.pin


def wait_for(cond: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_gpio_relay_goes_high_for_its_on_time_then_low(tmp_path: Path) -> None:
    board = LightBoard.from_config(
        gpio_lights(laser={"pin": "GPIO17"}, strobe={"pin": "BOARD13", "on_time_s": 0.6}), health(tmp_path)
    )
    board.start()
    try:
        laser, strobe = pin_of(board, "laser"), pin_of(board, "strobe")
        assert (str(laser.info.name), str(strobe.info.name)) == ("GPIO17", "GPIO27")
        laser.clear_states()
        strobe.clear_states()
        assert board.trigger("no_helmet") == ["laser", "strobe"]
        wait_for(lambda: laser.state and strobe.state)
        wait_for(lambda: not strobe.state)
        # states are (seconds since the previous change, level)
        assert [s.state for s in laser.states] == [False, True, False]
        assert [s.state for s in strobe.states] == [False, True, False]
        assert laser.states[1].timestamp < 0.5  # switched on promptly (generous: the CI box is shared)
        assert 0.29 <= laser.states[2].timestamp <= 0.7  # held for lights.on_time_s (0.3), never less
        assert 0.59 <= strobe.states[2].timestamp <= 1.0  # its own on_time_s (0.6)
    finally:
        board.close()


def test_retrigger_extends_the_on_time_without_flicker(tmp_path: Path) -> None:
    board = LightBoard.from_config(gpio_lights(laser={"pin": 17}), health(tmp_path))
    board.start()
    try:
        pin = pin_of(board, "laser")
        pin.clear_states()
        board.trigger("wrong_way")
        time.sleep(0.2)
        board.trigger("wrong_way")  # still on: off moves to 0.2 + 0.3 s
        wait_for(lambda: len(pin.states) == 3, timeout=2)
        assert [s.state for s in pin.states] == [False, True, False]
        assert 0.49 <= pin.states[2].timestamp <= 0.9
    finally:
        board.close()


def test_active_low_relay_and_trigger_filter(tmp_path: Path) -> None:
    cfg = gpio_lights(
        laser={"pin": "GPIO5", "active_high": False, "triggers": ["red_light"]}, strobe={"pin": "GPIO6"}
    )
    board = LightBoard.from_config(cfg, health(tmp_path))
    board.start()
    try:
        laser = pin_of(board, "laser")
        assert laser.state  # an active-low relay idles high (off)
        assert board.trigger("no_helmet") == ["strobe"]
        assert board.trigger("red_light") == ["laser", "strobe"]
        wait_for(lambda: not laser.state)  # on = low
        wait_for(lambda: laser.state)
    finally:
        board.close()


def test_gpio_unavailable_marks_lights_down_and_persuasion_keeps_going(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(
        gpiozero.Device, "pin_factory", None
    )  # whatever another test set: use gpiozero's own default lookup
    cfg = parse_config(
        {
            "lights": {"enabled": True, "backend": "gpio"},
            "speaker": {"backend": "none"},
            "time_switch": {"enabled": False},
        }
    )
    h = health(tmp_path)
    p = Persuasion.from_config(
        cfg.speaker,
        cfg.lights,
        cfg.time_switch,
        cfg.device.timezone,
        PromptPacks.for_site(cfg.speaker, cfg.rules, cfg.base_dir),
        h,
    )
    p.start()
    try:
        p.on_violation("no_helmet", 1, time.monotonic())  # must not raise
        comps = h.snapshot()["components"]
        if comps["light.laser"]["status"] == "up":
            pytest.skip("this machine has real GPIO")
        assert (
            comps["light.laser"]["status"] == "down"
            and "lights.outputs.laser.pin" in comps["light.laser"]["detail"]
        )
        assert comps["light.strobe"]["status"] == "down"
        assert comps["speaker"]["status"] == "off"
    finally:
        p.close()


def read_frames(fd: int, n_bytes: int, timeout: float = 3.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < n_bytes and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            got += os.read(fd, 64)
    return got


def test_rs485_frames_reach_the_controller_over_a_pty(tmp_path: Path) -> None:
    controller, device = os.openpty()  # the controller's end, and the "adapter" the appliance opens
    port = os.ttyname(device)
    cfg = LightsConfig.model_validate(
        {
            "enabled": True,
            "backend": "rs485",
            "on_time_s": 0.3,
            "rs485": {"port": port, "baud": 19200, "parity": "E", "stop_bits": 1},
            "outputs": {
                "laser": {"on_frame": "A0 01 01 A2", "off_frame": "A0:01:00:A1"},
                "strobe": {"on_frame": "A00201A3", "off_frame": "A0 02 00 A2", "on_time_s": 0.5},
            },
        }
    )
    h = health(tmp_path)
    board = LightBoard.from_config(cfg, h)
    board.start()
    try:
        initial = read_frames(controller, 8)
        assert initial == bytes.fromhex("A00100A1 A00200A2")  # everything off at start
        t0 = time.monotonic()
        board.trigger("red_light")
        on = read_frames(controller, 8)
        t_on = time.monotonic()
        off_laser = read_frames(controller, 4)
        t_laser = time.monotonic()
        off_strobe = read_frames(controller, 4)
        t_strobe = time.monotonic()
        assert on == bytes.fromhex("A00101A2 A00201A3")
        assert (off_laser, off_strobe) == (bytes.fromhex("A00100A1"), bytes.fromhex("A00200A2"))
        assert t_on - t0 < 0.5
        assert 0.29 <= t_laser - t0 <= 0.9 and 0.49 <= t_strobe - t0 <= 1.1
        assert h.snapshot()["components"]["light.laser"]["status"] == "up"
        assert "rs485" in h.snapshot()["components"]["light.laser"]["detail"]
    finally:
        board.close()
        os.close(controller)
        os.close(device)


def test_rs485_over_pyserial_loop_url(tmp_path: Path) -> None:
    cfg = LightsConfig.model_validate(
        {
            "enabled": True,
            "backend": "rs485",
            "on_time_s": 0.1,
            "rs485": {"port": "loop://"},
            "outputs": {"strobe": {"on_frame": "55 AA 01", "off_frame": "55 AA 00"}},
        }
    )
    board = LightBoard.from_config(cfg, health(tmp_path))
    board.start()
    try:
        out = board.outputs["strobe"]
        assert isinstance(out, SerialLightOutput)
        board.trigger("passenger")
        wait_for(lambda: len(out.bus.frames_written) == 3)
        port = out.bus._port
        assert port.read(9) == bytes.fromhex("55AA00 55AA01 55AA00")  # loop:// hands back what was written
    finally:
        board.close()


def test_missing_serial_port_marks_outputs_down_then_the_adapter_comes_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = tmp_path / "ttyUSB9"
    cfg = LightsConfig.model_validate(
        {
            "enabled": True,
            "backend": "rs485",
            "retry_s": 0.5,
            "on_time_s": 0.1,
            "rs485": {"port": str(port)},
            "outputs": {"laser": {"on_frame": "01", "off_frame": "00"}},
        }
    )
    h = health(tmp_path)
    board = LightBoard.from_config(cfg, h)
    with caplog.at_level("WARNING", logger="edge.actuators.lights"):
        board.start()
    try:
        laser = h.snapshot()["components"]["light.laser"]
        assert (
            laser["status"] == "down"
            and "lights.rs485.port" in laser["detail"]
            and "ttyUSB9" in laser["detail"]
        )
        with caplog.at_level("WARNING", logger="edge.actuators.lights"):
            for _ in range(5):  # a burst of violations does not hammer the missing port
                board.trigger("no_helmet")
            time.sleep(0.2)
        assert sum(r.getMessage() == "light_unavailable" for r in caplog.records) == 1
        controller, device = os.openpty()  # the adapter is plugged in: same path, now a tty
        try:
            port.symlink_to(os.ttyname(device))
            time.sleep(0.4)
            board.trigger("no_helmet")
            assert read_frames(controller, 3) == bytes.fromhex("00 01 00")  # off at open, on, off
            assert h.snapshot()["components"]["light.laser"]["status"] == "up"
        finally:
            board.close()
            os.close(controller)
            os.close(device)
    finally:
        board.close()


@pytest.mark.parametrize(
    ("lights", "message"),
    [
        ({"enabled": True, "outputs": {"laser": {"pin": "pin17"}}}, "not a gpiozero pin name"),
        ({"enabled": True, "outputs": {"laser": {"pin": 70}}}, "GPIO number must be 0..53"),
        ({"enabled": True, "outputs": {"laser": {}}}, "outputs.laser.pin is required with backend 'gpio'"),
        (
            {"enabled": True, "backend": "rs485", "outputs": {"laser": {"on_frame": "A0 01"}}},
            "on_frame and off_frame are required",
        ),
        ({"outputs": {"laser": {"on_frame": "A0 0G"}}}, "lights.outputs.laser.on_frame"),
        ({"outputs": {"laser": {"off_frame": "0xA0"}}}, "without 0x"),
        ({"rs485": {"parity": "X"}}, "lights.rs485.parity"),
        ({"outputs": {"Laser!": {"pin": 17}}}, "output name 'Laser!'"),
        ({"on_time_s": 0}, "lights.on_time_s"),
        ({"outputs": {"laser": {"triggers": ["speeding"]}}}, "lights.outputs.laser.triggers.0"),
    ],
)
def test_bad_lights_config_names_the_key(lights: dict, message: str) -> None:
    try:
        parse_config({"lights": lights})
    except ConfigError as e:
        assert message in str(e), str(e)
    else:
        pytest.fail(f"accepted: {lights}")
