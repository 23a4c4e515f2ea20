"""One Settings object, read from ``GATEWAY_*`` environment variables and validated at start.

Every variable may instead be given as ``GATEWAY_<NAME>_FILE`` pointing at a file that holds the
value (Docker and Kubernetes secrets). All problems are collected and reported together, each with
the fix, so an operator never plays whack-a-mole with a stack trace.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gateway.approvals.required import DEFAULT_TTL, parse_required, parse_ttl, required_problems
from gateway.config_values import (
    IPNetwork,
    parse_algorithms,
    parse_bool,
    parse_database_url,
    parse_event_loop,
    parse_http_url,
    parse_list,
    parse_list_lower,
    parse_log_level,
    parse_networks,
    parse_port,
    parse_positive_float,
    parse_redis_url,
    parse_seconds,
)
from gateway.tls import tls_problems

PREFIX = "GATEWAY_"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ConfigError(Exception):
    """Raised with every configuration problem found, each phrased as 'what is wrong — the fix'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Option:
    """How one setting is read from the environment and what to tell the operator about it."""

    env: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False


def _opt(
    env: str, default: Any, parse: Callable[[str], Any], help: str, secret: bool = False
) -> Any:
    return field(default=default, metadata={"option": Option(PREFIX + env, parse, help, secret)})


@dataclass(frozen=True)
class Settings:
    upstream_url: str | None = _opt(
        "UPSTREAM_URL",
        None,
        parse_http_url,
        "URL of the internal MLflow server, e.g. http://mlflow:5000",
    )
    host: str = _opt("HOST", "127.0.0.1", str, "address the gateway listens on")
    port: int = _opt("PORT", 5000, parse_port, "port the gateway listens on")
    public_url: str | None = _opt(
        "PUBLIC_URL",
        None,
        parse_http_url,
        "URL users reach the gateway at, e.g. https://mlflow.example.com",
    )
    data_dir: Path = _opt(
        "DATA_DIR", Path("./data"), Path, "directory for the SQLite database, secrets and spool"
    )
    database_url: str | None = _opt(
        "DATABASE_URL",
        None,
        parse_database_url,
        "SQLAlchemy URL of the gateway database",
        secret=True,
    )
    redis_url: str = _opt(
        "REDIS_URL", "redis://127.0.0.1:6379/0", parse_redis_url, "Redis URL", secret=True
    )
    trusted_proxies: tuple[IPNetwork, ...] = _opt(
        "TRUSTED_PROXIES",
        (),
        parse_networks,
        "comma-separated CIDRs whose X-Forwarded-* headers are believed, e.g. 10.0.0.0/8",
    )
    upstream_connect_timeout: float = _opt(
        "UPSTREAM_CONNECT_TIMEOUT", 5.0, parse_positive_float, "seconds to connect to MLflow"
    )
    upstream_read_timeout: float = _opt(
        "UPSTREAM_READ_TIMEOUT",
        300.0,
        parse_positive_float,
        "seconds MLflow may stay silent mid-request",
    )
    upstream_keepalive: bool = _opt(
        "UPSTREAM_KEEPALIVE",
        True,
        parse_bool,
        "reuse upstream connections (see docs/benchmarks.md)",
    )
    event_loop: str = _opt(
        "EVENT_LOOP",
        "uvloop",
        parse_event_loop,
        "uvloop (faster sockets) or asyncio: the event loop serve and dev run on",
    )
    log_level: str = _opt("LOG_LEVEL", "INFO", parse_log_level, "DEBUG, INFO, WARNING or ERROR")
    tls_cert_file: Path | None = _opt(
        "TLS_CERT_FILE",
        None,
        Path,
        "PEM certificate chain the gateway serves HTTPS with (set with GATEWAY_TLS_KEY_FILE)",
    )
    tls_key_file: Path | None = _opt(
        "TLS_KEY_FILE",
        None,
        Path,
        "PEM private key of GATEWAY_TLS_CERT_FILE, unencrypted",
    )

    # Local users and the bootstrap admin.
    admin_username: str = _opt("ADMIN_USERNAME", "admin", str, "name of the bootstrap admin")
    admin_password: str | None = _opt(
        "ADMIN_PASSWORD", None, str, "password of the bootstrap admin (12+ characters)", secret=True
    )
    local_users: bool = _opt(
        "LOCAL_USERS", True, parse_bool, "offer username/password sign-in and basic auth"
    )

    # OIDC browser sign-in.
    oidc_issuer: str | None = _opt(
        "OIDC_ISSUER", None, parse_http_url, "issuer URL of the identity provider"
    )
    oidc_client_id: str | None = _opt("OIDC_CLIENT_ID", None, str, "OIDC client id")
    oidc_client_secret: str | None = _opt(
        "OIDC_CLIENT_SECRET", None, str, "OIDC client secret", secret=True
    )
    oidc_scopes: str = _opt(
        "OIDC_SCOPES", "openid email profile", str, "scopes requested at sign-in"
    )
    oidc_username_claim: str = _opt(
        "OIDC_USERNAME_CLAIM",
        "preferred_username",
        str,
        "ID token claim that names the user (falls back to email, then sub)",
    )
    oidc_groups_claim: str = _opt("OIDC_GROUPS_CLAIM", "groups", str, "claim listing groups")
    oidc_allowed_email_domains: tuple[str, ...] = _opt(
        "OIDC_ALLOWED_EMAIL_DOMAINS", (), parse_list_lower, "comma-separated e-mail domains"
    )
    oidc_required_groups: tuple[str, ...] = _opt(
        "OIDC_REQUIRED_GROUPS", (), parse_list, "comma-separated groups, one of which is needed"
    )
    oidc_display_name: str = _opt(
        "OIDC_DISPLAY_NAME", "single sign-on", str, "name of the SSO button"
    )

    # Bearer JWTs from the identity provider (service accounts).
    jwt_audience: str | None = _opt(
        "JWT_AUDIENCE", None, str, "audience bearer JWTs must carry (enables IdP JWTs)"
    )
    jwt_issuer: str | None = _opt(
        "JWT_ISSUER", None, parse_http_url, "issuer of bearer JWTs (default: GATEWAY_OIDC_ISSUER)"
    )
    jwt_jwks_url: str | None = _opt(
        "JWT_JWKS_URL", None, parse_http_url, "JWKS URL (default: from the issuer's discovery)"
    )
    jwt_algorithms: tuple[str, ...] = _opt(
        "JWT_ALGORITHMS", ("RS256", "ES256"), parse_algorithms, "allowed JWT signing algorithms"
    )
    jwt_subject_claim: str = _opt("JWT_SUBJECT_CLAIM", "sub", str, "claim naming the caller")
    jwt_groups_claim: str = _opt("JWT_GROUPS_CLAIM", "groups", str, "claim listing groups")
    jwt_leeway: int = _opt("JWT_LEEWAY", 30, parse_seconds, "clock skew allowed, in seconds")

    # Authorization.
    protected_aliases: tuple[str, ...] = _opt(
        "PROTECTED_ALIASES",
        ("champion", "production", "prod"),
        parse_list_lower,
        "registered-model aliases whose setting needs alias:<name> rather than edit",
    )
    approval_required: tuple[str, ...] = _opt(
        "APPROVAL_REQUIRED",
        (),
        parse_required,
        "stages (production, staging, archived) and protected aliases (alias:champion) whose "
        "change needs a second person's approval (docs/approvals.md)",
    )
    approval_ttl: int = _opt(
        "APPROVAL_TTL", DEFAULT_TTL, parse_ttl, "how long a request waits for approval (7d, 12h)"
    )
    policy_file: Path | None = _opt(
        "POLICY_FILE",
        None,
        Path,
        "bootstrap policy CSV loaded into an empty installation (default: the shipped one)",
    )
    casbin_model: Path | None = _opt(
        "CASBIN_MODEL",
        None,
        Path,
        "casbin model file decisions follow (default: the shipped policies/model.conf; "
        "see docs/authorization.md#the-casbin-model)",
    )

    # Audit.
    audit_maxlen: int = _opt(
        "AUDIT_MAXLEN", 10_000_000, parse_seconds, "events kept in the Redis stream (approximate)"
    )
    audit_spool_max_bytes: int = _opt(
        "AUDIT_SPOOL_MAX_BYTES", 1024**3, parse_seconds, "bound of the on-disk spool, in bytes"
    )
    audit_enabled: bool = _opt(
        "AUDIT_ENABLED",
        True,
        parse_bool,
        "record the audit trail (turn off only to measure its cost)",
    )
    audit_required: bool = _opt(
        "AUDIT_REQUIRED",
        False,
        parse_bool,
        "refuse changes (503) when an audit event could be stored neither in Redis nor the spool",
    )

    # Sessions and brute-force protection.
    session_idle_timeout: int = _opt(
        "SESSION_IDLE_TIMEOUT", 8 * 3600, parse_seconds, "seconds a session may sit unused"
    )
    session_max_age: int = _opt(
        "SESSION_MAX_AGE", 24 * 3600, parse_seconds, "seconds a session lives at most"
    )
    lockout_user_threshold: int = _opt(
        "LOCKOUT_USER_THRESHOLD", 5, parse_seconds, "failed attempts per user before a lockout"
    )
    lockout_ip_threshold: int = _opt(
        "LOCKOUT_IP_THRESHOLD", 20, parse_seconds, "failed attempts per client IP before a lockout"
    )
    lockout_seconds: int = _opt(
        "LOCKOUT_SECONDS", 60, parse_seconds, "first lockout period; doubles with each lockout"
    )

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::"} else self.host  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls_enabled else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gateway.db').resolve()}"

    @property
    def listens_on_loopback_only(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")

    @property
    def oidc_enabled(self) -> bool:
        return self.oidc_issuer is not None

    @property
    def jwt_enabled(self) -> bool:
        return self.jwt_audience is not None

    @property
    def secure_cookies(self) -> bool:
        return self.tls_enabled or self.effective_public_url.startswith("https://")

    @property
    def authentication_configured(self) -> bool:
        """True when somebody can sign in: a bootstrap admin password, SSO, or IdP JWTs."""
        return bool(self.admin_password) or self.oidc_enabled or self.jwt_enabled

    def redacted(self) -> dict[str, str]:
        """Every setting as an operator may see it in a log: secrets masked."""
        shown: dict[str, str] = {}
        for f in fields(self):
            option: Option = f.metadata["option"]
            value = getattr(self, f.name)
            text = ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
            if option.secret and value:
                text = mask_url_password(text) if "://" in text else "***"
            shown[option.env] = text
        return shown


def mask_url_password(url: str) -> str:
    """Hide the password of a URL (``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[1]}"))


def _raw_value(env: Mapping[str, str], name: str, problems: list[str]) -> str | None:
    direct = env.get(name)
    file_name = env.get(name + "_FILE")
    if direct is not None and file_name is not None:
        problems.append(f"{name} and {name}_FILE are both set — set only one of them")
        return None
    if file_name is None:
        return direct
    try:
        return Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        problems.append(
            f"{name}_FILE={file_name} cannot be read ({exc.strerror}) — "
            "point it at a readable file holding the value"
        )
        return None


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from ``env`` (default: the process environment), then apply ``overrides``.

    Raises ConfigError listing every problem at once.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    values: dict[str, Any] = {}
    for f in fields(Settings):
        option: Option = f.metadata["option"]
        raw = _raw_value(env, option.env, problems)
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = option.parse(raw)
        except ValueError as exc:
            shown = "***" if option.secret else repr(raw)
            problems.append(f"{option.env}={shown} is invalid: {exc} — {option.help}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    if problems:
        raise ConfigError(problems)
    settings = Settings(**values)
    # Imported here: pycasbin reads the model only once the settings are otherwise sound.
    from gateway.authz.casbin_model import model_problems

    problems = authentication_problems(settings) + tls_problems(
        settings.tls_cert_file, settings.tls_key_file
    )
    problems += model_problems(settings.casbin_model)
    problems += required_problems(settings.approval_required, settings.protected_aliases)
    if problems:
        raise ConfigError(problems)
    return settings


def exposure_problems(settings: Settings) -> list[str]:
    """Refuse to put an unauthenticated MLflow on the network."""
    if settings.listens_on_loopback_only or settings.authentication_configured:
        return []
    return [
        f"GATEWAY_HOST={settings.host} would expose MLflow to the network without "
        "authentication — keep GATEWAY_HOST=127.0.0.1 until authentication is configured"
    ]


def check_serve_settings(settings: Settings) -> list[str]:
    """Problems that stop ``serve`` from starting safely (empty when all is well)."""
    problems: list[str] = []
    if not settings.upstream_url:
        problems.append(
            "GATEWAY_UPSTREAM_URL is not set — set it to the internal MLflow server, "
            "e.g. GATEWAY_UPSTREAM_URL=http://127.0.0.1:5001"
        )
    return problems + exposure_problems(settings)


def authentication_problems(settings: Settings) -> list[str]:
    """Settings that only make sense together."""
    problems: list[str] = []
    if settings.oidc_enabled and not (settings.oidc_client_id and settings.oidc_client_secret):
        problems.append(
            "GATEWAY_OIDC_ISSUER is set but GATEWAY_OIDC_CLIENT_ID or GATEWAY_OIDC_CLIENT_SECRET "
            "is not — register the gateway with the identity provider and set both"
        )
    if settings.jwt_enabled and not (settings.jwt_issuer or settings.oidc_issuer):
        problems.append(
            "GATEWAY_JWT_AUDIENCE is set but neither GATEWAY_JWT_ISSUER nor GATEWAY_OIDC_ISSUER "
            "is — set the issuer whose JWTs the gateway should accept"
        )
    if settings.admin_password is not None and len(settings.admin_password) < 12:
        problems.append(
            "GATEWAY_ADMIN_PASSWORD is shorter than 12 characters — choose a longer one"
        )
    if settings.session_max_age < settings.session_idle_timeout:
        problems.append(
            "GATEWAY_SESSION_MAX_AGE is shorter than GATEWAY_SESSION_IDLE_TIMEOUT — "
            "make the absolute timeout the longer one"
        )
    return problems


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})
