"""What every ``anqi-edge`` subcommand needs: the site config, or a clear error and exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from anqi_contract.logs import setup_logging
from edge.config import ConfigError, EdgeConfig, load_config, parse_config


def config_or_exit(path: Path | None, log_level: str | None = None) -> EdgeConfig:
    """Load ``path`` (``None``: the built-in defaults); on a bad config print every problem and exit 2.

    ``log_level`` sets up logging first (self-test commands report failures themselves and pass "ERROR").
    """
    if log_level:
        setup_logging(log_level, sys.stderr)
    try:
        return load_config(path) if path else parse_config({})
    except ConfigError as e:
        click.echo(str(e), err=True)
        sys.exit(2)
