from __future__ import annotations

import ipaddress

import pytest

from gateway.edge import client_address
from gateway.observability import route_class
from gateway.store.db import DatabaseUrlError, async_database_url

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        # Untrusted peers cannot speak for anyone else.
        ("203.0.113.9", "1.2.3.4", ("203.0.113.9", False)),
        ("10.0.0.1", None, ("10.0.0.1", False)),
        # A trusted proxy: the rightmost untrusted hop is the client.
        ("10.0.0.1", "1.2.3.4", ("1.2.3.4", True)),
        ("10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.7", ("1.2.3.4", True)),
        # Garbage in the chain stops the walk at the proxy itself.
        ("10.0.0.1", "1.2.3.4, not-an-ip", ("10.0.0.1", True)),
        # All hops trusted: the leftmost is the best we know.
        ("10.0.0.1", "10.0.0.2, 10.0.0.3", ("10.0.0.2", True)),
    ],
)
def test_client_address(peer: str, xff: str | None, expected: tuple[str, bool]) -> None:
    assert client_address(peer, xff, TRUSTED) == expected


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/api/2.0/mlflow/runs/get", "api"),
        ("/ajax-api/2.0/mlflow/runs/get", "ajax-api"),
        ("/api/2.0/mlflow-artifacts/artifacts/1/x", "artifacts"),
        ("/get-artifact", "artifacts"),
        ("/static-files/static/js/main.js", "ui-static"),
        ("/", "ui"),
        ("/graphql", "graphql"),
        ("/v1/traces", "otel"),
        ("/.gateway/metrics", "gateway"),
        ("/some/thing/else", "other"),
    ],
)
def test_route_class_is_bounded(path: str, label: str) -> None:
    assert route_class(path) == label


def test_database_urls_map_to_async_drivers() -> None:
    assert async_database_url("sqlite:////d/gw.db") == "sqlite+aiosqlite:////d/gw.db"
    assert async_database_url("postgresql://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert async_database_url("postgres://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    with pytest.raises(DatabaseUrlError, match="unsupported database"):
        async_database_url("oracle://h/db")
