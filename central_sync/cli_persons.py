"""``anqi-central`` subcommands that correct person files (gathered by :mod:`central_sync.cli`): ``unmerge``,
``reassign``, ``changes`` (the record of merges and corrections), ``review`` (uncertain face matches)."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from central_sync.cli_service import ConfigOpt, _load, _store

By = click.option("--by", "actor", required=True, help="The officer making the correction (recorded).")
Reason = click.option("--reason", required=True, help="Why (recorded with the change).")


def _desk(cfg, store):  # type: ignore[no-untyped-def]
    from central_sync.dispositions import DispositionDesk

    # tasks made or withdrawn here are published by the running consumer (publish_pending)
    return DispositionDesk(cfg, store)


@click.command()
@ConfigOpt
@click.option("--person", "person_id", required=True, help="The unknown file that was merged by mistake.")
@By
@Reason
def unmerge(config: Path, person_id: str, actor: str, reason: str) -> None:
    """Undo a merge: the rows it moved go back to the unknown file; tiers recomputed, tasks the wrong rows caused
    withdrawn. Prints the change as JSON."""
    from central_sync.corrections import CorrectionError
    from central_sync.corrections import unmerge as do_unmerge

    cfg = _load(config, "WARNING")
    store = _store(cfg)
    try:
        c = do_unmerge(store, cfg, _desk(cfg, store), person_id, actor, reason, datetime.now(timezone.utc))
    except CorrectionError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(json.dumps(c.as_json(), ensure_ascii=False))


@click.command()
@ConfigOpt
@click.option("--event", "events", required=True, multiple=True, help="Event id (repeat for several).")
@click.option("--to", "to", required=True, help="The right person's id, or 'new' for a new unknown file.")
@By
@Reason
def reassign(config: Path, events: tuple[str, ...], to: str, actor: str, reason: str) -> None:
    """Move wrongly matched events (and their faces) to the right person; tiers recomputed, tasks the wrong match
    caused withdrawn. Prints the change as JSON."""
    from central_sync.corrections import CorrectionError, reassign_events

    cfg = _load(config, "WARNING")
    store = _store(cfg)
    try:
        c = reassign_events(
            store, cfg, _desk(cfg, store), list(events), to, actor, reason, datetime.now(timezone.utc)
        )
    except CorrectionError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(json.dumps(c.as_json(), ensure_ascii=False))


@click.command()
@ConfigOpt
@click.option("--person", "person_id", help="Only the changes of this person file.")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 100_000))
def changes(config: Path, person_id: str | None, limit: int) -> None:
    """Merges, unmerges and reassignments, newest first, one JSON line each (who, when, why, what moved)."""
    from central_sync.corrections import changes as list_changes

    cfg = _load(config, "WARNING")
    for row in list_changes(_store(cfg), person_id, limit):
        click.echo(json.dumps(row, ensure_ascii=False))


@click.command("audit")
@ConfigOpt
@click.option("--person", "person_id", help="Only the entries whose answer carried this person's data.")
@click.option(
    "--days", default=30.0, show_default=True, type=click.FloatRange(0, 36500), help="How far back."
)
@click.option(
    "--status", "min_status", type=int, help="Only entries with at least this HTTP status (e.g. 400)."
)
def audit_log(config: Path, person_id: str | None, days: float, min_status: int | None) -> None:
    """The audit log as JSON lines, oldest first: who asked what, the status, how many rows and which persons."""
    from datetime import timedelta

    from sqlalchemy import select

    from central_sync.storage.models import AuditEntry

    cfg = _load(config, "WARNING")
    store = _store(cfg)
    q = select(AuditEntry).where(AuditEntry.time >= datetime.now(timezone.utc) - timedelta(days=days))
    if person_id:
        q = q.where(AuditEntry.persons.is_not(None))
    if min_status is not None:
        q = q.where(AuditEntry.status >= min_status)
    with store.session() as s:
        for a in s.scalars(q.order_by(AuditEntry.id).execution_options(yield_per=1000)):
            if person_id and person_id not in (a.persons or []):
                continue
            click.echo(
                json.dumps(
                    {
                        "time": a.time.isoformat(),
                        "actor": a.actor,
                        "role": a.role,
                        "action": a.action,
                        "status": a.status,
                        "rows": a.rows,
                        "persons": a.persons or [],
                        "client": a.client,
                        "params": a.params,
                    },
                    ensure_ascii=False,
                )
            )


@click.group()
def review() -> None:
    """Face matches to look at: enrolments forced past a face conflict, events matched while another person was
    almost as close."""


@review.command("list")
@ConfigOpt
@click.option("--all", "show_all", is_flag=True, help="Cleared reviews too.")
@click.option("--person", "person_id", help="Only the reviews naming this person (either side).")
def review_list(config: Path, show_all: bool, person_id: str | None) -> None:
    """One JSON line per review, oldest first."""
    from central_sync.reviews import list_reviews

    cfg = _load(config, "WARNING")
    for r in list_reviews(_store(cfg), open_only=not show_all, person_id=person_id):
        click.echo(json.dumps(r, ensure_ascii=False))


@review.command("clear")
@ConfigOpt
@click.option("--id", "review_id", required=True, type=int)
@By
@click.option(
    "--resolution",
    required=True,
    type=click.Choice(["confirmed", "dismissed"]),
    help="What the officer found.",
)
@click.option("--note", help="Recorded with the review.")
def review_clear(config: Path, review_id: int, actor: str, resolution: str, note: str | None) -> None:
    """Clear a review (a wrong match is moved with 'anqi-central reassign', which clears its review)."""
    from central_sync.reviews import ReviewError, clear_review

    cfg = _load(config, "WARNING")
    try:
        clear_review(_store(cfg), review_id, actor, resolution, note)
    except ReviewError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(f"review {review_id} cleared as {resolution}")


COMMANDS = [unmerge, reassign, changes, audit_log, review]
