"""The gateway terminates TLS itself (GATEWAY_TLS_CERT_FILE, GATEWAY_TLS_KEY_FILE).

A self-signed certificate made here; clients that verify against it (urllib, the mlflow client with
MLFLOW_TRACKING_SERVER_CERT_PATH) talk HTTPS to the gateway, sign-in cookies are Secure, and bad
TLS settings stop `serve` at start with the fix.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.devstack import Child, free_port, start_child, stop_child
from tests.helpers import (
    ADMIN_PASSWORD,
    GATEWAY_BIN,
    MlflowServer,
    RedisServer,
    gateway_env,
    run_cli,
)

mlflow = pytest.importorskip("mlflow")


def make_certificate(directory: Path, name: str = "gateway") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its unencrypted key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlflow-gateway test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class TlsGateway:
    child: Child
    url: str
    env: dict[str, str]
    cert: Path


def _verifying_context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def _wait_https(url: str, context: ssl.SSLContext, child: Child, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{child.tail(40)}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready:\n{child.tail(40)}")


@pytest.fixture(scope="module")
def tls_gateway(
    tmp_path_factory: pytest.TempPathFactory,
    mlflow_server: MlflowServer,
    redis_server: RedisServer,
) -> Iterator[TlsGateway]:
    workdir = tmp_path_factory.mktemp("tls-gateway")
    cert, key = make_certificate(workdir)
    port = free_port()
    env = gateway_env(
        mlflow_server.url,
        redis_server.url,
        workdir,
        port,
        GATEWAY_TLS_CERT_FILE=str(cert),
        GATEWAY_TLS_KEY_FILE=str(key),
    )
    child = start_child("gateway", [GATEWAY_BIN, "serve"], workdir / "gateway.log", env)
    url = f"https://127.0.0.1:{port}"
    try:
        _wait_https(f"{url}/.gateway/healthz", _verifying_context(cert), child)
    except Exception:
        stop_child(child)
        raise
    yield TlsGateway(child, url, env, cert)
    stop_child(child)


def test_https_with_a_verified_certificate(tls_gateway: TlsGateway) -> None:
    context = _verifying_context(tls_gateway.cert)
    with urllib.request.urlopen(f"{tls_gateway.url}/.gateway/healthz", context=context) as response:
        assert response.status == 200
    # A client that trusts only the system's authorities refuses the self-signed certificate:
    # the test really verifies.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"{tls_gateway.url}/.gateway/healthz", timeout=5)


def test_no_cleartext_on_the_tls_port(tls_gateway: TlsGateway) -> None:
    port = urllib.parse.urlsplit(tls_gateway.url).port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/.gateway/healthz")
        status: int | None = connection.getresponse().status
    except (http.client.HTTPException, OSError):
        status = None  # the TLS listener dropped the cleartext request
    finally:
        connection.close()
    assert status != 200


def test_sign_in_cookie_is_secure(tls_gateway: TlsGateway) -> None:
    form = urllib.parse.urlencode(
        {"username": "admin", "password": ADMIN_PASSWORD, "next": "/"}
    ).encode()
    request = urllib.request.Request(
        f"{tls_gateway.url}/.gateway/login",
        data=form,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": tls_gateway.url,
        },
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    opener = urllib.request.build_opener(
        NoRedirect, urllib.request.HTTPSHandler(context=_verifying_context(tls_gateway.cert))
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(request, timeout=30)
    assert answer.value.code == 303
    cookie = answer.value.headers["Set-Cookie"]
    assert cookie.startswith("__Host-mlgw_session=")
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_mlflow_client_over_https(
    tls_gateway: TlsGateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = run_cli("tokens", "create", "tls", "--user", "admin", env=tls_gateway.env)
    assert token.returncode == 0, token.stderr
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token.stdout.strip().splitlines()[-1])
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(tls_gateway.cert))
    client = mlflow.MlflowClient(tls_gateway.url)
    experiment_id = client.create_experiment(f"tls-{free_port()}")
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "over", "https")
    assert client.get_run(run.info.run_id).data.params == {"over": "https"}


def _serve_refused(tmp_path: Path, **tls: str) -> str:
    env = gateway_env("http://127.0.0.1:9", "redis://127.0.0.1:9/0", tmp_path, free_port(), **tls)
    result = run_cli("serve", env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    return result.stderr


def test_tls_settings_are_checked_at_start(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    other_cert, _ = make_certificate(tmp_path, "other")

    output = _serve_refused(tmp_path, GATEWAY_TLS_CERT_FILE=str(cert))
    assert "GATEWAY_TLS_CERT_FILE is set but GATEWAY_TLS_KEY_FILE is not — set both" in output

    output = _serve_refused(
        tmp_path, GATEWAY_TLS_CERT_FILE=str(cert), GATEWAY_TLS_KEY_FILE=str(tmp_path / "nope.key")
    )
    assert f"GATEWAY_TLS_KEY_FILE={tmp_path / 'nope.key'} cannot be read" in output

    output = _serve_refused(
        tmp_path, GATEWAY_TLS_CERT_FILE=str(other_cert), GATEWAY_TLS_KEY_FILE=str(key)
    )
    assert "cannot be used" in output and "unencrypted PEM private key" in output
    # The key's bytes never reach the output.
    assert key.read_text().splitlines()[1] not in output


def test_image_healthcheck_and_doctor_speak_tls(tls_gateway: TlsGateway) -> None:
    port = str(urllib.parse.urlsplit(tls_gateway.url).port)
    script = Path(__file__).resolve().parents[2] / "deploy" / "gateway" / "healthcheck.py"
    env = {"GATEWAY_PORT": port, "GATEWAY_TLS_CERT_FILE": str(tls_gateway.cert)}
    answer = subprocess.run(
        [sys.executable, str(script), "/.gateway/healthz"], env=env, check=False
    )
    assert answer.returncode == 0
    doctor = run_cli("doctor", env=tls_gateway.env)
    assert doctor.returncode == 0, doctor.stdout
    [tls_line] = [line for line in doctor.stdout.splitlines() if line.split()[1] == "tls"]
    assert tls_line.startswith("ok") and "renew soon (1 day(s) left)" in tls_line
