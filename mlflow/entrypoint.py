#!/usr/bin/env python3
"""Start the internal MLflow server from environment variables (the mlflow/ image's entrypoint).

    MLFLOW_PORT                    5000
    MLFLOW_HOST                    0.0.0.0
    MLFLOW_BACKEND_STORE_URI       sqlite:///mlflow/mlflow.db   (relative to the working directory)
    MLFLOW_DEFAULT_ARTIFACT_ROOT   /mlflow/artifacts             (a directory, s3://, gs://, wasbs://)
    MLFLOW_WORKERS                 2
    MLFLOW_WAIT_SECONDS            60   how long to wait for the database and the artifact store

Artifacts are always served through MLflow (``--serve-artifacts --artifacts-destination``): clients
get ``mlflow-artifacts:/`` URIs, so every byte passes the gateway and clients need no cloud
credentials. ``mysql://`` is rewritten to the installed driver (``mysql+pymysql://``).

Secrets come from the environment or from a file named by ``<NAME>_FILE`` (Docker and Kubernetes
secrets): the backend store URI, ``MLFLOW_BACKEND_STORE_PASSWORD`` (put into the URI, so the URI
itself may hold no password), and the S3, Google Cloud and Azure credentials. They are never
printed: URIs are shown with the password masked, and the URI reaches MLflow through its
environment, not its command line.

Before starting MLflow it waits, bounded, for the database and the artifact store. When it gives
up it prints what it tried (password masked) and the likely cause, then exits non-zero.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

PREFIX = "mlflow-entrypoint"
DEFAULTS = {
    "MLFLOW_PORT": "5000",
    "MLFLOW_HOST": "0.0.0.0",  # noqa: S104 - the container's only listener; the network isolates it
    "MLFLOW_BACKEND_STORE_URI": "sqlite:///mlflow/mlflow.db",
    "MLFLOW_DEFAULT_ARTIFACT_ROOT": "/mlflow/artifacts",
    "MLFLOW_WORKERS": "2",
    "MLFLOW_WAIT_SECONDS": "60",
}
# Variables that may be given as <NAME>_FILE instead (the file holds the value).
FILE_VARIABLES = (
    "MLFLOW_BACKEND_STORE_URI",
    "MLFLOW_BACKEND_STORE_PASSWORD",
    "MLFLOW_DEFAULT_ARTIFACT_ROOT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCESS_KEY",
)
# MLflow's own settings that this script owns: left in the child's environment they would fight
# the command line (MLFLOW_DEFAULT_ARTIFACT_ROOT there would make clients write to the store
# directly instead of through MLflow).
OWNED_BY_ENTRYPOINT = (
    "MLFLOW_DEFAULT_ARTIFACT_ROOT",
    "MLFLOW_ARTIFACTS_DESTINATION",
    "MLFLOW_BACKEND_STORE_PASSWORD",
    "MLFLOW_WAIT_SECONDS",
    "MLFLOW_HOST",
    "MLFLOW_PORT",
)
RETRY_INTERVAL = 2.0
CONNECT_TIMEOUT = 5
EXIT_CONFIG = 2
EXIT_DATABASE = 3
EXIT_ARTIFACTS = 4


class StartupError(Exception):
    def __init__(self, exit_code: int, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.exit_code = exit_code
        self.lines = lines


def say(message: str) -> None:
    print(f"{PREFIX}: {message}", file=sys.stderr, flush=True)


# --- configuration ----------------------------------------------------------------------------


def resolve_file_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The environment with every ``<NAME>_FILE`` of FILE_VARIABLES read into ``<NAME>``."""
    resolved = dict(env)
    problems: list[str] = []
    for name in FILE_VARIABLES:
        file_name = resolved.pop(name + "_FILE", None)
        if file_name is None:
            continue
        if name in resolved:
            problems.append(f"{name} and {name}_FILE are both set — set only one of them")
            continue
        try:
            resolved[name] = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            problems.append(
                f"{name}_FILE={file_name} cannot be read ({exc.strerror}) — "
                "point it at a readable file holding the value"
            )
    if problems:
        raise StartupError(EXIT_CONFIG, problems)
    return resolved


def mask_password(uri: str) -> str:
    """``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}"))


def with_password(uri: str, password: str | None) -> str:
    """Put MLFLOW_BACKEND_STORE_PASSWORD into a URI that names a user but holds no password."""
    if not password:
        return uri
    parts = urlsplit(uri)
    if parts.username is None or parts.password is not None:
        raise StartupError(
            EXIT_CONFIG,
            [
                "MLFLOW_BACKEND_STORE_PASSWORD is set but MLFLOW_BACKEND_STORE_URI "
                + ("already holds a password" if parts.username else "names no user")
                + " — give the password in one place, and the user in the URI "
                "(postgresql://mlflow@db:5432/mlflow)"
            ],
        )
    userinfo, host = parts.netloc.rsplit("@", 1)
    netloc = f"{userinfo}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


# The drivers this image installs; SQLAlchemy's own defaults (psycopg 3, mysqlclient) are not.
DRIVERS = {
    "postgresql": "postgresql+psycopg2",
    "postgres": "postgresql+psycopg2",  # Heroku-style URLs (Railway, Render)
    "mysql": "mysql+pymysql",
}


def normalize_backend_uri(uri: str) -> str:
    """Check the scheme; a bare ``mysql://`` or ``postgresql://`` gets the installed driver."""
    scheme, separator, rest = uri.partition("://")
    scheme = scheme.lower()
    if separator and scheme in DRIVERS:
        return f"{DRIVERS[scheme]}://{rest}"
    if separator and scheme.split("+")[0] in {"sqlite", "postgresql", "mysql", "mssql"}:
        return uri
    raise StartupError(
        EXIT_CONFIG,
        [
            f"MLFLOW_BACKEND_STORE_URI={mask_password(uri)} is not a database URI — use "
            "sqlite:///path/mlflow.db, postgresql://user@host:5432/db or mysql://user@host:3306/db"
        ],
    )


def positive_number(env: Mapping[str, str], name: str) -> int:
    raw = env[name]
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise StartupError(EXIT_CONFIG, [f"{name}={raw!r} is invalid — expected a number > 0"])
    return value


# --- waiting for the database -----------------------------------------------------------------


DATABASE_CAUSES: tuple[tuple[str, str], ...] = (
    (
        r"password authentication failed|access denied|authentication failed|"
        r"no password supplied|role .* does not exist",
        "the database refused the user or password — check the user in MLFLOW_BACKEND_STORE_URI "
        "and the password (MLFLOW_BACKEND_STORE_PASSWORD or the URI), and that the user may log in "
        "from this host",
    ),
    (
        r"database .* does not exist|unknown database",
        "the database itself does not exist — create it (CREATE DATABASE …) and grant the user "
        "all rights on it; MLflow creates its tables, not the database",
    ),
    (
        r"could not translate host name|name or service not known|temporary failure in name "
        r"resolution|nodename nor servname|getaddrinfo",
        "the database host name does not resolve — check the host in MLFLOW_BACKEND_STORE_URI "
        "(the service name in docker-compose or Kubernetes, the Cloud SQL socket on Cloud Run)",
    ),
    (
        r"connection refused|can't connect|could not connect|timeout|timed out|"
        r"no route to host|network is unreachable|is the server running",
        "nothing answered at that host and port — start the database (or wait until it is ready), "
        "check the host and port in MLFLOW_BACKEND_STORE_URI, and that no firewall or network "
        "policy blocks this container",
    ),
    (
        r"No module named|NoSuchModuleError|Can't load plugin",
        "this image has no driver for that URI — use postgresql:// (psycopg2) or mysql:// "
        "(PyMySQL), or add the driver to mlflow/requirements.txt",
    ),
    (
        r"unable to open database file|readonly database|read-only|permission denied",
        "the SQLite file or its directory is not writable by this user — mount a volume there "
        "that the container's user (uid 10001) may write, or point the URI elsewhere",
    ),
)


def likely_cause(error: str, causes: tuple[tuple[str, str], ...], fallback: str) -> str:
    for pattern, cause in causes:
        if re.search(pattern, error, re.IGNORECASE):
            return cause
    return fallback


def hide(text: str, secrets: tuple[str | None, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return text


def check_database(uri: str) -> None:
    """Raise when the database cannot be reached or the SQLite file cannot be written."""
    if uri.startswith("sqlite"):
        path = uri.split(":///", 1)[1].split("?", 1)[0] if ":///" in uri else ""
        if path and path != ":memory:":
            directory = Path(path).parent
            directory.mkdir(parents=True, exist_ok=True)
            if not os.access(directory, os.W_OK):
                raise PermissionError(f"{directory.resolve()}: permission denied (not writable)")
        return
    import sqlalchemy  # MLflow's own dependency; imported late so sqlite-only starts stay quick

    engine = sqlalchemy.create_engine(
        uri, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT}
    )
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    finally:
        engine.dispose()


# Errors that waiting cannot cure: a missing driver, a URI SQLAlchemy cannot parse.
PERMANENT_ERRORS = frozenset({"ArgumentError", "NoSuchModuleError"})


def wait_for(
    what: str,
    probe: Callable[[], None],
    wait_seconds: int,
    secrets: tuple[str | None, ...],
    interval: float = RETRY_INTERVAL,
) -> tuple[int, str | None]:
    """Call ``probe`` until it succeeds or ``wait_seconds`` pass: (attempts, last error or None).

    Errors are returned and shown with every one of ``secrets`` replaced by ``***``.
    """
    deadline = time.monotonic() + wait_seconds
    attempts = 0
    while True:
        attempts += 1
        try:
            probe()
            return attempts, None
        except Exception as exc:  # retried, then reported with its cause
            error = hide(f"{type(exc).__name__}: {exc}".strip(), secrets)
            permanent = isinstance(exc, ImportError) or type(exc).__name__ in PERMANENT_ERRORS
        if permanent or time.monotonic() + interval > deadline:
            return attempts, error
        if attempts == 1:
            say(f"waiting for {what} (up to {wait_seconds}s): {error.splitlines()[0][:200]}")
        time.sleep(interval)


def wait_for_database(uri: str, password: str | None, wait_seconds: int) -> None:
    shown = mask_password(uri)
    secrets = (unquote(urlsplit(uri).password or "") or None, password)
    attempts, error = wait_for(
        f"the database {shown}", lambda: check_database(uri), wait_seconds, secrets
    )
    if error is None:
        say(f"backend store {shown}: reachable")
        return
    cause = likely_cause(
        error,
        DATABASE_CAUSES,
        "see the error above; check MLFLOW_BACKEND_STORE_URI and that the database runs",
    )
    raise StartupError(
        EXIT_DATABASE,
        [
            f"Database Connection Failed: could not use {shown} "
            f"({attempts} attempt(s) in {wait_seconds}s, MLFLOW_WAIT_SECONDS={wait_seconds})",
            f"  last error: {' '.join(error.split())[:600]}",
            f"  likely cause: {cause}",
        ],
    )


# --- checking the artifact store --------------------------------------------------------------


ARTIFACT_CAUSES: tuple[tuple[str, str], ...] = (
    (
        r"NoCredentialsError|Unable to locate credentials|Partial credentials|"
        r"DefaultCredentialsError|ClientAuthenticationError|credentials were not found|"
        r"could not automatically determine credentials",
        "no credentials for the artifact store in this container — S3: AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (or an IAM role); GCS: GOOGLE_APPLICATION_CREDENTIALS or the "
        "service account; Azure: AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCESS_KEY",
    ),
    (
        r"NoSuchBucket|bucket does not exist|ContainerNotFound|The specified container does not "
        r"exist|404|Not Found",
        "the bucket or container does not exist — create it, or fix its name in "
        "MLFLOW_DEFAULT_ARTIFACT_ROOT",
    ),
    (
        r"AccessDenied|Forbidden|403|AuthorizationFailure|InvalidAccessKeyId|"
        r"SignatureDoesNotMatch|AuthenticationFailed",
        "the artifact store refused these credentials — check the key or the role's rights "
        "(list, read and write objects under MLFLOW_DEFAULT_ARTIFACT_ROOT)",
    ),
    (
        r"EndpointConnectionError|Could not connect|Connection refused|ConnectionError|"
        r"Max retries exceeded|timed out|Name or service not known",
        "the artifact store's endpoint does not answer — check MLFLOW_S3_ENDPOINT_URL "
        "(S3-compatible stores), STORAGE_EMULATOR_HOST, the connection string's endpoint, and "
        "outbound network access from this container",
    ),
    (
        r"permission denied|not writable|read-only",
        "the artifact directory is not writable by this container's user (uid 10001) — mount a "
        "volume there that it may write",
    ),
)


def is_local_path(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def check_artifact_store(uri: str) -> None:
    """Raise when MLflow will not be able to list (and, for a directory, write) artifacts there."""
    if is_local_path(uri):
        directory = Path(uri.removeprefix("file://"))
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK):
            raise PermissionError(f"{directory.resolve()}: permission denied (not writable)")
        return
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    get_artifact_repository(uri).list_artifacts()


def check_artifacts(uri: str, wait_seconds: int) -> None:
    secrets = tuple(
        os.environ.get(name) for name in FILE_VARIABLES if name != "MLFLOW_DEFAULT_ARTIFACT_ROOT"
    )
    attempts, error = wait_for(
        f"the artifact store {uri}", lambda: check_artifact_store(uri), wait_seconds, secrets
    )
    if error is None:
        say(f"artifact store {uri}: reachable (served through MLflow: --serve-artifacts)")
        return
    cause = likely_cause(
        error, ARTIFACT_CAUSES, "see the error above; check MLFLOW_DEFAULT_ARTIFACT_ROOT"
    )
    raise StartupError(
        EXIT_ARTIFACTS,
        [
            f"Artifact Upload Failed (checked at start): cannot use the artifact store {uri} "
            f"({attempts} attempt(s) in {wait_seconds}s)",
            f"  last error: {' '.join(error.split())[:600]}",
            f"  likely cause: {cause}",
        ],
    )


# --- the server -------------------------------------------------------------------------------


def server_command(env: Mapping[str, str], python: str = sys.executable) -> list[str]:
    """The MLflow command line: no secret on it (the backend URI travels in the environment)."""
    return [
        python,
        "-m",
        "mlflow",
        "server",
        "--host",
        env["MLFLOW_HOST"],
        "--port",
        env["MLFLOW_PORT"],
        "--workers",
        env["MLFLOW_WORKERS"],
        "--serve-artifacts",
        "--artifacts-destination",
        env["MLFLOW_DEFAULT_ARTIFACT_ROOT"],
    ]


def prepare(environ: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Check everything, wait for the dependencies; the command and environment to exec."""
    env = {**DEFAULTS, **{k: v for k, v in resolve_file_variables(environ).items() if v != ""}}
    password = env.get("MLFLOW_BACKEND_STORE_PASSWORD")
    uri = with_password(normalize_backend_uri(env["MLFLOW_BACKEND_STORE_URI"]), password)
    wait_seconds = positive_number(env, "MLFLOW_WAIT_SECONDS")
    positive_number(env, "MLFLOW_PORT")
    positive_number(env, "MLFLOW_WORKERS")
    artifact_root = env["MLFLOW_DEFAULT_ARTIFACT_ROOT"]
    if is_local_path(artifact_root):
        artifact_root = str(Path(artifact_root.removeprefix("file://")).resolve())
    env["MLFLOW_DEFAULT_ARTIFACT_ROOT"] = artifact_root
    say(f"backend store {mask_password(uri)}; artifacts {artifact_root}")
    command = server_command(env)
    child_env = {k: v for k, v in env.items() if k not in OWNED_BY_ENTRYPOINT}
    child_env["MLFLOW_BACKEND_STORE_URI"] = uri
    wait_for_database(uri, password, wait_seconds)
    # The store's client libraries read their credentials from the process environment: check
    # with exactly the environment MLflow will get (secrets read from *_FILE included).
    with process_environment(child_env):
        check_artifacts(artifact_root, wait_seconds)
    return command, child_env


@contextlib.contextmanager
def process_environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> int:
    try:
        command, child_env = prepare(os.environ)
    except StartupError as exc:
        for line in exc.lines:
            say(line)
        return exc.exit_code
    host, port = (command[command.index(flag) + 1] for flag in ("--host", "--port"))
    say(f"starting MLflow on {host}:{port} with {child_env['MLFLOW_WORKERS']} worker(s)")
    sys.stderr.flush()
    os.execve(command[0], command, child_env)  # noqa: S606 - replace this process: signals reach MLflow
    return 0  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main())
