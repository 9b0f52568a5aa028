"""``anqi-central`` subcommands that run or administer the service (gathered by :mod:`central_sync.cli`)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from anqi_contract.logs import log, setup_logging
from central_sync.config import CentralConfig, ConfigError, load_config
from central_sync.tiers import parse_aware_time

if TYPE_CHECKING:
    from central_sync.storage.store import CentralStore

ConfigOpt = click.option(
    "--config",
    "config",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Central config (YAML).",
)


def _load(config: Path, level: str | None = None) -> CentralConfig:
    try:
        cfg = load_config(config)
    except ConfigError as e:
        click.echo(str(e), err=True)
        sys.exit(2)
    setup_logging(level or cfg.log_level, sys.stderr)
    return cfg


def _store(cfg: CentralConfig) -> CentralStore:
    from central_sync.storage.store import CentralStore, StoreError

    try:
        return CentralStore.from_config(cfg)
    except (StoreError, ConfigError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


def _time(value: str | None, option: str) -> datetime:
    if value is None:
        return datetime.now(timezone.utc)
    try:
        return parse_aware_time(value, option)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=option) from None


def _next_daily(now: datetime, hhmm: str, tz: str) -> datetime:
    h, m = map(int, hhmm.split(":"))
    local = now.astimezone(ZoneInfo(tz))
    t = local.replace(hour=h, minute=m, second=0, microsecond=0)
    if t <= local:
        t += timedelta(days=1)
    return t.astimezone(timezone.utc)


@click.command()
@ConfigOpt
def run(config: Path) -> None:
    """Run the MQTT consumer (and the daily re-evaluation and retention clean-up at dispositions.daily_reevaluate_at)
    until SIGTERM."""
    from central_sync.consumer import CentralConsumer, reevaluate_all

    cfg = _load(config)
    store = _store(cfg)
    try:
        consumer = CentralConsumer(cfg, store=store)
    except ConfigError as e:
        click.echo(str(e), err=True)
        sys.exit(2)
    from anqi_contract.notify import SystemdNotifier

    notifier = SystemdNotifier()  # the unit is Type=notify with a watchdog
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    consumer.start()
    notifier.ready("consuming" if consumer.connected else "waiting for the broker")
    due = _next_daily(datetime.now(timezone.utc), cfg.dispositions.daily_reevaluate_at, cfg.timezone)
    tick = min(5.0, notifier.watchdog_interval_s or 5.0)
    try:
        while not stop.wait(tick):
            now = datetime.now(timezone.utc)
            if now >= due:
                try:
                    reevaluate_all(store, cfg, consumer.desk, now)
                except Exception as e:  # noqa: BLE001 - retried tomorrow; the consumer keeps running
                    log(
                        logging.getLogger("anqi.central"),
                        "reevaluate_failed",
                        logging.ERROR,
                        error=str(e)[:300],
                    )
                try:
                    from central_sync.retention import apply_retention

                    apply_retention(store, cfg, now)
                except Exception as e:  # noqa: BLE001 - retried tomorrow; the consumer keeps running
                    log(
                        logging.getLogger("anqi.central"),
                        "retention_failed",
                        logging.ERROR,
                        error=str(e)[:300],
                    )
                due = _next_daily(now, cfg.dispositions.daily_reevaluate_at, cfg.timezone)
            st = consumer.stats
            notifier.notify(
                f"STATUS={'connected' if consumer.connected else 'broker unreachable'}; stored={st.events_stored} "
                f"dup={st.duplicates} rejected={st.rejected} errors={st.errors}"
            )
            notifier.watchdog()
    finally:
        notifier.stopping()
        consumer.stop()
        store.close()


@click.command()
@ConfigOpt
@click.option(
    "--at", "at", help="Evaluation time, ISO 8601 with offset (default: now). A dry run unless --write."
)
@click.option(
    "--write", is_flag=True, help="With --at: store the tiers and make the tasks (never for a future --at)."
)
def reevaluate(config: Path, at: str | None, write: bool) -> None:
    """Re-assess every person's tier at --at (the daily pass; without --at it writes). Tasks it makes are
    published by the running consumer at its next (re)connect; with a broker reachable they are published now.
    With --at it is a dry run (tiers and how many would change, nothing stored) unless --write is given."""
    from central_sync.consumer import reevaluate_all
    from central_sync.dispositions import DispositionDesk

    cfg = _load(config)
    when = _time(at, "--at")
    do_write = at is None or write
    if do_write and when > datetime.now(timezone.utc) + timedelta(minutes=5):
        raise click.BadParameter(
            f"{when.isoformat()} is in the future: tiers are never stored for a time to come (drop --write for a dry run)",
            param_hint="--at",
        )
    store = _store(cfg)
    counts = reevaluate_all(store, cfg, DispositionDesk(cfg, store), when, write=do_write)
    click.echo(json.dumps(counts))


@click.command()
@ConfigOpt
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="CSV: person_id,name,id_number,community,employer,phone,party_member,photos (photos ';'-separated, relative to the CSV).",
)
@click.option(
    "--folder",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="One sub-folder of photos per person (folder name = person id).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Enrol a person whose face matches another enrolled person anyway (flagged for review).",
)
def enrol(config: Path, csv_file: Path | None, folder: Path | None, force: bool) -> None:
    """Enrol gallery persons (face embeddings with the edge's own model); merges their unknown files."""
    from central_sync.identity import (
        EnrolmentError,
        edge_face_embedder,
        read_enrolment_csv,
        read_enrolment_folder,
    )
    from central_sync.persons import enrol as do_enrol
    from central_sync.persons import load_resolver

    if (csv_file is None) == (folder is None):
        raise click.UsageError("give exactly one of --csv or --folder")
    cfg = _load(config)
    store = _store(cfg)
    try:
        records, problems = read_enrolment_csv(csv_file) if csv_file else (read_enrolment_folder(folder), [])  # type: ignore[arg-type]
        embed = edge_face_embedder()
    except (EnrolmentError, FileNotFoundError, ImportError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    from central_sync.dispositions import DispositionDesk

    desk = DispositionDesk(
        cfg, store
    )  # tasks of a merged file's new tier: published by the consumer at reconnect

    def reassess(pid: str) -> None:
        desk.reassess(pid, datetime.now(timezone.utc))

    rep = do_enrol(store, cfg, load_resolver(store, cfg), records, embed, on_merged=reassess, force=force)
    for p in problems + rep.problems + rep.review:
        click.echo(p, err=True)
    click.echo(
        json.dumps(
            {
                "enrolled": rep.enrolled,
                "photos": rep.photos,
                "photos_without_face": rep.photos_without_face,
                "merged_unknown_files": rep.merged_unknown_files,
                "problems": len(problems) + len(rep.problems),
                "review": len(rep.review),
            }
        )
    )


@click.group()
def token() -> None:
    """API tokens for the data-sharing interface (stored hashed; shown once)."""


@token.command("create")
@ConfigOpt
@click.option("--name", required=True)
@click.option("--role", required=True, help="A role of api.roles (admin, police, analyst, community, ...).")
@click.option("--community", help="For roles that see only their own community.")
@click.option(
    "--expires-days", type=float, help="Validity in days (default api.token_days); refused (401) after it."
)
def token_create(
    config: Path, name: str, role: str, community: str | None, expires_days: float | None
) -> None:
    from central_sync.sharing.access import create_token

    cfg = _load(config, "WARNING")
    try:
        click.echo(create_token(_store(cfg), cfg, name, role, community, expires_days))
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


@token.command("rotate")
@ConfigOpt
@click.option("--name", required=True)
@click.option(
    "--expires-days", type=float, help="Validity of the new secret in days (default api.token_days)."
)
def token_rotate(config: Path, name: str, expires_days: float | None) -> None:
    """A new secret for a token (same name, role and community; the old secret is revoked at once). Printed once."""
    from central_sync.sharing.access import rotate_token

    cfg = _load(config, "WARNING")
    try:
        click.echo(rotate_token(_store(cfg), cfg, name, expires_days))
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


@token.command("list")
@ConfigOpt
def token_list(config: Path) -> None:
    """One JSON line per token: name, role, community, created_at, revoked_at, expires_at, expired (never the
    secret)."""
    from central_sync.sharing.access import list_tokens

    cfg = _load(config, "WARNING")
    for t in list_tokens(_store(cfg)):
        click.echo(json.dumps(t, ensure_ascii=False))


@token.command("revoke")
@ConfigOpt
@click.option("--name", required=True)
def token_revoke(config: Path, name: str) -> None:
    from central_sync.sharing.access import revoke_token

    cfg = _load(config, "WARNING")
    if not revoke_token(_store(cfg), name):
        click.echo(f"error: no active token named {name!r}", err=True)
        sys.exit(1)
    click.echo(f"revoked {name}")


@click.command()
@ConfigOpt
@click.option("--person", "person_id", required=True)
@click.option(
    "--kind",
    required=True,
    type=click.Choice(
        [
            "education",
            "fine",
            "sms_reminder",
            "voice_reminder",
            "public_notice",
            "credit_deduction",
            "party_index_deduction",
            "home_visit",
            "case_study_link",
        ]
    ),
)
@click.option("--time", "when", required=True, help="When it was carried out, ISO 8601 with offset.")
@click.option("--note")
def dispose(config: Path, person_id: str, kind: str, when: str, note: str | None) -> None:
    """Record a disposition carried out outside the task flow (e.g. a fine on the spot)."""
    from central_sync.dispositions import DispositionKind, record_disposition

    cfg = _load(config, "WARNING")
    try:
        target = record_disposition(
            _store(cfg), person_id, DispositionKind(kind), _time(when, "--time"), note
        )
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    via = f" (file {person_id} is merged into {target})" if target != person_id else ""
    click.echo(f"recorded {kind} for {target}{via}")


@click.command()
@ConfigOpt
@click.option(
    "--status",
    "status",
    default="open",
    show_default=True,
    type=click.Choice(["open", "done", "failed", "cancelled", "all"]),
)
@click.option(
    "--older-than-days",
    type=float,
    default=0.0,
    show_default=True,
    help="Only tasks created at least this long ago (overdue cases).",
)
def tasks(config: Path, status: str, older_than_days: float) -> None:
    """List disposition tasks as JSON lines (every case must close: audit the open and overdue ones)."""
    from sqlalchemy import select

    from central_sync.storage.models import Task

    cfg = _load(config, "WARNING")
    store = _store(cfg)
    q = select(Task).where(Task.created_at <= datetime.now(timezone.utc) - timedelta(days=older_than_days))
    if status != "all":
        q = q.where(Task.status == status)
    with store.session() as s:
        for t in s.scalars(q.order_by(Task.created_at)):
            click.echo(
                json.dumps(
                    {
                        "task_id": t.task_id,
                        "person_id": t.person_id,
                        "kind": t.kind,
                        "tier": t.tier,
                        "status": t.status,
                        "created_at": t.created_at.isoformat(),
                        "published": t.published_at is not None,
                        "closed_at": t.closed_at.isoformat() if t.closed_at else None,
                        "outcome": t.outcome,
                    }
                )
            )


@click.command("lfw-eval")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--enrol-per-person", default=3, show_default=True)
def lfw_eval(directory: Path, enrol_per_person: int) -> None:
    """Face matching accuracy on an LFW-style folder: TAR at FAR 1e-3 and rank-1 (JSON)."""
    from central_sync.identity import evaluate_lfw

    setup_logging("WARNING", sys.stderr)
    try:
        click.echo(json.dumps(evaluate_lfw(directory, enrol_per_person)))
    except (ImportError, FileNotFoundError, RuntimeError) as e:
        click.echo(f"error: face models unavailable: {e} (run: anqi-edge models prepare)", err=True)
        sys.exit(2)


@click.command()
@ConfigOpt
@click.option("--from", "start", required=True, help="First day YYYY-MM-DD (local) or ISO time with offset.")
@click.option(
    "--to", "end", required=True, help="Last day YYYY-MM-DD (inclusive) or ISO time with offset (exclusive)."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the CSV files and report.html.",
)
def report(config: Path, start: str, end: str, out: Path) -> None:
    """Frequency statistics per person, point, date and count band: CSV + HTML."""
    from central_sync.report import frequency_statistics, write_report
    from central_sync.sharing.queries import parse_range

    cfg = _load(config, "WARNING")
    try:
        s, e = parse_range(start, end, cfg.timezone)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    stats = frequency_statistics(_store(cfg), s, e, cfg.timezone)
    for p in write_report(stats, out, cfg.timezone):
        click.echo(str(p))


@click.command()
@ConfigOpt
def serve(config: Path) -> None:
    """Serve the data-sharing API (HTTP + SOAP, OpenAPI docs at /docs) on api.host:api.port."""
    import uvicorn

    from central_sync.sharing.http import create_app

    cfg = _load(config)
    a = cfg.api
    cert = str(cfg.resolve(a.tls_cert_file)) if a.tls_cert_file else None
    key = str(cfg.resolve(a.tls_key_file)) if a.tls_key_file else None
    tls = cert is not None and key is not None
    if not tls and a.host not in ("127.0.0.1", "::1", "localhost"):
        log(
            logging.getLogger("anqi.central"),
            "api_without_tls",
            logging.WARNING,
            host=a.host,
            hint="set api.tls_cert_file / tls_key_file or keep api.host on loopback behind a TLS proxy",
        )
    # no access log: its request line would carry any token put in a query string; every API request is in
    # audit_log instead (without secrets)
    uvicorn.run(
        create_app(cfg, _store(cfg)),
        host=a.host,
        port=a.port,
        log_config=None,
        access_log=False,
        ssl_certfile=cert,
        ssl_keyfile=key,
    )


COMMANDS = [run, reevaluate, enrol, token, dispose, tasks, lfw_eval, report, serve]
