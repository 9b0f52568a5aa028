"""``anqi-central`` commands of the web faces: ``web-user add`` (an officer's account: the first administrator
is made here, later ones in the console, granted at or below the granter's role) and ``kiosk create`` (the
big screen's read-only token; prints the cockpit's address)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from central_sync.cli_service import ConfigOpt, _load, _store


@click.group("web-user")
def web_user() -> None:
    """Officers' console accounts."""


@web_user.command("add")
@ConfigOpt
@click.option("--username", required=True)
@click.option(
    "--role",
    required=True,
    type=click.Choice(["admin", "police", "community", "readonly"]),
    help="admin / police (交警) / community (社区工作者) / readonly.",
)
@click.option(
    "--communities", default="", help="Comma-separated communities the account is scoped to (empty: all)."
)
@click.option(
    "--password-env",
    default=None,
    help="Environment variable holding the password (else it is asked for, twice, without echo).",
)
def web_user_add(config: Path, username: str, role: str, communities: str, password_env: str | None) -> None:
    """Create an account (argon2id hash; at least 10 characters). Never takes the password as an argument."""
    from central_sync.web import auth

    if password_env:
        password = os.environ.get(password_env)
        if not password:
            click.echo(f"error: --password-env {password_env}: not set or empty", err=True)
            sys.exit(2)
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    cfg = _load(config)
    store = _store(cfg)
    try:
        comms = [c.strip() for c in communities.replace("，", ",").split(",") if c.strip()]
        auth.add_user(store, username, password, role, comms)
    except (ValueError, PermissionError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    finally:
        store.close()
    click.echo(f"account {username} ({role}{', ' + ','.join(comms) if comms else ''}) created")


@click.group("kiosk")
def kiosk() -> None:
    """Read-only tokens of the cockpit's big screens."""


@kiosk.command("create")
@ConfigOpt
@click.option("--name", required=True, help="Which screen (unique), e.g. big-screen-hall.")
def kiosk_create(config: Path, name: str) -> None:
    """Make a kiosk token and print the cockpit's address with it (shown once; only its hash is kept)."""
    from sqlalchemy.exc import IntegrityError

    from central_sync.web import auth

    cfg = _load(config)
    store = _store(cfg)
    try:
        token = auth.create_kiosk_token(store, name)
    except IntegrityError:
        click.echo(f"error: --name {name!r}: a kiosk token of that name exists", err=True)
        sys.exit(2)
    finally:
        store.close()
    base = cfg.api.public_url or f"http://{cfg.api.host}:{cfg.api.port}"
    click.echo(f"{base.rstrip('/')}/cockpit?token={token}")


COMMANDS = [web_user, kiosk]
