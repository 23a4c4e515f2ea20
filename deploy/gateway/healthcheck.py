"""Container health check of the gateway image: GET a path on the gateway's own port.

    python healthcheck.py /.gateway/healthz

Plain HTTP, or HTTPS when the gateway terminates TLS itself (GATEWAY_TLS_CERT_FILE). The
certificate is not verified here: it names the public host, and this check talks to 127.0.0.1 in
the same container. Exit 0 when the gateway answers 200, 1 otherwise.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request


def main(path: str) -> int:
    port = os.environ.get("GATEWAY_PORT", "5000")
    tls = any(os.environ.get(f"GATEWAY_TLS_CERT_FILE{suffix}") for suffix in ("", "_FILE"))
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # loopback liveness only; see the docstring
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=4, context=context) as response:  # noqa: S310
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/.gateway/healthz"))
