"""`mlflow-gateway doctor`: is this gateway's configuration sound, and can it reach what it needs?

One line per check — `ok` or `FAIL` with what is wrong and the fix — for the configuration,
the casbin model (which decision path is active and what a decision costs on it), TLS, MLflow
(reachable, the version the route table was built for, accepts the gateway's Host header, serves
artifacts), the gateway's database, Redis and the identity provider. Exit 0 when everything is
well, 1 otherwise. Secrets are never printed: URLs are shown with passwords masked.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import click

from gateway.config import (
    ConfigError,
    Settings,
    check_serve_settings,
    load_settings,
    mask_url_password,
)
from gateway.workspaces import ENABLED_UPSTREAM, upstream_workspaces_enabled

MLFLOW_VERSION = "3.17.2"  # the version gateway/authz/routes.py describes
CHECK_TIMEOUT = 5.0
CERT_WARNING_DAYS = 14
EXIT_PROBLEMS = 1


@dataclass(frozen=True)
class Finding:
    component: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':<5} {self.component:<9} {self.message}"


def ok(component: str, message: str) -> Finding:
    return Finding(component, True, message)


def fail(component: str, message: str) -> Finding:
    return Finding(component, False, message)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


# --- the checks -------------------------------------------------------------------------------


async def check_mlflow(settings: Settings, http: aiohttp.ClientSession) -> Finding:
    """Reachable, the right version, the gateway's Host accepted, artifacts served by MLflow."""
    base = settings.upstream_url or ""
    try:
        async with http.get(f"{base}/health") as response:
            if response.status != 200:
                return fail(
                    "mlflow",
                    f"{base}/health answered HTTP {response.status} — check that "
                    "GATEWAY_UPSTREAM_URL points at the MLflow server itself",
                )
        async with http.get(f"{base}/version") as response:
            version = (await response.text()).strip() if response.status == 200 else "unknown"
        async with http.get(f"{base}/api/2.0/mlflow/experiments/search?max_results=1") as response:
            status, body = response.status, await response.text()
        async with http.get(f"{base}/api/2.0/mlflow-artifacts/artifacts") as response:
            artifacts_status, artifacts_body = response.status, await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return fail(
            "mlflow",
            f"cannot reach {base} ({_reason(exc)}) — start the MLflow server (the mlflow/ image) "
            "and check GATEWAY_UPSTREAM_URL and that the network lets the gateway reach it",
        )
    host = urlsplit(base).netloc.rsplit("@", 1)[-1]  # what the proxy sends as Host
    if status == 403 and "Invalid Host header" in body:
        return fail(
            "mlflow",
            f"MLflow refuses the Host header {host!r} the gateway sends — set "
            f"MLFLOW_SERVER_ALLOWED_HOSTS={host} on the MLflow server",
        )
    if status != 200:
        return fail(
            "mlflow",
            f"MLflow answered HTTP {status} to an experiment search ({body.strip()[:200]}) — "
            "see the MLflow server's log",
        )
    if version != MLFLOW_VERSION:
        return fail(
            "mlflow",
            f"{base} runs MLflow {version}; this gateway's route table is for {MLFLOW_VERSION} — "
            f"run mlflow=={MLFLOW_VERSION} (mlflow/requirements.txt)",
        )
    if artifacts_status != 200:
        return fail(
            "mlflow",
            f"MLflow cannot list artifacts (HTTP {artifacts_status}: "
            f"{artifacts_body.strip()[:200]}) — Artifact Upload Failed will follow: run it with "
            "--serve-artifacts and a reachable --artifacts-destination (the mlflow/ image does; "
            "its log names the store's problem)",
        )
    if await upstream_workspaces_enabled(http, base):
        return fail("mlflow", ENABLED_UPSTREAM)
    return ok("mlflow", f"{base} answers: MLflow {version}, serves artifacts, accepts {host!r}")


async def check_database(settings: Settings) -> Finding:
    from gateway.store.db import create_engine, ping

    url = settings.effective_database_url
    shown = mask_url_password(url)
    if url.startswith("sqlite"):
        missing = _missing_sqlite_file(Path(url.split(":///", 1)[-1]), shown)
        if missing is not None:
            return missing
    engine = create_engine(url)
    try:
        await asyncio.wait_for(ping(engine), CHECK_TIMEOUT)
    except Exception as exc:  # any failure is the finding
        return fail(
            "database",
            f"cannot use {shown} ({_reason(exc)}) — check GATEWAY_DATABASE_URL (host, port, user, "
            "password, database name) and that the database runs",
        )
    finally:
        await engine.dispose()
    return ok("database", f"{shown} answers")


def _missing_sqlite_file(path: Path, shown: str) -> Finding | None:
    """A finding when the SQLite file does not exist yet (the doctor must not create it)."""
    if path.exists():
        return None
    if not _writable(path.parent):
        return fail(
            "database",
            f"{shown} does not exist and {path.parent} is not writable — set GATEWAY_DATA_DIR "
            "to a writable directory (a volume) or GATEWAY_DATABASE_URL",
        )
    return ok("database", f"{shown} will be created at start")


def _writable(directory: Path) -> bool:
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return os.access(directory, os.W_OK)


async def check_redis(settings: Settings) -> Finding:
    import redis.asyncio as aioredis

    shown = mask_url_password(settings.redis_url)
    client = aioredis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=CHECK_TIMEOUT, socket_timeout=CHECK_TIMEOUT
    )
    try:
        await client.ping()
    except Exception as exc:  # any failure is the finding
        return fail(
            "redis",
            f"cannot reach {shown} ({_reason(exc)}) — start Redis or fix GATEWAY_REDIS_URL "
            "(sessions, lockout and the audit stream live there)",
        )
    finally:
        await client.aclose()
    return ok("redis", f"{shown} answers")


async def check_identity_provider(settings: Settings, http: aiohttp.ClientSession) -> Finding:
    from gateway.authn.credentials import IdentityProviderError
    from gateway.authn.jwks import Discovery, fetch_json

    issuer = settings.oidc_issuer or settings.jwt_issuer
    variable = "GATEWAY_OIDC_ISSUER" if settings.oidc_issuer else "GATEWAY_JWT_ISSUER"
    try:
        if settings.jwt_jwks_url and not settings.oidc_issuer:
            jwks_uri = settings.jwt_jwks_url
            variable = "GATEWAY_JWT_JWKS_URL"
        else:
            jwks_uri = await Discovery(lambda: http, issuer or "").endpoint("jwks_uri")
        keys = (await fetch_json(http, jwks_uri)).get("keys")
    except IdentityProviderError as exc:
        return fail(
            "idp",
            f"{exc} — check {variable} and that the gateway can reach the identity provider",
        )
    if not keys:
        return fail("idp", f"{jwks_uri} lists no signing keys — check the identity provider")
    return ok("idp", f"{issuer or jwks_uri}: discovery and {len(keys)} signing key(s)")


def check_tls(settings: Settings) -> Finding:
    from cryptography import x509

    assert settings.tls_cert_file is not None
    certificate = x509.load_pem_x509_certificate(settings.tls_cert_file.read_bytes())
    expires = certificate.not_valid_after_utc
    left = expires - datetime.datetime.now(datetime.UTC)
    if left.total_seconds() <= 0:
        return fail(
            "tls",
            f"{settings.tls_cert_file} expired on {expires:%Y-%m-%d} — renew the certificate "
            "and restart the gateway",
        )
    warning = f" — renew soon ({left.days} day(s) left)" if left.days < CERT_WARNING_DAYS else ""
    return ok(
        "tls",
        f"serving HTTPS with {settings.tls_cert_file}, valid until {expires:%Y-%m-%d}{warning}",
    )


async def run_checks(settings: Settings) -> list[Finding]:
    timeout = aiohttp.ClientTimeout(total=CHECK_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as http:
        checks: list[Awaitable[Finding]] = [
            check_mlflow(settings, http),
            check_database(settings),
            check_redis(settings),
        ]
        if settings.oidc_enabled or settings.jwt_enabled:
            checks.append(check_identity_provider(settings, http))
        findings = list(await asyncio.gather(*checks))
    if settings.tls_enabled:
        findings.insert(0, check_tls(settings))
    return findings


def check_authorization(settings: Settings) -> Finding:
    """Which path decides on GATEWAY_CASBIN_MODEL, and an uncached decision timed on both paths
    over a sample policy (a model that cannot be served fails with the settings already)."""
    from gateway.authz.casbin_model import ModelError, load_model
    from gateway.authz.enforcer import decision_cost, engine_for, sample_requests
    from gateway.authz.policy import PolicyIndex
    from gateway.policy_lines import Grouping, Rule

    try:
        model = load_model(settings.casbin_model)
    except ModelError as exc:
        return fail("authz", f"{exc} — fix GATEWAY_CASBIN_MODEL (docs/authorization.md)")
    rules = [Rule("role:admin", "*", "*")]
    rules += [Rule(f"user:u{i % 200}", f"experiment:{i}", "read") for i in range(1000)]
    rules += [Rule(f"group:g{t}", f"experiment_name:/team-{t}/*", "edit") for t in range(20)]
    groupings = [Grouping(f"user:u{i}", f"group:g{i % 20}") for i in range(200)]
    requests = sample_requests(tuple(rules), 100)
    index = PolicyIndex(rules, groupings)
    ours, _ = decision_cost(engine_for(model, index), requests, 1.0)
    measured = f"an uncached decision on a {len(rules):,}-rule sample: {ours:,.0f} µs"
    if not model.shipped:
        baseline, _ = decision_cost(index, requests, 1.0)
        measured += f" (the index's, for the shipped model: {baseline:,.0f} µs)"
    return ok("authz", f"{model.describe()}; {measured}")


def configuration_findings(load: Callable[[], Settings]) -> tuple[Settings | None, list[Finding]]:
    try:
        settings = load()
    except ConfigError as exc:
        return None, [fail("config", problem) for problem in exc.problems]
    problems = check_serve_settings(settings)
    if problems:
        return None, [fail("config", problem) for problem in problems]
    how = "HTTPS" if settings.tls_enabled else "HTTP"
    sign_in = ", ".join(
        name
        for name, on in (
            ("passwords", settings.local_users),
            ("SSO", settings.oidc_enabled),
            ("IdP JWTs", settings.jwt_enabled),
        )
        if on
    )
    return settings, [
        ok(
            "config",
            f"{how} on {settings.host}:{settings.port}, public URL "
            f"{settings.effective_public_url}; sign-in: {sign_in or 'gateway tokens only'}",
        ),
        check_authorization(settings),
    ]


@click.command()
def doctor() -> None:
    """Check the configuration and that MLflow, the database, Redis and the IdP answer."""
    settings, findings = configuration_findings(load_settings)
    if settings is not None:
        findings += asyncio.run(run_checks(settings))
    for finding in findings:
        click.echo(finding.line())
    problems = sum(not finding.ok for finding in findings)
    if problems:
        click.echo(f"{problems} problem(s) found.", err=True)
        sys.exit(EXIT_PROBLEMS)
    click.echo("All checks passed.")
