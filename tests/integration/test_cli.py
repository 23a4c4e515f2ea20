"""The console script as an operator meets it: bad settings, unsafe exposure."""

from __future__ import annotations

import os

from tests.helpers import run_cli


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(values)
    return env


def test_bad_configuration_lists_every_problem_without_a_traceback() -> None:
    result = run_cli(
        "serve",
        env=_env(
            GATEWAY_PORT="abc",
            GATEWAY_UPSTREAM_URL="ftp://x",
            GATEWAY_REDIS_URL="nope",
            GATEWAY_DATABASE_URL="postgresql://gw:hunter2@db/gw",
            GATEWAY_DATABASE_URL_FILE="/nonexistent",
        ),
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for name in (
        "GATEWAY_PORT",
        "GATEWAY_UPSTREAM_URL",
        "GATEWAY_REDIS_URL",
        "GATEWAY_DATABASE_URL",
    ):
        assert name in result.stderr
    assert "hunter2" not in result.stderr


def test_serve_without_upstream_says_what_to_set() -> None:
    result = run_cli("serve", env=_env())
    assert result.returncode == 2
    assert "GATEWAY_UPSTREAM_URL is not set" in result.stderr


def test_serve_refuses_to_listen_on_the_network_before_authentication_exists() -> None:
    result = run_cli(
        "serve", env=_env(GATEWAY_HOST="0.0.0.0", GATEWAY_UPSTREAM_URL="http://127.0.0.1:1")
    )
    assert result.returncode == 2
    assert "without authentication" in result.stderr
    assert "GATEWAY_HOST=127.0.0.1" in result.stderr


def test_dev_refuses_to_listen_on_the_network_too() -> None:
    result = run_cli("dev", "--port", "5999", env=_env(GATEWAY_HOST="0.0.0.0"))
    assert result.returncode == 2
    assert "without authentication" in result.stderr


def test_version() -> None:
    result = run_cli("--version", env=_env())
    assert result.returncode == 0
    assert "mlflow-gateway" in result.stdout
