"""Find the served model: a model directory (`1/`, `code/`) or a `model.tar.gz` unpacked to a temp dir.

The layout is the one SageMaker unpacks into `/opt/ml/model`: numeric SavedModel version directories
(TF Serving serves the highest) and `code/inference.py`.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path


class LocalEndpointError(Exception):
    """A problem with what the user asked the local endpoint to serve; printed as `error: <message>`."""


@dataclass(frozen=True)
class ModelArtifact:
    """An unpacked model: its root (`/opt/ml/model` in the container) and the version TF Serving loads."""

    root: Path
    version_dir: Path
    temp_dir: Path | None = None

    @property
    def version(self) -> int:
        return int(self.version_dir.name)

    @property
    def code_dir(self) -> Path:
        return self.root / "code"

    def cleanup(self) -> None:
        """Remove the temp dir a `model.tar.gz` was unpacked into (nothing for a model directory)."""
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def latest_version(root: Path) -> Path:
    """The highest numeric subdirectory holding a `saved_model.pb`, as TF Serving's default policy picks."""
    versions = [
        p for p in root.iterdir() if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").is_file()
    ]
    if not versions:
        raise LocalEndpointError(
            f"{root} holds no SavedModel version directory (expected e.g. {root}/1/saved_model.pb)"
        )
    return max(versions, key=lambda p: int(p.name))


def open_model(path: Path) -> ModelArtifact:
    """Resolve `path` (a model directory or a `.tar.gz`) into a `ModelArtifact`; call `cleanup()` after."""
    if not path.exists():
        raise LocalEndpointError(f"model {path} does not exist")
    if path.is_dir():
        return ModelArtifact(path.resolve(), latest_version(path.resolve()))
    if not tarfile.is_tarfile(path):
        raise LocalEndpointError(f"model {path} is neither a directory nor a tar archive (model.tar.gz)")
    temp_dir = Path(tempfile.mkdtemp(prefix="ncf-model-"))
    try:
        with tarfile.open(path) as archive:
            archive.extractall(temp_dir, filter="data")
        return ModelArtifact(temp_dir, latest_version(temp_dir), temp_dir)
    except (tarfile.TarError, OSError, LocalEndpointError) as err:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise LocalEndpointError(f"cannot unpack {path}: {err}") from None
