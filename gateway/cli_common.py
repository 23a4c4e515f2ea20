"""What every `mlflow-gateway` subcommand shares: settings or a clean exit, the data-dir option."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gateway.config import ConfigError, Settings, load_settings

EXIT_CONFIG = 2

data_dir_option = click.option(
    "--data-dir",
    envvar="GATEWAY_DATA_DIR",
    type=click.Path(file_okay=False),
    help="Data directory (default ./data); the database is GATEWAY_DATABASE_URL if set.",
)


def settings_or_exit(data_dir: str | None) -> Settings:
    """The settings, or every configuration problem printed and exit 2 (never a traceback)."""
    try:
        return load_settings(data_dir=Path(data_dir) if data_dir else None)
    except ConfigError as exc:
        click.echo("mlflow-gateway: the configuration has problems:", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(EXIT_CONFIG)
