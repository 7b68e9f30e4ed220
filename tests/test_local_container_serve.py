"""`serve` of the local serving image (deploy/local/container.py), run on this machine without Docker.

The image runs `python3 -m deploy.local.container` with /opt/ml/model; here the same module serves the
tiny trained model on a loopback port: /ping, /invocations through code/inference.py and TF Serving's
REST API over HTTP, a clean stop on SIGTERM, and a container that stops (exit 1, one `error:` line)
when code/requirements.txt cannot be installed, as AWS's serving container does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from deploy.localmode.docker import free_port

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def start_serve(model_dir: Path, port: int, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "deploy.local.container", "--model-dir", str(model_dir), "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_ping(process: subprocess.Popen, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise AssertionError("serve did not answer /ping")


def test_serve_answers_the_container_contract(trained_model: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_serve(trained_model, port)
    try:
        wait_for_ping(process, url)
        answer = requests.post(
            f"{url}/invocations",
            json={"user_id": "u1", "k": 3},
            headers={"Accept": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "application/json"
        (prediction,) = answer.json()["predictions"]
        assert prediction["user_id"] == "u1" and len(prediction["items"]) == 3
        refused = requests.post(f"{url}/invocations", json={"user_id": "u1", "k": 0}, timeout=30)
        assert refused.status_code == 500
        assert json.loads(refused.json()["error"])["field"] == "k"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "serving" in process.stdout.read()


def test_serve_stops_when_requirements_cannot_be_installed(trained_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(trained_model, model)
    (model / "code" / "requirements.txt").write_text("no-such-package-ncf==1.0\n")
    process = start_serve(model, free_port(), PIP_NO_INDEX="1")  # never the network
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    assert (
        output.strip().splitlines()[-1]
        == f"error: pip install -r {model / 'code' / 'requirements.txt'} failed (see above)"
    )
