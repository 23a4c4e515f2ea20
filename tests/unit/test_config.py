from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from gateway.config import ConfigError, check_serve_settings, load_settings, mask_url_password


def test_defaults_are_safe_and_documented() -> None:
    settings = load_settings({})
    assert settings.host == "127.0.0.1"
    assert settings.port == 5000
    assert settings.data_dir == Path("./data")
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_database_url.endswith("/data/gateway.db")
    assert settings.effective_public_url == "http://127.0.0.1:5000"
    assert settings.trusted_proxies == ()
    assert settings.upstream_keepalive is True


def test_values_are_parsed_from_gateway_variables() -> None:
    settings = load_settings(
        {
            "GATEWAY_UPSTREAM_URL": "http://mlflow:5000/",
            "GATEWAY_PORT": "8080",
            "GATEWAY_PUBLIC_URL": "https://mlflow.example.com",
            "GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1",
            "GATEWAY_UPSTREAM_KEEPALIVE": "yes",
            "GATEWAY_DATABASE_URL": "postgresql://gw:pw@db/gateway",
        }
    )
    assert settings.upstream_url == "http://mlflow:5000"
    assert settings.port == 8080
    assert settings.effective_public_url == "https://mlflow.example.com"
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.1/32"),
    )
    assert settings.upstream_keepalive is True


def test_every_problem_is_reported_at_once_with_a_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "GATEWAY_PORT": "70000",
                "GATEWAY_UPSTREAM_URL": "mlflow:5000",
                "GATEWAY_REDIS_URL": "http://redis",
                "GATEWAY_TRUSTED_PROXIES": "not-a-network",
                "GATEWAY_UPSTREAM_KEEPALIVE": "maybe",
                "GATEWAY_DATABASE_URL": "mysql://u:topsecret@h/db",
            }
        )
    problems = caught.value.problems
    assert len(problems) == 6
    for name in (
        "GATEWAY_PORT",
        "GATEWAY_UPSTREAM_URL",
        "GATEWAY_REDIS_URL",
        "GATEWAY_TRUSTED_PROXIES",
        "GATEWAY_UPSTREAM_KEEPALIVE",
        "GATEWAY_DATABASE_URL",
    ):
        assert any(p.startswith(name + "=") for p in problems), name
    assert all(" — " in p for p in problems)
    # A secret setting's value is never echoed back, even when it is wrong.
    assert not any("topsecret" in p for p in problems)


def test_file_variables_supply_secrets(tmp_path: Path) -> None:
    secret = tmp_path / "redis-url"
    secret.write_text("redis://:s3cret@redis:6379/0\n")
    settings = load_settings({"GATEWAY_REDIS_URL_FILE": str(secret)})
    assert settings.redis_url == "redis://:s3cret@redis:6379/0"
    assert settings.redacted()["GATEWAY_REDIS_URL"] == "redis://:***@redis:6379/0"


def test_file_variable_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "GATEWAY_REDIS_URL": "redis://r",
                "GATEWAY_REDIS_URL_FILE": str(tmp_path / "x"),
                "GATEWAY_DATABASE_URL_FILE": str(tmp_path / "missing"),
            }
        )
    problems = caught.value.problems
    assert any("set only one of them" in p for p in problems)
    assert any("GATEWAY_DATABASE_URL_FILE" in p and "cannot be read" in p for p in problems)


def test_serve_refuses_network_exposure_without_authentication() -> None:
    settings = load_settings({"GATEWAY_HOST": "0.0.0.0", "GATEWAY_UPSTREAM_URL": "http://m:5000"})
    problems = check_serve_settings(settings)
    assert len(problems) == 1
    assert "without authentication" in problems[0]
    assert check_serve_settings(load_settings({"GATEWAY_UPSTREAM_URL": "http://m:5000"})) == []


def test_serve_requires_an_upstream() -> None:
    problems = check_serve_settings(load_settings({}))
    assert any("GATEWAY_UPSTREAM_URL is not set" in p for p in problems)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("redis://:pw@h/0", "redis://:***@h/0"),
        ("redis://h/0", "redis://h/0"),
    ],
)
def test_mask_url_password(url: str, masked: str) -> None:
    assert mask_url_password(url) == masked
