"""A small threaded HTTP/1.1 server (stdlib only) shared by the TF Serving stand-in and the HTTPS front.

Why not `http.server` as is: the local endpoint must keep connections alive (boto3 reuses them), answer
each response in one write (headers and body apart meet Nagle's algorithm and delayed ACKs: +40 ms),
do the TLS handshake in the connection's thread rather than the accept loop, and drain in-flight
requests on SIGTERM. Applications are plain functions `Request -> Response`, so they can also be called
without a socket (see `inprocess.py`).
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = logging.getLogger("ncf.local.http")

KEEPALIVE_IDLE_S = 30.0


@dataclass(frozen=True)
class Request:
    """One HTTP request; `headers` is case-insensitive (an `email.message.Message`-like mapping)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Response:
    """One HTTP response; `content_type` None sends no Content-Type header."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


App = Callable[[Request], Response]


def json_error(status: int, message: str) -> Response:
    """`{"error": message}`, the error body TF Serving and the container's nginx use."""
    return Response(status, json.dumps({"error": message}).encode())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = KEEPALIVE_IDLE_S
    server: Server

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def _dispatch(self) -> None:
        with self.server.tracking():
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                response = json_error(411, "chunked request bodies are not supported: send Content-Length")
                self.close_connection = True
            elif not (self.headers.get("Content-Length") or "0").isdigit():
                response = json_error(400, "invalid Content-Length")
                self.close_connection = True
            else:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, self.headers, body)
                try:
                    response = self.server.app(request)
                except Exception:
                    LOG.exception("unhandled error answering %s %s", self.command, self.path)
                    response = json_error(500, "internal error in the local endpoint")
            if self.server.draining:
                self.close_connection = True
            self._send(response)

    def _send(self, response: Response) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Server: {self.server.name}",
            f"Date: {formatdate(usegmt=True)}",
            f"Content-Length: {len(response.body)}",
        ]
        if response.content_type:
            lines.append(f"Content-Type: {response.content_type}")
        lines.extend(f"{name}: {value}" for name, value in response.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + (b"" if self.command == "HEAD" else response.body))
        self.log_request(response.status, len(response.body))

    def log_message(self, format: str, *args: object) -> None:
        LOG.debug("%s %s", self.address_string(), format % args)


class Server(ThreadingHTTPServer):
    """Thread-per-connection server with an in-flight request count for graceful shutdown."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], app: App, *, name: str, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.app = app
        self.name = name
        self.ssl_context = ssl_context
        self.draining = False
        self._in_flight = 0
        self._idle = threading.Condition()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def tracking(self) -> _InFlight:
        return _InFlight(self)

    def request_stop(self) -> None:
        """Make `serve_forever` return soon; safe from a signal handler running on its own thread."""
        self.draining = True
        threading.Thread(target=self.shutdown, name=f"{self.name}-stop", daemon=True).start()

    def drain(self, timeout_s: float) -> bool:
        """After `serve_forever` returned: wait for in-flight requests, then close the listening socket."""
        self.draining = True
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._in_flight and time.monotonic() < deadline:
                self._idle.wait(deadline - time.monotonic())
            finished = self._in_flight == 0
        self.server_close()
        return finished

    def handle_error(self, request: object, client_address: object) -> None:
        LOG.debug("connection from %s failed", client_address, exc_info=True)


class _InFlight:
    def __init__(self, server: Server) -> None:
        self.server = server

    def __enter__(self) -> None:
        with self.server._idle:
            self.server._in_flight += 1

    def __exit__(self, *exc: object) -> None:
        with self.server._idle:
            self.server._in_flight -= 1
            self.server._idle.notify_all()


def serve_in_thread(server: Server) -> threading.Thread:
    """Run `server.serve_forever` in a daemon thread (for the internal TF Serving stand-in)."""
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), name=server.name, daemon=True)
    thread.start()
    return thread
