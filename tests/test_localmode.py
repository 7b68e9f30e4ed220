"""SDK local mode without Docker: the SDK workarounds on the SDK's own code, image tags, checks, records.

The end-to-end run in Docker containers is tests/test_localmode_e2e.py.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from ncf.errors import NcfError

from deploy import cli
from deploy.localmode import build, docker, hosting, sdk_fixes
from deploy.localmode.runtime import LocalRuntimeClient

REPO = Path(__file__).resolve().parents[1]


# --- SDK workarounds, applied to the SDK's own compose-file code ----------------------------------------


def sdk_training_container(tmp_path: Path, entrypoint: list[str] | None) -> object:
    from sagemaker.core.shapes import Channel, DataSource, FileSystemDataSource
    from sagemaker.train.local.local_container import _LocalContainer

    channel = Channel(
        channel_name="train",
        data_source=DataSource(
            file_system_data_source=FileSystemDataSource.model_construct(
                directory_path=str(tmp_path), file_system_type="EFS"
            )
        ),
    )
    return _LocalContainer(
        training_job_name="job",
        instance_type="local",
        instance_count=1,
        image="ncf-sagemaker/tensorflow-training:x",
        container_root=str(tmp_path),
        input_data_config=[channel],
        environment={},
        hyper_parameters={},
        container_entrypoint=entrypoint,
        container_arguments=None,
    )


def test_sdk_training_service_without_entrypoint_runs_train(tmp_path: Path) -> None:
    container = sdk_training_container(tmp_path, entrypoint=None)
    assert "command" not in container._create_docker_host("algo-1", {}, [])  # the SDK 3.27 gap
    with sdk_fixes.local_mode_fixes():
        service = container._create_docker_host("algo-1", {}, [])
    assert service["command"] == ["train"]
    assert "command" not in container._create_docker_host("algo-1", {}, [])  # undone on exit


def test_sdk_training_service_with_entrypoint_is_unchanged(tmp_path: Path) -> None:
    container = sdk_training_container(tmp_path, entrypoint=["/bin/bash", "-c", "run"])
    with sdk_fixes.local_mode_fixes():
        service = container._create_docker_host("algo-1", {}, [])
    assert service["entrypoint"] == ["/bin/bash", "-c", "run"]
    assert "command" not in service


def test_sdk_training_service_passes_the_forwarders_dollars_through_compose(tmp_path: Path) -> None:
    import yaml

    from deploy.signals import forwarding_command

    entrypoint, arguments = forwarding_command(["/bin/bash"], ["-c", "run $JOB"])
    container = sdk_training_container(tmp_path, entrypoint=entrypoint)
    container.container_arguments = arguments
    with sdk_fixes.local_mode_fixes():
        container._generate_compose_file({}, [])  # the SDK writes docker-compose.yaml
    compose = docker.compose_command()
    if compose is None:
        pytest.skip("no docker compose / docker-compose to read the file back")
    resolved = subprocess.run(
        [*compose, "-f", str(tmp_path / "docker-compose.yaml"), "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert resolved.returncode == 0, resolved.stderr  # 3.27 alone: "Invalid interpolation format"
    service = yaml.safe_load(resolved.stdout)["services"]["algo-1"]
    # `config` prints the values compose resolved, escaped again for a compose file: `$` as `$$`.
    assert [part.replace("$$", "$") for part in service["entrypoint"]] == [*entrypoint, *arguments]


def test_sdk_serving_port_is_published_on_loopback_only(tmp_path: Path) -> None:
    import boto3
    from sagemaker.core.local.image import _SageMakerContainer
    from sagemaker.core.local.local_session import LocalSession

    container = _SageMakerContainer.__new__(_SageMakerContainer)
    container.sagemaker_session = LocalSession(boto_session=boto3.Session(region_name="us-east-1"))
    container.sagemaker_session.config = {"local": {"serving_port": 18080}}
    container.image, container.instance_type, container.is_studio = "img", "local", False
    container.container_root = str(tmp_path)
    container.container_entrypoint = container.container_arguments = None
    before = container._create_docker_host("h", [], set(), "serve", [])
    assert before["ports"] == ["18080:8080"]  # every interface: the SDK 3.27 gap
    with sdk_fixes.local_mode_fixes():
        after = container._create_docker_host("h", [], set(), "serve", [])
    assert after["ports"] == ["127.0.0.1:18080:8080"]
    assert after["command"] == "serve"


# --- image tags -----------------------------------------------------------------------------------------


def test_image_tags_change_only_with_their_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = build.image_tags()
    assert before == build.image_tags()
    copy = tmp_path / "images"
    shutil.copytree(build.IMAGES_DIR, copy)
    monkeypatch.setattr(build, "IMAGES_DIR", copy)
    assert build.image_tags() == before
    (copy / "Dockerfile.serving").write_text((copy / "Dockerfile.serving").read_text() + "# changed\n")
    serving_changed = build.image_tags()
    assert serving_changed.serving != before.serving
    assert (serving_changed.base, serving_changed.training) == (before.base, before.training)
    (copy / "requirements-base.txt").write_text("tensorflow-cpu==2.21.0\n")
    base_changed = build.image_tags()
    assert base_changed.base != before.base
    assert base_changed.training != before.training and base_changed.rootfs == before.rootfs


def test_image_tags_follow_the_served_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = build.image_tags()
    copy = tmp_path / "deploy"
    for name in build.SERVING_MODULES:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(build.DEPLOY_DIR / name, copy / name)
    monkeypatch.setattr(build, "DEPLOY_DIR", copy)
    assert build.image_tags() == before
    (copy / "local" / "container_server.py").write_text("# changed\n")
    assert build.image_tags().serving != before.serving


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
            "Types: deb\nURIs: http://mirror.example/debian-security\n",
            "http://mirror.example/debian",
        ),
        ("deb [arch=amd64] http://ftp.example/debian/ bookworm main\n", "http://ftp.example/debian"),
        ("# nothing here\n", build.DEFAULT_MIRROR),
    ],
)
def test_debian_mirror_comes_from_apt_sources(tmp_path: Path, text: str, expected: str) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(text)
    assert build.debian_mirror([sources, tmp_path / "missing.list"]) == expected


# --- checks that name the fix ---------------------------------------------------------------------------


def test_no_docker_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    problem = docker.docker_problem()
    assert problem is not None and problem.startswith("Docker is not installed")
    assert "apt-get install" in problem
    with pytest.raises(NcfError, match="Docker is not installed"):
        docker.require_docker()


def test_stopped_daemon_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text(
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    problem = docker.docker_problem()
    assert problem is not None and "daemon is not reachable" in problem and "start dockerd" in problem


def test_port_in_use_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(NcfError, match=f"port 127.0.0.1:{port} is in use"):
            docker.require_free_port(port)


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deploy", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_cli_train_local_without_docker_is_one_error_line(tmp_path: Path, tiny_channels: Path) -> None:
    env = {"PATH": str(tmp_path), "NCF_LOCAL_DIR": str(tmp_path / "local"), "HOME": str(tmp_path)}
    result = run_cli("train", "--local", "--prepared", str(tiny_channels), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: Docker is not installed (no `docker` on PATH): {docker.INSTALL_HINT}"
    ]
    assert not (tmp_path / "local").exists() or not any((tmp_path / "local").iterdir())


def test_cli_train_local_needs_prepared_channels(tmp_path: Path) -> None:
    (tmp_path / "prepared" / "train").mkdir(parents=True)
    result = run_cli("train", "--local", "--prepared", str(tmp_path / "prepared"))
    assert result.returncode == 2
    assert "no validation, test folder" in result.stderr and "make prepare" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_deploy_local_port_in_use_is_one_error_line(tmp_path: Path) -> None:
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = cli.main(["deploy", "--local", "--model-data", str(model), "--port", str(port)])
    assert status == 2


def test_cli_deploy_local_without_a_local_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status = cli.main(["deploy", "--local", "--set", f"local_dir={tmp_path}"])
    assert status == 2
    assert "no local training job with a model.tar.gz" in capsys.readouterr().err


def test_prepared_and_tuning_style_need_local(tiny_channels: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["train", "--prepared", str(tiny_channels)]) == 2
    assert "go with --local" in capsys.readouterr().err


# --- the local runtime client fails like boto3's ----------------------------------------------------------


class _Container(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"error": json.dumps({"error": "k must be positive", "field": "k", "status": 400})})
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


def test_local_runtime_client_raises_model_error_for_a_container_error() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Container)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = LocalRuntimeClient(server.server_address[1])
        with pytest.raises(ClientError) as raised:
            client.invoke_endpoint(EndpointName="e", Body=b"{}", ContentType="application/json")
    finally:
        server.shutdown()
    from deploy.invoke import describe_model_error

    assert raised.value.response["Error"]["Code"] == "ModelError"
    assert raised.value.response["OriginalStatusCode"] == 500
    message = describe_model_error(raised.value.response)
    assert message == "the endpoint refused the request: k must be positive (field: k)"


def test_local_runtime_client_without_endpoint_is_a_connection_error() -> None:
    client = LocalRuntimeClient(docker.free_port())
    with pytest.raises(EndpointConnectionError):
        client.invoke_endpoint(EndpointName="e", Body=b"{}", ContentType="application/json")


def test_cli_invoke_local_without_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    port = str(docker.free_port())
    status = cli.main(
        ["invoke", "--local", "--user", "u1", "--set", f"local_dir={tmp_path}", "--set", f"local_port={port}"]
    )
    assert status == 1
    assert (
        capsys.readouterr().err.strip() == "error: cannot reach the local endpoint: is the endpoint running?"
    )


# --- endpoint records and teardown -------------------------------------------------------------------------


def test_teardown_local_removes_records_of_dead_endpoints(tmp_path: Path) -> None:
    from deploy.config import load_settings

    settings = load_settings(None, {"local_dir": str(tmp_path)})
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    hosting.records_dir(settings).mkdir(parents=True)
    record = hosting.EndpointRecord("ncf-endpoint", "http://127.0.0.1:1", 1, done.pid, "", "m")
    hosting.record_path(settings, "ncf-endpoint").write_text(json.dumps(record.__dict__))
    assert hosting.teardown_local(settings) == ["local endpoint ncf-endpoint: deleted"]
    assert hosting.all_records(settings) == []
    assert hosting.teardown_local(settings) == []


def test_a_zombie_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    import time

    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not hosting._alive(child.pid)  # exited, not yet reaped
    child.wait()


# --- why a local training job failed ---------------------------------------------------------------


def test_failure_reason_is_train_py_error_line_from_the_compose_log(tmp_path: Path) -> None:
    import io

    from deploy.localmode.training import LogTail, failure_reason

    shown = io.StringIO()
    log = LogTail(shown)
    text = (
        "\x1b[36malgo-1_1  |\x1b[0m Executing command: /usr/bin/python3 train.py --epochs 0\n"
        "\x1b[36malgo-1_1  |\x1b[0m error: hyperparameter epochs: must be at least 1, got 0\n"
        "\x1b[36malgo-1_1  |\x1b[0m Command failed with exit code 2.\n"
    )
    log.write(text)
    assert shown.getvalue() == text  # the user still sees the whole log
    reason = failure_reason(tmp_path, log.lines)
    assert reason == "train.py: error: hyperparameter epochs: must be at least 1, got 0"


def test_failure_reason_falls_back_to_the_failure_file(tmp_path: Path) -> None:
    from deploy.localmode.training import failure_reason

    (tmp_path / "algo-1" / "output").mkdir(parents=True)
    (tmp_path / "algo-1" / "output" / "failure").write_text(
        "Traceback (most recent call last):\n  File x\nMemoryError: out of memory\n"
    )
    assert failure_reason(tmp_path, ["no error line"]) == "MemoryError: out of memory"
