"""Wire the local endpoint together: model -> TF Serving -> container front -> runtime API over HTTPS.

One HTTPS listener answers `POST /endpoints/<name>/invocations` (the runtime API, for boto3),
`GET /ping` and `POST /invocations` (the container). TF Serving (real or stand-in) listens on a loopback
port, which `context.rest_uri` names. With the stand-in and `transport="inprocess"` (the default),
`inference.py`'s pooled `SESSION` gets an adapter for that URL that calls the stand-in directly: the
handler code and the JSON it sends and parses are unchanged, the loopback hop is skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import requests

from deploy.local.capture_writer import CaptureWriter
from deploy.local.container_server import ContainerFront
from deploy.local.httpserver import Server
from deploy.local.inprocess import InProcessAdapter
from deploy.local.model_artifact import LocalEndpointError, ModelArtifact, open_model
from deploy.local.model_server import ModelServer, start_model_server
from deploy.local.runtime_api import RuntimeApi
from deploy.local.tls import default_tls_dir, ensure_certificate, server_context

LOG = logging.getLogger("ncf.local")

DRAIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class EndpointConfig:
    """What `python -m deploy.local` was asked to serve, and how."""

    model: Path
    port: int = 8443
    host: str = "127.0.0.1"
    tls_dir: Path | None = None
    model_server: str = "auto"
    transport: str = "inprocess"
    region: str = "us-east-1"
    variant: str = "AllTraffic"
    capture_dir: Path | None = None  # write SageMaker-style data capture files here


class LocalEndpoint:
    """`start()`, then `serve_forever()`; `request_stop()` (signal-safe) ends it; then `close()`."""

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self.artifact: ModelArtifact | None = None
        self.model_server: ModelServer | None = None
        self.server: Server | None = None
        self.cert_path: Path | None = None
        self.cert_created = False
        self.transport = "http"

    def start(self) -> None:
        """Load everything and bind the HTTPS port; on failure, release what was started."""
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        config = self.config
        self.artifact = open_model(config.model)
        self.model_server = start_model_server(self.artifact, config.model_server)
        front = ContainerFront(
            self.artifact.code_dir, self.model_server.rest_port, tfs_grpc_port=self.model_server.grpc_port
        )
        session = getattr(front.module, "SESSION", None)
        if config.transport == "inprocess" and self.model_server.app is not None:
            if isinstance(session, requests.Session):
                base = f"http://localhost:{self.model_server.rest_port}/"
                session.mount(base, InProcessAdapter(self.model_server.app))
                self.transport = "inprocess"
            else:
                LOG.warning(
                    "inference.py has no requests.Session named SESSION: calling TF Serving over HTTP"
                )
        tls_dir = config.tls_dir or default_tls_dir()
        try:
            self.cert_path, key_path, self.cert_created = ensure_certificate(tls_dir)
        except OSError as err:
            raise LocalEndpointError(
                f"cannot write the TLS certificate in {tls_dir}: {err.strerror}"
            ) from None
        writer = CaptureWriter(config.capture_dir, config.variant) if config.capture_dir else None
        app = RuntimeApi(front, region=config.region, variant=config.variant, capture=writer)
        try:
            self.server = Server(
                (config.host, config.port),
                app,
                name="ncf-local-endpoint",
                ssl_context=server_context(self.cert_path, key_path),
            )
        except OSError as err:
            raise LocalEndpointError(
                f"cannot listen on {config.host}:{config.port}: {err.strerror}"
            ) from None

    @property
    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"https://{host}:{self.server.port}"

    def describe(self) -> list[str]:
        """Start-up lines for the user: where to send requests, which certificate to trust, what runs."""
        cert_note = "created" if self.cert_created else "reused"
        return [
            f"model: {self.artifact.root} (version {self.artifact.version})",
            f"TF Serving: {self.model_server.description}, handler transport: {self.transport}",
            f"TLS certificate ({cert_note}): {self.cert_path}",
            f"runtime API: POST {self.url}/endpoints/<any-name>/invocations; container: GET {self.url}/ping, "
            f"POST {self.url}/invocations",
            *(
                [f"data capture: {self.config.capture_dir} (variant {self.config.variant})"]
                if self.config.capture_dir
                else []
            ),
            f"ready: {self.url}",
        ]

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def request_stop(self) -> None:
        """Ask `serve_forever` to return; safe to call from a signal handler."""
        if self.server is not None:
            self.server.request_stop()

    def close(self) -> bool:
        """Drain in-flight requests, stop TF Serving, remove a temp model dir. True if nothing was cut off."""
        drained = True
        if self.server is not None:
            drained = self.server.drain(DRAIN_TIMEOUT_S)
        if self.model_server is not None:
            self.model_server.stop()
        if self.artifact is not None:
            self.artifact.cleanup()
        return drained
