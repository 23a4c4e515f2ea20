"""Parsing one setting's text: each parser returns the value or raises ValueError saying why."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def parse_port(raw: str) -> int:
    port = int(raw)
    if not 0 < port < 65536:
        raise ValueError("expected a TCP port between 1 and 65535")
    return port


def parse_positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("expected a number of seconds greater than 0")
    return value


def parse_http_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    return raw.strip().rstrip("/")


def parse_redis_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return raw.strip()


def parse_networks(raw: str) -> tuple[IPNetwork, ...]:
    items = [item.strip() for item in raw.split(",") if item.strip()]
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def parse_database_url(raw: str) -> str:
    # Imported here: config must stay importable without touching the database layer's drivers.
    from gateway.store.db import async_database_url

    async_database_url(raw.strip())
    return raw.strip()


def parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def parse_list_lower(raw: str) -> tuple[str, ...]:
    return tuple(item.lower() for item in parse_list(raw))


def parse_seconds(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("expected a whole number greater than 0")
    return value


def parse_algorithms(raw: str) -> tuple[str, ...]:
    # Imported here: config must stay importable without the JWT layer.
    from gateway.authn.credentials import SUPPORTED_ALGORITHMS

    algorithms = parse_list(raw)
    refused = [a for a in algorithms if a not in SUPPORTED_ALGORITHMS]
    if refused or not algorithms:
        raise ValueError(
            f"{', '.join(refused) or 'nothing'} not allowed; choose from "
            + ", ".join(sorted(SUPPORTED_ALGORITHMS))
        )
    return algorithms


def parse_event_loop(raw: str) -> str:
    choice = raw.strip().lower()
    if choice not in {"uvloop", "asyncio"}:
        raise ValueError("expected uvloop or asyncio")
    return choice


def parse_log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("expected one of DEBUG, INFO, WARNING, ERROR")
    return level
