"""``anqi-edge test-speaker`` and ``anqi-edge test-lights``: the installer's self-test of the real outputs.

Both ignore the time switch and the cooldowns (the installer is standing at the pole) and print
what was driven; exit status 1 when an output could not be driven.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from edge.cli.common import config_or_exit
from edge.config import EdgeConfig
from edge.health import Health


def _health(cfg: EdgeConfig) -> Health:
    return Health(cfg.data_dir / "selftest-health.json", cfg.device.device_id)  # never written


@click.command("test-speaker")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Site config (default: built-in defaults).",
)
@click.option(
    "--lang",
    "langs",
    multiple=True,
    help="Language pack(s) to play instead of speaker.languages (repeatable).",
)
@click.option(
    "--message",
    default="generic",
    show_default=True,
    type=click.Choice(["no_helmet", "wrong_way", "red_light", "generic", "passenger"]),
)
@click.option(
    "--device", default=None, help="PortAudio output device (name or index) instead of speaker.device."
)
@click.option(
    "--volume",
    type=click.FloatRange(0, 1),
    default=None,
    help="Gain instead of the configured one for this hour.",
)
def test_speaker(
    config: Path | None, langs: tuple[str, ...], message: str, device: str | None, volume: float | None
) -> None:
    """Play one prompt on the configured output device and report what was played."""
    from edge.actuators.prompts import PromptLibrary, PromptPacks
    from edge.actuators.speaker import Speaker
    from edge.actuators.timeswitch import TimeSwitch

    cfg = config_or_exit(config, log_level="ERROR")
    try:
        if langs:
            cfg.speaker.languages = list(langs)
        if device is not None:
            cfg.speaker.device = int(device) if device.isdigit() else device
        cfg.speaker.enabled = True
        if cfg.speaker.backend == "none":
            cfg.speaker.backend = "sounddevice"
    except ValueError as e:
        raise click.ClickException(f"--lang/--device: {e}") from None
    ts = TimeSwitch(cfg.time_switch, cfg.device.timezone)
    health = _health(cfg)
    packs = PromptPacks.for_site(cfg.speaker, cfg.rules, cfg.base_dir)
    speaker = Speaker.from_config(
        cfg.speaker, lambda rate: PromptLibrary.load(cfg.speaker, packs, rate), health, ts.local_now
    )
    if not speaker.open():
        comp = health.snapshot()["components"].get("speaker", {})
        click.echo(f"speaker DOWN: {comp.get('detail', 'cannot open')}", err=True)
        sys.exit(1)
    assert speaker.output is not None and speaker.library is not None
    out = speaker.output
    for p in speaker.library.problems:
        click.echo(f"warning: {p}", err=True)
    prompt = speaker.library.prompts.get(message) or speaker.library.for_violation(message)
    if prompt is None:
        click.echo(f"no {message}.wav in any of {cfg.speaker.languages}", err=True)
        sys.exit(1)
    gain = speaker.volume_now() if volume is None else volume
    click.echo(f"device: {out.device_name!r} ({out.rate} Hz, {out.channels} ch)")
    for lang, f in zip(prompt.languages, prompt.files, strict=True):
        click.echo(f"  {lang}: {f}")
    t0 = time.monotonic()
    try:
        pb = out.play(prompt.samples * gain)
    except Exception as e:
        click.echo(f"playback FAILED: {e}", err=True)
        sys.exit(1)
    finally:
        out.close()
    click.echo(
        f"played {message} ({'+'.join(prompt.languages)}): {prompt.duration_s:.2f} s of audio, volume {gain:.2f}, "
        f"first buffer {1000 * (pb.start_mono - t0):.0f} ms after the call, finished after {pb.end_mono - t0:.2f} s"
    )
    local = ts.local_now().strftime("%H:%M")
    windows = (
        ", ".join(f"{w.start}-{w.end}" for w in cfg.time_switch.windows)
        if cfg.time_switch.enabled
        else "always"
    )
    state = "active" if ts.is_active_at(ts.clock()) else "QUIET (the daemon plays nothing now)"
    click.echo(f"time switch at {local} {cfg.device.timezone}: {state}; windows {windows}")


@click.command("test-lights")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Site config (default: built-in defaults).",
)
@click.option(
    "--on-time",
    "on_time",
    type=click.FloatRange(0.05, 60),
    default=1.0,
    show_default=True,
    help="Seconds each output stays on.",
)
@click.option("--output", "only", multiple=True, help="Only this output (repeatable), e.g. laser.")
def test_lights(config: Path | None, on_time: float, only: tuple[str, ...]) -> None:
    """Switch every configured light output on, then off, one after the other, and report the times."""
    from edge.actuators.lights import LightBoard, LightUnavailable

    cfg = config_or_exit(config, log_level="ERROR")
    lights = cfg.lights.model_copy(deep=True)
    if not lights.enabled:
        click.echo("note: lights.enabled is false in this config; testing the configured outputs anyway")
    try:
        lights.enabled = True
        if lights.backend == "none":
            raise click.ClickException("lights.backend is 'none': nothing to test")
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    unknown = [n for n in only if n not in lights.outputs]
    if unknown:
        raise click.ClickException(f"--output: no output {unknown} (configured: {sorted(lights.outputs)})")
    health = _health(cfg)
    board = LightBoard.from_config(lights, health)
    failed = [
        f"{k}: {c['detail']}" for k, c in health.snapshot()["components"].items() if c["status"] == "down"
    ]
    board.open()
    failed += [
        f"{k}: {c['detail']}"
        for k, c in health.snapshot()["components"].items()
        if c["status"] == "down" and f"{k}: {c['detail']}" not in failed
    ]
    for line in failed:
        click.echo(f"DOWN {line}", err=True)
    try:
        for name, out in board.outputs.items():
            if only and name not in only:
                continue
            if not board.is_ready(name):
                continue
            try:
                t0 = time.monotonic()
                out.on()
                t_on = time.monotonic()
                time.sleep(on_time)
                t1 = time.monotonic()
                out.off()
                t_off = time.monotonic()
            except LightUnavailable as e:
                click.echo(f"{name}: FAILED: {e}", err=True)
                failed.append(name)
                continue
            click.echo(
                f"{name}: {out.describe()}: on in {1000 * (t_on - t0):.1f} ms, held {t1 - t_on:.2f} s, off in {1000 * (t_off - t1):.1f} ms"
            )
    finally:
        board.close()
    if failed:
        sys.exit(1)
