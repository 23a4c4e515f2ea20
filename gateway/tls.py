"""Serving HTTPS: the server's TLS context, and the checks of its two files made at start."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The context the gateway serves HTTPS with: TLS 1.2 or newer, Python's default ciphers."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2

    def no_passphrase() -> str:
        raise ssl.SSLError("the key is encrypted")

    context.load_cert_chain(cert_file, key_file, password=no_passphrase)
    return context


def tls_problems(cert: Path | None, key: Path | None) -> list[str]:
    """Both files or neither, both readable, and a key that belongs to the certificate."""
    if cert is None and key is None:
        return []
    if cert is None or key is None:
        given, missing = (
            ("GATEWAY_TLS_CERT_FILE", "GATEWAY_TLS_KEY_FILE")
            if cert
            else ("GATEWAY_TLS_KEY_FILE", "GATEWAY_TLS_CERT_FILE")
        )
        return [f"{given} is set but {missing} is not — set both to serve HTTPS, or neither"]
    problems = []
    for name, path in (("GATEWAY_TLS_CERT_FILE", cert), ("GATEWAY_TLS_KEY_FILE", key)):
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            problems.append(
                f"{name}={path} cannot be read ({exc.strerror}) — point it at a readable PEM file"
            )
    if problems:
        return problems
    try:
        server_ssl_context(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        return [
            f"GATEWAY_TLS_CERT_FILE={cert} and GATEWAY_TLS_KEY_FILE={key} cannot be used "
            f"({exc.args[-1] if exc.args else exc}) — give a PEM certificate chain and its "
            "unencrypted PEM private key"
        ]
    return []
