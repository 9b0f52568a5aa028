"""``anqi-central`` privacy commands: ``seal-keygen`` (the key pair devices seal evidence to), ``retention``
(the daily clean-up of data past its retention) and ``erase --person`` (a person's file and media, audited)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from central_sync.cli_service import ConfigOpt, _load, _store  # noqa: F401 - shared CLI helpers


@click.command("seal-keygen")
@click.option(
    "--id", "key_id", required=True, help="Key id (e.g. c2026a); devices name it in privacy.seal.key_id."
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for <id>.key (private, mode 600: install as the systemd credential seal-key-<id>) and <id>.pub.",
)
def seal_keygen(key_id: str, out: Path) -> None:
    """Make a sealing key pair: the public key goes into every device's privacy.seal, the private one stays here."""
    import re

    from anqi_contract.sealed import KEY_ID_PATTERN, generate_keypair

    if not re.match(KEY_ID_PATTERN, key_id):
        raise click.BadParameter(f"must match {KEY_ID_PATTERN}", param_hint="--id")
    out.mkdir(parents=True, exist_ok=True)
    priv, pub = out / f"{key_id}.key", out / f"{key_id}.pub"
    if priv.exists():
        click.echo(f"error: {priv} exists; a key is never overwritten", err=True)
        sys.exit(2)
    sk, pk = generate_keypair()
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(sk + "\n")
    pub.write_text(pk + "\n")
    click.echo(f"privacy:\n  seal:\n    key_id: {key_id}\n    public_key: {pk}")


@click.command("broker-acl")
@ConfigOpt
@click.option(
    "--base",
    "base",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The role part of the ACL (config/mosquitto/acl).",
)
def broker_acl(config: Path, base: Path) -> None:
    """Print the broker's ACL: the roles of --base plus one block per registered device (its one site)."""
    cfg = _load(config)
    if not cfg.devices:
        click.echo(f"error: {config}: devices: the device registry is empty", err=True)
        sys.exit(2)
    prefix = cfg.mqtt.topic_prefix.strip("/")
    out = [base.read_text(encoding="utf-8").rstrip("\n")]
    for d in cfg.devices:
        root = f"{prefix}/{d.site_id}/{d.device_id}"
        out += ["", f"user {d.device_id}"]
        out += [f"topic write {root}/{k}" for k in ("event", "media/#", "status", "heartbeat")]
        out.append(f"topic read {root}/ack")
    click.echo("\n".join(out))


@click.command("retention")
@ConfigOpt
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
def retention(config: Path, dry_run: bool) -> None:
    """Remove data past its retention (retention: in the config); one log line per kind, one audit entry."""
    from datetime import datetime, timezone

    from central_sync.retention import apply_retention

    cfg = _load(config)
    store = _store(cfg)
    try:
        rep = apply_retention(store, cfg, datetime.now(timezone.utc), dry_run=dry_run)
    finally:
        store.close()
    click.echo(
        f"{'would remove' if dry_run else 'removed'}: {rep.media_files} media file(s) ({rep.media_bytes} bytes), "
        f"{rep.events} event(s), {rep.unknown_persons} unknown-person file(s), {rep.audit_entries} audit entr(ies)"
    )


@click.command("erase")
@ConfigOpt
@click.option(
    "--person", "person_id", required=True, help="Person file id to erase (with the files merged into it)."
)
@click.option("--by", "by", required=True, help="Who orders the erasure (kept in the audit log).")
@click.option("--reason", default="", help="e.g. the request's reference (no personal data).")
def erase(config: Path, person_id: str, by: str, reason: str) -> None:
    """Erase a person's file, embeddings, events, evidence files, tasks and dispositions; audited."""
    from central_sync.retention import erase_person

    cfg = _load(config)
    store = _store(cfg)
    try:
        rep = erase_person(store, cfg, person_id, by, reason)
    finally:
        store.close()
    if rep is None:
        click.echo(f"error: no person file {person_id!r}", err=True)
        sys.exit(1)
    click.echo(
        f"erased {person_id} (+{len(rep.person_ids) - 1} merged file(s)): {rep.events} event(s), "
        f"{rep.media_files} media file(s), {rep.embeddings} embedding(s), {rep.tasks} task(s), "
        f"{rep.dispositions} disposition(s); audit entry written"
    )


COMMANDS = [seal_keygen, broker_acl, retention, erase]
