"""Fixtures for the deploy/ tests (load with `pytest_plugins = ["deploy_fixtures"]`).

- `aws_env`: region, fake credentials, no user AWS/SageMaker config, SageMaker SDK telemetry opted
  out and its client-side role check off (it calls iam:SimulatePrincipalPolicy, which moto lacks),
  and a project config file (role, bucket, small timings) in NCF_CONFIG.
- `moto_aws` (in-process `mock_aws`) and `moto_server` (one `moto_server` process per test session
  on 127.0.0.1 and a free port, reset for each test, reached through AWS_ENDPOINT_URL).
- `recorder`: a session factory for `deploy.cli.main` with the moto shims; inside `recorder.recording()`
  it records every request any client makes (see deploy_helpers).
- `no_sdk_sleep`: the SDK's wait loops (`sagemaker.core.resources`) poll without sleeping.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from deploy_helpers import BUCKET, REGION, SDK_CONFIG, TEST_CONFIG, Recorder


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Fake AWS account and a project config file; returns the config file's path."""
    for name in list(os.environ):
        if name.startswith(("NCF_", "AWS_")) or name.startswith("SAGEMAKER_"):
            monkeypatch.delenv(name)
    sdk_config = tmp_path / "sagemaker-config.yaml"
    sdk_config.write_text(SDK_CONFIG)
    config = tmp_path / "ncf.toml"
    config.write_text(TEST_CONFIG)
    environment = {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(sdk_config),
        "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(sdk_config),
        "NCF_CONFIG": str(config),
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    _forget_sdk_clients()
    return config


def _forget_sdk_clients() -> None:
    """Drop the SDK's process-wide cached clients, which keep the endpoint and credentials of the test
    that created them: a CloudWatch Logs client made under in-process moto would otherwise call the
    real AWS in a later test that points every client at moto_server with AWS_ENDPOINT_URL."""
    from sagemaker.core.utils.logs import CloudWatchLogsClient
    from sagemaker.core.utils.utils import SageMakerClient, SingletonMeta

    SingletonMeta._instances.pop(CloudWatchLogsClient, None)
    SageMakerClient.reset()


@pytest.fixture
def no_sdk_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's wait loops poll without sleeping (moto jobs finish at once); a runaway loop fails."""
    from sagemaker.core import resources

    polls = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) > 20:
            raise AssertionError("an SDK wait loop polled 20 times: the resource never reached a final state")

    monkeypatch.setattr(resources, "time", SimpleNamespace(time=time.time, sleep=sleep))


@pytest.fixture
def moto_aws(aws_env: Path, no_sdk_sleep: None) -> Iterator[None]:
    """In-process moto for everything, with the project's bucket."""
    from moto import mock_aws

    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    """One moto_server for the test session, on 127.0.0.1 and a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executable = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def moto_server(
    moto_server_url: str, aws_env: Path, no_sdk_sleep: None, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The session's moto_server, reset, with the project's bucket; every client points at it."""
    request = urllib.request.Request(f"{moto_server_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server_url)
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    return moto_server_url


@pytest.fixture
def cli(moto_aws: None, recorder: Recorder, capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process against moto, recording its requests; returns (exit status, stdout, stderr).
    (Modules whose flows need more define their own `cli`, which takes precedence.)"""

    def run(*argv: str) -> tuple[int, str, str]:
        from deploy.cli import main

        with recorder.recording():
            status = main(list(argv), session_factory=recorder)
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
