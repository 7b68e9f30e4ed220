"""Local archives SageMaker needs: the training source bundle and a model.tar.gz with current serving code.

- The training job's source is `training/` plus a copy of `inference/` at `inference/`: `train.py`
  copies that folder into MODEL_DIR/code, so every model.tar.gz a job writes can be served as is.
- `repackage_model` swaps the `code/` of any model.tar.gz for the current `inference/`, so a fix to
  the handler reaches an endpoint without retraining.
- `inference/requirements.txt` travels only when it lists a package: AWS's serving container runs
  `pip install -r code/requirements.txt` at every start whenever the file exists, even empty, which
  stalls startup on an endpoint without internet access (`code/inference.py` alone turns its Python
  service on). A model.tar.gz whose `code/` has such a file (`has_empty_requirements`) is worth
  repackaging.

Archives are written deterministically (sorted names, fixed owners and times, gzip without a
timestamp): the same input gives the same bytes, so S3 keys can be content addressed and an
unchanged bundle is never uploaded twice. Pure file operations; S3 is the callers' business.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path

from ncf.errors import NcfError

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAINING_DIR = REPO_ROOT / "training"
INFERENCE_DIR = REPO_ROOT / "inference"
ENTRY_POINT = "train.py"
HANDLER = "code/inference.py"
REQUIREMENTS = "requirements.txt"

_IGNORED = ("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", "*.egg-info", ".DS_Store")


def stage_source(
    destination: Path, training_dir: Path = TRAINING_DIR, inference_dir: Path = INFERENCE_DIR
) -> Path:
    """Copy `training/` to `destination` and `inference/` to `destination/inference`."""
    for folder, must_have in ((training_dir, ENTRY_POINT), (inference_dir, "inference.py")):
        if not (folder / must_have).is_file():
            raise NcfError(f"{folder / must_have} is missing: run the CLI from an ncf-sagemaker checkout")
    shutil.copytree(training_dir, destination, ignore=shutil.ignore_patterns(*_IGNORED), dirs_exist_ok=True)
    for relative, path in _serving_code(inference_dir):
        target = destination / "inference" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return destination


def write_tarball(source_dir: Path, archive: Path) -> Path:
    """`source_dir`'s contents at the archive root, as a reproducible .tar.gz."""
    with _deterministic_tar(archive) as tar:
        for relative, path in _source_files(source_dir):
            _add_file(tar, relative, path.read_bytes())
    return archive


def has_handler(model_archive: Path) -> bool:
    """True when the model.tar.gz carries `code/inference.py`."""
    with tarfile.open(model_archive, "r:gz") as tar:
        return any(_normalise(m.name) == HANDLER and m.isfile() for m in tar)


def has_empty_requirements(model_archive: Path) -> bool:
    """True when the model.tar.gz's `code/requirements.txt` exists but lists no package."""
    with tarfile.open(model_archive, "r:gz") as tar:
        for member in tar:
            if _normalise(member.name) == f"code/{REQUIREMENTS}" and member.isfile():
                return not lists_packages(tar.extractfile(member).read().decode("utf-8", "replace"))
    return False


def lists_packages(requirements: str) -> bool:
    """True when a requirements file's text has a line that is neither blank nor a comment."""
    return any(line.strip() and not line.lstrip().startswith("#") for line in requirements.splitlines())


def repackage_model(model_archive: Path, output: Path, inference_dir: Path = INFERENCE_DIR) -> Path:
    """A copy of `model_archive` whose `code/` is exactly the current `inference/` folder."""
    if not (inference_dir / "inference.py").is_file():
        raise NcfError(f"{inference_dir / 'inference.py'} is missing")
    with tarfile.open(model_archive, "r:gz") as source, _deterministic_tar(output) as tar:
        members = [m for m in source.getmembers() if _normalise(m.name)]
        for member in members:
            member.name = _normalise(member.name)
        kept = sorted((m for m in members if not _in_code(m.name)), key=lambda m: m.name)
        if not any(m.name.startswith("1/") for m in kept):
            raise NcfError(f"{model_archive.name} has no SavedModel under 1/: not a model.tar.gz of train.py")
        for member in kept:
            tar.addfile(member, source.extractfile(member) if member.isfile() else None)
        for relative, path in _serving_code(inference_dir):
            _add_file(tar, f"code/{relative}", path.read_bytes())
    return output


@contextmanager
def _deterministic_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """A gzip tar whose bytes depend only on what is added (no timestamps, no owners)."""
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        yield tar


def _source_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(posix path relative to `folder`, path) of every file, in order, without caches and bytecode."""
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        ignored = any(fnmatch(part, pattern) for part in relative.parts for pattern in _IGNORED)
        if path.is_file() and not ignored:
            yield relative.as_posix(), path


def _serving_code(inference_dir: Path) -> Iterator[tuple[str, Path]]:
    """The files of `inference/` that become a model's `code/`: all but caches, and a requirements.txt
    only when it lists a package (see the module docstring)."""
    for relative, path in _source_files(inference_dir):
        if relative != REQUIREMENTS or lists_packages(path.read_text()):
            yield relative, path


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _normalise(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/") if name != "." else ""


def _in_code(name: str) -> bool:
    return name == "code" or name.startswith("code/")
