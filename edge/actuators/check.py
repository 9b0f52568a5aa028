"""``check_config`` for ``anqi-edge validate``: prompts, pins, serial port and frames, without driving anything."""

from __future__ import annotations

from pathlib import Path

from edge.actuators.prompts import (
    PromptError,
    find_pack,
    message_file,
    read_wav,
    required_messages,
    search_dirs,
)
from edge.config import EdgeConfig
from edge.config.actuators import parse_hex_frame

URL_SCHEMES = ("loop://", "socket://", "rfc2217://", "spy://", "alt://", "hwgrep://", "cp2110://")


def check_prompts(cfg: EdgeConfig) -> list[str]:
    sc = cfg.speaker
    if not sc.enabled or sc.backend == "none":
        return []
    problems = []
    dirs = search_dirs(sc, cfg.base_dir)
    if sc.prompts_dir and not dirs[0].is_dir():
        problems.append(f"speaker.prompts_dir: folder not found: {dirs[0]}")
    for i, lang in enumerate(sc.languages):
        pack = find_pack(lang, dirs)
        if pack is None:
            problems.append(
                f"speaker.languages.{i}: no prompt pack {lang!r} (looked for {' and '.join(str(d / lang) for d in dirs)})"
            )
            continue
        for message in required_messages(cfg.rules):
            f = message_file(pack, message)
            if f is None:
                problems.append(f"speaker.languages.{i}: {lang}: missing {pack / (message + '.wav')}")
                continue
            try:
                rate, x = read_wav(f)
            except PromptError as e:
                problems.append(f"speaker.languages.{i}: {lang}: {e}")
                continue
            if x.ndim == 2 and x.shape[1] > 2:
                problems.append(
                    f"speaker.languages.{i}: {lang}: {f}: {x.shape[1]} channels; use mono or stereo"
                )
            if len(x) / rate > 15:
                problems.append(
                    f"speaker.languages.{i}: {lang}: {f}: {len(x) / rate:.1f} s long; keep prompts under 15 s (the rider passes in a few seconds)"
                )
    return problems


def check_pins(cfg: EdgeConfig) -> list[str]:
    from gpiozero.pins.mock import MockFactory

    board = MockFactory().board_info  # a Raspberry Pi header: names are checked, nothing is driven
    problems = []
    used: dict[str, str] = {}
    for name, out in cfg.lights.outputs.items():
        if not out.enabled or out.pin is None:
            continue
        try:
            gpio = str(board.to_gpio(out.pin))
        except Exception as e:
            problems.append(f"lights.outputs.{name}.pin: {e}")
            continue
        if gpio in used:
            problems.append(
                f"lights.outputs.{name}.pin: {out.pin!r} is {gpio}, already used by lights.outputs.{used[gpio]}"
            )
        used[gpio] = name
    return problems


def check_serial(cfg: EdgeConfig) -> list[str]:
    problems = []
    port = cfg.lights.rs485.port
    if not port.startswith(URL_SCHEMES) and not Path(port).exists():
        problems.append(
            f"lights.rs485.port: serial port {port} does not exist (is the RS-485 adapter plugged in? or use a pyserial URL)"
        )
    for name, out in cfg.lights.outputs.items():
        if not out.enabled:
            continue
        for key in ("on_frame", "off_frame"):
            text = getattr(out, key)
            try:
                parse_hex_frame(text or "")
            except ValueError as e:
                problems.append(f"lights.outputs.{name}.{key}: {e}")
    return problems


def check_config(cfg: EdgeConfig) -> list[str]:
    """Every actuator problem as ``key.path: message`` (empty when usable)."""
    problems = check_prompts(cfg)
    lights = cfg.lights
    if lights.enabled and lights.backend == "gpio":
        problems += check_pins(cfg)
    elif lights.enabled and lights.backend == "rs485":
        problems += check_serial(cfg)
    return problems
