"""Choosing and running TF Serving: a `tensorflow_model_server` on PATH is started like the container does.

The binary is not installable here, so a small fake with the same flags and REST status route stands in.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from deploy.local.model_artifact import LocalEndpointError, ModelArtifact
from deploy.local.model_server import BINARY, BinaryModelServer, start_model_server

FAKE_SERVER = """
    import json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    flags = dict(arg.lstrip("-").split("=", 1) for arg in sys.argv[1:])
    with open(flags["model_base_path"] + "/argv.json", "w") as handle:
        json.dump(sys.argv[1:], handle)
    if flags["model_name"] != "model":
        sys.exit(3)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    HTTPServer(("127.0.0.1", int(flags["rest_api_port"])), Handler).serve_forever()
"""


@pytest.fixture
def artifact(tmp_path: Path) -> ModelArtifact:
    (tmp_path / "model" / "1").mkdir(parents=True)
    return ModelArtifact(tmp_path / "model", tmp_path / "model" / "1")


def install_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / BINARY
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(source))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_binary_on_path_is_started_like_the_container_does(tmp_path, monkeypatch, artifact):
    install_fake(tmp_path, monkeypatch, FAKE_SERVER)
    server = start_model_server(artifact, "auto")
    try:
        assert isinstance(server, BinaryModelServer) and server.app is None
        argv = json.loads((artifact.root / "argv.json").read_text())
        assert argv == [
            f"--port={server.grpc_port}",
            f"--rest_api_port={server.rest_port}",
            "--model_name=model",
            f"--model_base_path={artifact.root}",
        ]
        status = requests.get(f"http://localhost:{server.rest_port}/v1/models/model", timeout=5).json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
    finally:
        server.stop()
    assert server.process.poll() is not None


def test_a_binary_that_dies_while_loading_is_reported(tmp_path, monkeypatch, artifact):
    install_fake(tmp_path, monkeypatch, "import sys\nsys.exit(7)\n")
    with pytest.raises(LocalEndpointError, match="exited with status 7"):
        start_model_server(artifact, "binary")


def test_asking_for_the_binary_when_it_is_missing(monkeypatch, artifact):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(LocalEndpointError, match=f"{BINARY} is not on PATH"):
        start_model_server(artifact, "binary")
