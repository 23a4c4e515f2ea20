"""What every `mlflow-gateway` subcommand shares: settings or a clean exit, the data-dir option."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from gateway.config import ConfigError, Settings, load_settings

EXIT_CONFIG = 2

data_dir_option = click.option(
    "--data-dir",
    envvar="GATEWAY_DATA_DIR",
    type=click.Path(file_okay=False),
    help="Data directory (default ./data); the database is GATEWAY_DATABASE_URL if set.",
)


def fail_config(problems: list[str]) -> NoReturn:
    """Every configuration problem printed, then exit 2 (never a traceback)."""
    click.echo("mlflow-gateway: the configuration has problems:", err=True)
    for problem in problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(EXIT_CONFIG)


def load_or_exit(**overrides: Any) -> Settings:
    """The settings with ``overrides`` (None: not overridden), or `fail_config`."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        fail_config(exc.problems)


def settings_or_exit(data_dir: str | None) -> Settings:
    """The settings for a command with the data-dir option, or `fail_config`."""
    return load_or_exit(data_dir=Path(data_dir) if data_dir else None)
