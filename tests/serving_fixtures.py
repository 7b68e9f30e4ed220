"""Helpers for the serving tests: boto3 clients for the local HTTPS endpoint, runtime-API servers in a thread.

Not a conftest: the tests that need these import them, so nothing here runs for the other test files.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from deploy.invoke import make_client
from deploy.local.httpserver import App, Server, serve_in_thread
from deploy.local.process import EndpointProcess, local_endpoint_process
from deploy.local.runtime_api import RuntimeApi
from deploy.local.tls import ensure_certificate, server_context


@contextmanager
def trained_model_endpoint(
    trained_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EndpointProcess]:
    """The session's trained `model.tar.gz` (conftest's `trained_model`) served by `python -m deploy.local`
    in a child process, as SageMaker would serve it."""
    with local_endpoint_process(
        trained_model.parent / "model.tar.gz", tmp_path_factory.mktemp("tls")
    ) as running:
        yield running


def runtime_client(url: str, cert: Path) -> Any:
    """A boto3 `sagemaker-runtime` client for a local HTTPS URL, with dummy credentials."""
    return make_client(url, str(cert), "us-east-1", max_attempts=1)


@contextmanager
def https_server(app: App, tls_dir: Path, *, runtime: bool = True) -> Iterator[tuple[Server, str, Path]]:
    """Serve `app` (behind the runtime API route when `runtime`) over HTTPS on a free port, in a thread."""
    cert, key, _ = ensure_certificate(tls_dir)
    server = Server(
        ("127.0.0.1", 0),
        RuntimeApi(app, region="us-east-1") if runtime else app,
        name="test-endpoint",
        ssl_context=server_context(cert, key),
    )
    serve_in_thread(server)
    try:
        yield server, f"https://127.0.0.1:{server.port}", cert
    finally:
        server.shutdown()
        server.drain(5.0)
