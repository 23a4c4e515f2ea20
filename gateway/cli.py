"""The `mlflow-gateway` command."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from gateway import __version__
from gateway.cli_accounts import groups, tokens, users
from gateway.cli_audit import audit
from gateway.cli_doctor import doctor
from gateway.cli_policy import policy
from gateway.config import (
    ConfigError,
    Settings,
    check_serve_settings,
    exposure_problems,
    load_settings,
)

EXIT_CONFIG = 2


def _fail_config(problems: list[str]) -> NoReturn:
    click.echo("mlflow-gateway: the configuration has problems:", err=True)
    for problem in problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(EXIT_CONFIG)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        _fail_config(exc.problems)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


@click.group()
@click.version_option(__version__, prog_name="mlflow-gateway")
def main() -> None:
    """mlflow-gateway: authentication, authorization and audit in front of MLflow."""


@main.command()
def serve() -> None:
    """Run the gateway alone, in front of GATEWAY_UPSTREAM_URL."""
    from gateway.server import serve_forever

    settings = _settings()
    problems = check_serve_settings(settings)
    if problems:
        _fail_config(problems)
    _setup_logging(settings.log_level)
    asyncio.run(serve_forever(settings))


@main.command()
@click.option("--port", type=click.IntRange(1, 65535), help="Gateway port (default 5000).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where MLflow's database and artifacts, Redis and the gateway keep data (default ./data).",
)
@click.option(
    "--mlflow-workers",
    type=click.IntRange(1, 16),
    default=2,
    show_default=True,
    help="Worker processes of the internal MLflow server.",
)
def dev(port: int | None, data_dir: Path | None, mlflow_workers: int) -> None:
    """Run the whole local stack: MLflow, Redis and the gateway, in the foreground."""
    from gateway.devstack import run_dev_stack

    settings = _settings(port=port, data_dir=data_dir)
    problems = exposure_problems(settings)
    if problems:
        _fail_config(problems)
    _setup_logging(settings.log_level)
    redis_configured = any(
        name in os.environ for name in ("GATEWAY_REDIS_URL", "GATEWAY_REDIS_URL_FILE")
    )
    sys.exit(
        asyncio.run(
            run_dev_stack(
                settings, redis_configured=redis_configured, mlflow_workers=mlflow_workers
            )
        )
    )


main.add_command(users)
main.add_command(groups)
main.add_command(tokens)
main.add_command(policy)
main.add_command(audit)
main.add_command(doctor)


if __name__ == "__main__":  # pragma: no cover
    main()
