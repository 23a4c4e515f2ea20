"""A small real HTTP server standing in for MLflow where a test must see what MLflow would receive.

It records every request (headers, body size) and can stream a response slowly or never answer,
so the gateway's header hygiene, streaming and timeouts are observed on the wire.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, list[str]]
    body_size: int
    client_port: int = 0  # the gateway's end of the upstream connection


@dataclass
class EchoState:
    requests: list[Recorded] = field(default_factory=list)
    # Set by the test to let a held-back response or request finish.
    release: threading.Event = field(default_factory=threading.Event)
    body_bytes_seen: int = 0
    first_body_bytes: threading.Event = field(default_factory=threading.Event)


def _handler(state: EchoState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _read_body(self) -> int:
            length = int(self.headers.get("Content-Length") or 0)
            received = 0
            while received < length:
                chunk = self.rfile.read1(min(65536, length - received))
                if not chunk:
                    break
                received += len(chunk)
                state.body_bytes_seen += len(chunk)
                state.first_body_bytes.set()
            return received

        def _handle(self) -> None:
            size = self._read_body()
            headers: dict[str, list[str]] = {}
            for name, value in self.headers.items():
                headers.setdefault(name.lower(), []).append(value)
            state.requests.append(
                Recorded(self.command, self.path, headers, size, self.client_address[1])
            )
            if self.path.endswith("/held"):
                self._stream_held()
                return
            body = json.dumps({"path": self.path, "headers": headers, "body_size": size}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            # Hop-by-hop headers a proxy must not pass on, one of them named via Connection.
            self.send_header("Connection", "keep-alive, X-Upstream-Hop")
            self.send_header("X-Upstream-Hop", "secret")
            self.send_header("Keep-Alive", "timeout=5")
            self.send_header("X-Upstream-Normal", "kept")
            self.end_headers()
            self.wfile.write(body)

        def _stream_held(self) -> None:
            # First half now, second half only when the test says so.
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", "8")
            self.end_headers()
            self.wfile.write(b"first---")
            self.wfile.flush()
            state.release.wait(30)
            self.wfile.write(b"")

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler


@contextmanager
def echo_upstream() -> Iterator[tuple[str, EchoState]]:
    state = EchoState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


@contextmanager
def silent_upstream() -> Iterator[str]:
    """Accepts connections and reads, but never answers: MLflow hung."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()
