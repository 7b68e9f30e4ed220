"""A model's code/requirements.txt: present only when it lists a package.

AWS's TensorFlow Serving container runs `pip install -r code/requirements.txt` at every start whenever
the file exists, even empty (serve.py), which stalls startup on an endpoint without internet access.
So the source bundle and repackaged models carry `inference/requirements.txt` only when it lists
something, `deploy` repackages an artifact whose code/requirements.txt lists nothing, and the local
container emulation runs pip exactly when AWS's container would.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from deploy_helpers import BUCKET, REGION, Recorder, write_model_archive

from deploy.cli import main
from deploy.local import container
from deploy.packaging import INFERENCE_DIR, has_empty_requirements, repackage_model, stage_source

pytest_plugins = ["deploy_fixtures"]

LISTS_NOTHING = ["", "\n", "# Intentionally empty: inference.py needs only the standard library.\n"]
LISTS_A_PACKAGE = "# for the handler\nrequests==2.32.3\n"


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def inference_dir(tmp_path: Path, requirements: str) -> Path:
    """A copy of inference/ with `requirements` as its requirements.txt."""
    folder = shutil.copytree(INFERENCE_DIR, tmp_path / "inference")
    (folder / "requirements.txt").write_text(requirements)
    return folder


def packaged_code(tmp_path: Path, folder: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(the source bundle's inference/, a repackaged model's code/) built from `folder`."""
    staged = stage_source(tmp_path / "source", inference_dir=folder)
    bundle = {
        p.relative_to(staged / "inference").as_posix(): p.read_bytes()
        for p in (staged / "inference").rglob("*")
    }
    model = write_model_archive(tmp_path / "model.tar.gz", with_code=False)
    code = {
        name.removeprefix("code/"): data
        for name, data in members(repackage_model(model, tmp_path / "repacked.tar.gz", folder)).items()
        if name.startswith("code/")
    }
    return bundle, code


def test_the_packaged_code_has_no_requirements_txt(tmp_path: Path) -> None:
    bundle, code = packaged_code(tmp_path, INFERENCE_DIR)
    assert "inference.py" in bundle and "inference.py" in code  # enough for the container's Python service
    assert "requirements.txt" not in bundle and "requirements.txt" not in code


@pytest.mark.parametrize("requirements", LISTS_NOTHING)
def test_a_requirements_txt_that_lists_nothing_is_left_out(tmp_path: Path, requirements: str) -> None:
    bundle, code = packaged_code(tmp_path, inference_dir(tmp_path, requirements))
    assert "requirements.txt" not in bundle and "requirements.txt" not in code


def test_a_requirements_txt_that_lists_a_package_travels(tmp_path: Path) -> None:
    bundle, code = packaged_code(tmp_path, inference_dir(tmp_path, LISTS_A_PACKAGE))
    assert bundle["requirements.txt"] == code["requirements.txt"] == LISTS_A_PACKAGE.encode()


def model_with_code(path: Path, requirements: str | None) -> Path:
    """A model.tar.gz with code/inference.py and, unless None, code/requirements.txt."""
    return write_model_archive(path, with_code=True, requirements=requirements)


@pytest.mark.parametrize(
    ("requirements", "empty"),
    [*((text, True) for text in LISTS_NOTHING), (LISTS_A_PACKAGE, False), (None, False)],
)
def test_has_empty_requirements(tmp_path: Path, requirements: str | None, empty: bool) -> None:
    assert has_empty_requirements(model_with_code(tmp_path / "model.tar.gz", requirements)) is empty


@pytest.mark.parametrize(("requirements", "repackaged"), [(LISTS_NOTHING[2], True), (LISTS_A_PACKAGE, False)])
def test_deploy_repackages_a_model_whose_requirements_list_nothing(
    moto_aws: None, recorder: Recorder, tmp_path: Path, requirements: str, repackaged: bool
) -> None:
    archive = model_with_code(tmp_path / "model.tar.gz", requirements)
    uri = f"s3://{BUCKET}/ncf/models/old/output/model.tar.gz"
    s3 = boto3.client("s3", region_name=REGION)
    s3.upload_file(str(archive), BUCKET, uri.removeprefix(f"s3://{BUCKET}/"))

    with recorder.recording():
        assert main(["deploy", "--model-data", uri], session_factory=recorder) == 0

    served = recorder.only("CreateModel")["PrimaryContainer"]["ModelDataUrl"]
    assert (served != uri) is repackaged
    if repackaged:
        s3.download_file(BUCKET, served.removeprefix(f"s3://{BUCKET}/"), str(tmp_path / "served.tar.gz"))
        code = members(tmp_path / "served.tar.gz")
        assert "code/requirements.txt" not in code
        assert code["code/inference.py"] == (INFERENCE_DIR / "inference.py").read_bytes()


@pytest.fixture
def pip_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The commands the local container's `install_requirements` runs (each succeeds)."""
    commands: list[list[str]] = []

    def run(command: list[str], **_: Any) -> subprocess.CompletedProcess:
        commands.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(container.subprocess, "run", run)
    return commands


@pytest.mark.parametrize("requirements", [*LISTS_NOTHING, LISTS_A_PACKAGE])
def test_the_local_container_runs_pip_whenever_requirements_txt_exists(
    tmp_path: Path, pip_runs: list[list[str]], requirements: str
) -> None:
    (tmp_path / "requirements.txt").write_text(requirements)
    container.install_requirements(tmp_path)
    assert pip_runs == [[sys.executable, "-m", "pip", "install", "-r", str(tmp_path / "requirements.txt")]]


def test_the_local_container_runs_no_pip_without_requirements_or_with_lib(
    tmp_path: Path, pip_runs: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    container.install_requirements(tmp_path)
    (tmp_path / "requirements.txt").write_text(LISTS_A_PACKAGE)
    (tmp_path / "lib").mkdir()
    with caplog.at_level(logging.WARNING, logger=container.LOG.name):
        container.install_requirements(tmp_path)
    assert pip_runs == []
    assert f"ignoring {tmp_path / 'requirements.txt'}" in caplog.text
