"""deploy/packaging.py: the training source bundle and model repackaging."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from deploy_helpers import write_model_archive
from ncf.errors import NcfError

from deploy.packaging import (
    INFERENCE_DIR,
    has_handler,
    repackage_model,
    stage_source,
    write_tarball,
)


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_source_bundle_has_training_code_and_serving_code_and_is_reproducible(tmp_path: Path) -> None:
    staged = stage_source(tmp_path / "source")
    (staged / "ncf" / "__pycache__").mkdir(exist_ok=True)
    (staged / "ncf" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"bytecode")
    first = write_tarball(staged, tmp_path / "a.tar.gz")
    second = write_tarball(staged, tmp_path / "b.tar.gz")
    assert first.read_bytes() == second.read_bytes()
    names = set(members(first))
    assert {"train.py", "ncf/reporting.py", "inference/inference.py"} <= names
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)


def test_stage_source_needs_a_checkout(tmp_path: Path) -> None:
    with pytest.raises(NcfError, match=r"train\.py is missing"):
        stage_source(tmp_path / "out", training_dir=tmp_path / "nowhere")


@pytest.mark.parametrize("with_code", [True, False])
def test_repackage_replaces_code_and_keeps_the_model(tmp_path: Path, with_code: bool) -> None:
    original = write_model_archive(tmp_path / "model.tar.gz", with_code=with_code)
    assert has_handler(original) is with_code
    repacked = repackage_model(original, tmp_path / "repacked.tar.gz")
    contents = members(repacked)
    assert contents["code/inference.py"] == (INFERENCE_DIR / "inference.py").read_bytes()
    assert contents["1/saved_model.pb"] == b"savedmodel"
    assert has_handler(repacked)
    again = repackage_model(original, tmp_path / "again.tar.gz")
    assert again.read_bytes() == repacked.read_bytes()


def test_repackage_accepts_dot_slash_names_and_refuses_non_models(tmp_path: Path) -> None:
    dotted = tmp_path / "dotted.tar.gz"
    source = tmp_path / "tree"
    (source / "1").mkdir(parents=True)
    (source / "1" / "saved_model.pb").write_bytes(b"pb")
    with tarfile.open(dotted, "w:gz") as tar:
        tar.add(source, arcname=".")
    assert "1/saved_model.pb" in members(repackage_model(dotted, tmp_path / "out.tar.gz"))

    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(NcfError, match="no SavedModel under 1/"):
        repackage_model(empty, tmp_path / "never.tar.gz")
