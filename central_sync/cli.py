"""``anqi-central``: the central office's command line.

``classify`` (table 1 for a JSONL file), ``migrate``, ``run`` (the MQTT consumer), ``reevaluate``
(the daily pass), ``enrol`` (gallery), ``report`` (frequency statistics), ``serve`` (HTTP + SOAP
data sharing), ``token`` (API tokens), ``lfw-eval`` (face matching accuracy).
Logs go to stderr (logfmt); results to stdout.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy.exc import SQLAlchemyError

from anqi_contract.logs import setup_logging
from central_sync.config import CentralConfig, ConfigError, load_config
from central_sync.tiers import parse_aware_time

if TYPE_CHECKING:
    from central_sync.storage.store import CentralStore


def _cfg(path: Path | None) -> CentralConfig:
    if path is None:
        return CentralConfig()
    try:
        return load_config(path)
    except ConfigError as e:
        click.echo(str(e), err=True)
        sys.exit(2)


def _time(value: str, option: str) -> datetime:
    try:
        return parse_aware_time(value, option)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=option) from None


def _store(cfg: CentralConfig) -> CentralStore:
    from central_sync.storage.store import CentralStore, StoreError

    try:
        return CentralStore.from_config(cfg)
    except (StoreError, ConfigError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """AnQi central office: consumer, one person one file, offender tiers, dispositions, data sharing."""


@main.command()
@click.option(
    "--events",
    "events",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSONL: events (person_id or embedding, violation_type, time) and disposition records.",
)
@click.option(
    "--at", "at", required=True, help="Evaluation time, ISO 8601 with offset, e.g. 2026-06-01T00:00:00+08:00."
)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Central config (tier thresholds, face thresholds).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 2 when any input line is bad (default: report on stderr and skip it).",
)
@click.option(
    "--use-gallery",
    is_flag=True,
    help="Match embeddings against the gallery in --config's database (read only).",
)
def classify(events: Path, at: str, config: Path | None, strict: bool, use_gallery: bool) -> None:
    """Print one JSON line per person: person_id, count_7d, count_30d, count_365d, tier (table 1)."""
    from central_sync.classify import classify_file

    setup_logging("WARNING", sys.stderr)
    at_t = _time(at, "--at")
    cfg = _cfg(config)
    if not events.is_file():
        click.echo(f"error: --events {events}: file not found", err=True)
        sys.exit(2)
    gallery = None
    if use_gallery:
        if config is None:
            raise click.UsageError("--use-gallery needs --config")
        from central_sync.storage.store import CentralStore, StoreError

        try:
            gallery = CentralStore(cfg.database_url())
        except (StoreError, ConfigError) as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
    try:
        results, info = classify_file(events, at_t, cfg, gallery_from=gallery)
    except UnicodeDecodeError as e:
        click.echo(f"error: --events {events}: not UTF-8 text ({e.reason} at byte {e.start})", err=True)
        sys.exit(2)
    except SQLAlchemyError as e:
        click.echo(
            f"error: --use-gallery: cannot read the gallery of database.url in {config}: {type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]} (run: anqi-central migrate --config {config})",
            err=True,
        )
        sys.exit(2)
    for p in info.problems:
        click.echo(p, err=True)
    for r in results:
        line = r.as_json()
        if r.person_id in info.int_ids:  # ids given as JSON numbers come back as numbers
            line["person_id"] = int(r.person_id)
        click.echo(json.dumps(line, ensure_ascii=False))
    if info.problems:
        click.echo(f"{len(info.problems)} bad line(s) skipped", err=True)
        if strict:
            sys.exit(2)


@main.command()
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), help="Central config.")
def migrate(config: Path | None) -> None:
    """Create or upgrade the database schema (the service also does this at start)."""
    cfg = _cfg(config)
    setup_logging(cfg.log_level, sys.stderr)
    _store(cfg)
    click.echo("schema is up to date")


def _register() -> None:
    from central_sync.cli_persons import COMMANDS as PERSONS
    from central_sync.cli_privacy import COMMANDS as PRIVACY
    from central_sync.cli_service import COMMANDS
    from central_sync.cli_web import COMMANDS as WEB
    from central_sync.web.demo import demo

    for cmd in [*COMMANDS, *PERSONS, *PRIVACY, *WEB, demo]:
        main.add_command(cmd)


_register()
logging.getLogger("alembic").setLevel(logging.WARNING)

if __name__ == "__main__":
    main()
