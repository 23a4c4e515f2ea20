"""The `mlflow-gateway` command: `serve`, `dev`, and the commands of the modules beside this one."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from gateway import __version__, event_loop
from gateway.cli import accounts, approvals, audit, doctor, policy, routes
from gateway.cli.common import fail_config, load_or_exit
from gateway.config import check_serve_settings, exposure_problems


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

    settings = load_or_exit()
    problems = check_serve_settings(settings)
    if problems:
        fail_config(problems)
    _setup_logging(settings.log_level)
    event_loop.run(serve_forever(settings), settings.event_loop)


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

    settings = load_or_exit(port=port, data_dir=data_dir)
    problems = exposure_problems(settings)
    if problems:
        fail_config(problems)
    _setup_logging(settings.log_level)
    redis_configured = any(
        name in os.environ for name in ("GATEWAY_REDIS_URL", "GATEWAY_REDIS_URL_FILE")
    )
    sys.exit(
        event_loop.run(
            run_dev_stack(
                settings, redis_configured=redis_configured, mlflow_workers=mlflow_workers
            ),
            settings.event_loop,
        )
    )


for command in (
    accounts.users,
    accounts.groups,
    accounts.tokens,
    policy.policy,
    audit.audit,
    approvals.approvals,
    doctor.doctor,
    routes.routes,
):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
