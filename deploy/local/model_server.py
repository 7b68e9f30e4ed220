"""Start TF Serving for the local endpoint: the real `tensorflow_model_server` if on PATH, else the stand-in.

The real binary is started as the container starts it (`--port`, `--rest_api_port`, `--model_name=model`,
`--model_base_path=<model root>`) and waited for until `GET /v1/models/model` reports every version
AVAILABLE. The stand-in (`tfserving_standin.py`) serves the same REST routes from this process on a
loopback port; only it can also be called without a socket (`app`), which the endpoint uses for the
in-process transport. TensorFlow is imported only when the stand-in is used.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Protocol

import requests

from deploy.local.httpserver import App, Server, serve_in_thread
from deploy.local.model_artifact import LocalEndpointError, ModelArtifact

LOG = logging.getLogger("ncf.local.model_server")

BINARY = "tensorflow_model_server"
MODEL_NAME = "model"
START_TIMEOUT_S = 120.0


class ModelServer(Protocol):
    rest_port: int
    grpc_port: int | None
    app: App | None
    description: str

    def stop(self) -> None: ...


@dataclass
class StandinModelServer:
    """The in-process stand-in, listening on a loopback port in a daemon thread."""

    server: Server
    app: App
    grpc_port: int | None = None

    @property
    def rest_port(self) -> int:
        return self.server.port

    @property
    def description(self) -> str:
        return f"built-in TF Serving stand-in at http://localhost:{self.rest_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.drain(timeout_s=5.0)


@dataclass
class BinaryModelServer:
    """A `tensorflow_model_server` child process."""

    process: subprocess.Popen[bytes]
    rest_port: int
    grpc_port: int
    app: App | None = None

    @property
    def description(self) -> str:
        return f"{BINARY} (pid {self.process.pid}) at http://localhost:{self.rest_port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_available(server: BinaryModelServer) -> None:
    url = f"http://localhost:{server.rest_port}/v1/models/{MODEL_NAME}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise LocalEndpointError(f"{BINARY} exited with status {server.process.returncode} while loading")
        try:
            answer = requests.get(url, timeout=2)
            versions = answer.json().get("model_version_status", []) if answer.ok else []
            if versions and all(v.get("state") == "AVAILABLE" for v in versions):
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.25)
    server.stop()
    raise LocalEndpointError(f"{BINARY} did not load the model within {START_TIMEOUT_S:g} s")


def start_binary(binary: str, artifact: ModelArtifact) -> BinaryModelServer:
    """Run the real TF Serving on free loopback ports and wait until the model is AVAILABLE."""
    rest_port, grpc_port = _free_port(), _free_port()
    command = [
        binary,
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_name={MODEL_NAME}",
        f"--model_base_path={artifact.root}",
    ]
    LOG.info("starting %s", " ".join(command))
    server = BinaryModelServer(subprocess.Popen(command), rest_port, grpc_port)
    _wait_until_available(server)
    return server


def start_standin(artifact: ModelArtifact) -> StandinModelServer:
    """Load the SavedModel in this process and serve it on a free loopback port."""
    try:
        from deploy.local.tfserving_standin import SavedModelServable  # imports TensorFlow (seconds)
    except ImportError as err:
        raise LocalEndpointError(
            f"the built-in TF Serving stand-in needs TensorFlow ({err}); install it or put {BINARY} on PATH"
        ) from None
    servable = SavedModelServable(artifact, MODEL_NAME)
    server = Server(("127.0.0.1", 0), servable, name="tfs-standin")
    serve_in_thread(server)
    return StandinModelServer(server, servable)


def start_model_server(artifact: ModelArtifact, choice: str) -> ModelServer:
    """`choice`: `auto` (the binary when on PATH), `binary` (must be on PATH) or `standin`."""
    binary = shutil.which(BINARY)
    if choice == "binary" and binary is None:
        raise LocalEndpointError(f"--model-server binary: {BINARY} is not on PATH")
    if choice != "standin" and binary is not None:
        return start_binary(binary, artifact)
    return start_standin(artifact)
