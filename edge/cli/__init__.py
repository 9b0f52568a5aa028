"""``anqi-edge``: the installer's and the maintainer's command line.

Every CLI module lives in this package (no stage package holds one); subcommands are gathered here:
``pipeline.py`` (run, replay, calibrate), ``detect.py`` (detect-images, models), ``camera.py``
(test-camera), ``actuators.py`` (test-speaker, test-lights), ``common.py`` (shared option handling).
Only this package imports the set-up tooling of :mod:`anqi_tools` (``models prepare``).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from anqi_contract.paths import project_home
from edge import __version__
from edge.cli.common import config_or_exit
from edge.config import load_config

DEFAULT_CONFIG = Path("/etc/anqi/edge.yaml")  # where the systemd unit's config lives


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="anqi-edge")
def main() -> None:
    """AnQi roadside appliance: detect e-bike violations, persuade on the spot, relay evidence."""


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default="edge.yaml")
@click.option("--device-id", default="anqi-dev-0001", help="Id of this appliance (used in MQTT topics).")
@click.option("--site-id", default="huzhou-demo")
@click.option("--point-id", default="point-1")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, device_id: str, site_id: str, point_id: str, force: bool) -> None:
    """Write a commented config for a new site to PATH."""
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; use --force to overwrite")
    text = (project_home() / "config" / "edge.example.yaml").read_text(encoding="utf-8")
    text = (
        text.replace("anqi-dev-0001", device_id).replace("huzhou-demo", site_id).replace("point-1", point_id)
    )
    path.write_text(text, encoding="utf-8")
    load_config(path)  # the template must itself be valid
    click.echo(f"wrote {path}; edit source, zone and relay, then run: anqi-edge validate {path}")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
def validate(config: Path) -> None:
    """Check CONFIG and every file, model, prompt and pin it names, without starting anything."""
    from edge.validate import check_all

    cfg = config_or_exit(config)
    problems = check_all(cfg)
    if problems:
        for p in problems:
            click.echo(f"{config.name}: {p}", err=True)
        click.echo(f"{len(problems)} problem(s) found", err=True)
        sys.exit(1)
    click.echo(f"{config.name}: OK")


@main.command()
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Site config (finds the health file in its data_dir).",
)
@click.option(
    "--health-file", type=click.Path(dir_okay=False, path_type=Path), help="Read this health file directly."
)
@click.option(
    "--max-age", default=90.0, show_default=True, help="Seconds after which a heartbeat counts as stale."
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw health JSON.")
def status(config: Path | None, health_file: Path | None, max_age: float, as_json: bool) -> None:
    """Show the daemon's last heartbeat and the state of each component (exit 1 if stale or down)."""
    from edge.health import read_health

    if health_file is None:
        if config is None and not DEFAULT_CONFIG.exists():
            raise click.ClickException(f"no --config given and {DEFAULT_CONFIG} does not exist")
        health_file = config_or_exit(config or DEFAULT_CONFIG).data_dir / "health.json"
    if not health_file.exists():
        click.echo(f"no health file at {health_file}: the daemon has not run with this config", err=True)
        sys.exit(1)
    h = read_health(health_file)
    if as_json:
        click.echo(json.dumps(h, indent=2))
    age = time.time() - datetime.fromisoformat(h["heartbeat"]).timestamp()
    bad = age > max_age
    from edge.health import daemon_running

    if daemon_running(h) is False:
        bad = True
        click.echo(f"daemon NOT RUNNING: pid {h.get('pid')} of the health file is gone", err=True)
    if config is not None or health_file.parent.joinpath("outbox").is_dir():
        from edge.relay.outbox import lost_evidence, outbox_root

        outbox_dir = health_file.parent / "outbox"
        if config is not None:
            cfg = config_or_exit(config)
            outbox_dir = outbox_root(cfg.relay.outbox, cfg.data_dir, cfg.base_dir)
        for line in lost_evidence(outbox_dir):
            bad = True
            click.echo(f"LOST: {line}", err=True)
    if not as_json:
        click.echo(
            f"device {h['device_id']}  heartbeat {h['heartbeat']} ({age:.0f} s ago{', STALE' if bad else ''})  uptime {h['uptime_s']:.0f} s"
        )
        for name, c in sorted(h.get("components", {}).items()):
            extra = " ".join(f"{k}={v}" for k, v in c.items() if k not in ("status", "detail", "since"))
            click.echo(f"  {name:<10} {c['status']:<9} {c.get('detail', '')} {extra}".rstrip())
        for k, msg in h.get("alarms", {}).items():
            click.echo(f"  ALARM {k}: {msg}")
    # alarms the daemon could not put in health.json (a full disk): the beacon it overwrites in place
    from edge.relay import read_beacon

    beacon = read_beacon(health_file.parent)
    if beacon is not None and beacon.get("at", "") >= h.get("heartbeat", ""):
        bad = True
        for k, msg in beacon["alarms"].items():
            if k not in h.get("alarms", {}):
                click.echo(f"  ALARM {k}: {msg} (from {health_file.parent / 'health.alarm'}, {beacon['at']})")
    if bad or any(c["status"] == "down" for c in h.get("components", {}).values()) or h.get("alarms"):
        sys.exit(1)


@main.command()
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout."
)
def schema(out: Path | None) -> None:
    """Print the JSON Schema of the violation event (shared with central_sync)."""
    from anqi_contract.event import json_schema

    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if out:
        out.write_text(text)
    else:
        click.echo(text, nl=False)


def _register() -> None:
    from edge.cli.actuators import test_lights, test_speaker
    from edge.cli.camera import test_camera
    from edge.cli.detect import detect_images, models
    from edge.cli.pipeline import calibrate, replay, run

    for cmd in (run, replay, calibrate, detect_images, models, test_speaker, test_lights, test_camera):
        main.add_command(cmd)


_register()
