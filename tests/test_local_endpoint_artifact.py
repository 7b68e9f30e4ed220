"""Resolving what `python -m deploy.local --model` serves: a model directory or a model.tar.gz."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

import pytest

from deploy.local.__main__ import main
from deploy.local.model_artifact import LocalEndpointError, open_model


def model_dir(root: Path, versions: tuple[str, ...] = ("1",)) -> Path:
    for version in versions:
        (root / version / "variables").mkdir(parents=True)
        (root / version / "saved_model.pb").write_bytes(b"pb")
    (root / "code").mkdir(parents=True, exist_ok=True)
    (root / "code" / "inference.py").write_text("")
    return root


def test_directory_serves_its_highest_version(tmp_path):
    artifact = open_model(model_dir(tmp_path / "m", ("1", "10", "2")))
    assert artifact.version == 10 and artifact.code_dir == tmp_path / "m" / "code"
    artifact.cleanup()
    assert (tmp_path / "m").is_dir(), "cleanup never removes a user's directory"


def test_archive_is_unpacked_and_removed(tmp_path):
    source = model_dir(tmp_path / "m")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for entry in source.iterdir():
            tar.add(entry, arcname=entry.name)
    artifact = open_model(archive)
    assert artifact.version == 1 and (artifact.code_dir / "inference.py").is_file()
    assert artifact.root != source
    artifact.cleanup()
    assert not artifact.root.exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: model_dir(p / "m", ()), "no SavedModel version directory"),
        (lambda p: (p / "model.txt", (p / "model.txt").write_text("x"))[0], "neither a directory nor a tar"),
    ],
)
def test_problems_are_explained(tmp_path, make, message):
    with pytest.raises(LocalEndpointError, match=message):
        open_model(make(tmp_path))


def test_archive_without_a_version_leaves_nothing_behind(tmp_path, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_dir(tmp_path / "m", ()) / "code", arcname="code")
    with pytest.raises(LocalEndpointError, match="no SavedModel version directory"):
        open_model(archive)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_command_line_reports_a_missing_model_without_traceback(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "nope"), "--port", "0", "--tls-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: model {tmp_path / 'nope'} does not exist\n"
