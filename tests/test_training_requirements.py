"""The training image gets what train.py needs: the source bundle's imports against the image's packages.

A SageMaker job runs the bundle `deploy train` and `deploy tune` upload (training/ + inference/) in the
TensorFlow 2.21 training image, whose Python packages are listed in
tests/data/tensorflow-training-2.21-packages.txt (with its source in aws/deep-learning-containers).
Whatever third-party module the bundle's training code imports must be in that image or in the
bundle's requirements.txt, which both the SDK's driver and sagemaker-training pip-install before
train.py starts.
"""

from __future__ import annotations

import ast
import re
import sys
import tarfile
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

from deploy.packaging import stage_source, write_tarball

REPO = Path(__file__).resolve().parents[1]
IMAGE_PACKAGES = Path(__file__).with_name("data") / "tensorflow-training-2.21-packages.txt"
IMAGE_PLATFORM = {"sys_platform": "linux", "platform_machine": "x86_64"}
SERVING_CODE = "inference/"  # the serving container's code, carried along for model.tar.gz's code/


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages() -> dict[str, str]:
    """{distribution: version ('' when the CPU and GPU images differ)} of the training image."""
    packages = {}
    for line in IMAGE_PACKAGES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.strip().partition("==")
            packages[normalise(name)] = version
    return packages


def bundle_files(tmp_path: Path) -> dict[str, bytes]:
    """{path: content} of the source bundle, built as `deploy train` / `deploy tune` build it."""
    archive = write_tarball(stage_source(tmp_path / "source"), tmp_path / "sourcedir.tar.gz")
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def imported_modules(name: str, source: bytes) -> Iterator[str]:
    """Top-level names of the absolute imports in one Python file."""
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def third_party_imports(files: dict[str, bytes]) -> dict[str, str]:
    """{module: first file importing it} for training code modules that are neither stdlib nor bundled."""
    bundled = {Path(name).parts[0].removesuffix(".py") for name in files}
    found: dict[str, str] = {}
    for name, source in sorted(files.items()):
        if name.endswith(".py") and not name.startswith(SERVING_CODE):
            for module in imported_modules(name, source):
                if module not in sys.stdlib_module_names and module not in bundled and module != "__future__":
                    found.setdefault(module, name)
    return found


def requirements(text: str) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [Requirement(line) for line in lines if line]


def providers(module: str) -> set[str]:
    """Distributions that provide an importable module: as installed here, or named like it."""
    return {normalise(name) for name in [module, *packages_distributions().get(module, [])]}


def test_every_third_party_import_of_training_is_in_the_image_or_in_requirements(tmp_path: Path) -> None:
    files = bundle_files(tmp_path)
    assert "requirements.txt" in files, "the source bundle has no requirements.txt at its root"
    assert files["requirements.txt"] == (REPO / "training" / "requirements.txt").read_bytes()
    required = requirements(files["requirements.txt"].decode())
    image = image_packages()

    imports = third_party_imports(files)
    assert {"tensorflow", "numpy", "pandas", "pyarrow", "matplotlib"} <= set(imports)  # the check sees them
    available = set(image) | {normalise(r.name) for r in required}
    missing = {module: where for module, where in imports.items() if not providers(module) & available}
    assert not missing, f"imported by training/ but neither in the image nor in requirements.txt: {missing}"

    # requirements.txt holds exactly what the image lacks, pinned: anything the image has would be
    # reinstalled over it (or fail offline).
    for requirement in required:
        assert normalise(requirement.name) not in image, f"{requirement.name} is in the image already"
        assert [spec.operator for spec in requirement.specifier] == ["=="], f"pin {requirement}"


def test_the_image_satisfies_the_projects_own_version_ranges() -> None:
    """What training needs on a laptop (pyproject dependencies) is met by the image's versions."""
    image = image_packages()
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    checked = []
    for dependency in map(Requirement, dependencies):
        if dependency.marker and not dependency.marker.evaluate(IMAGE_PLATFORM):
            continue
        version = image.get(normalise(dependency.name))
        assert version, f"{dependency.name} is not in the training image"
        assert dependency.specifier.contains(version), f"image has {dependency.name} {version}: {dependency}"
        checked.append(dependency.name)
    assert {"tensorflow-cpu", "numpy", "pandas", "pyarrow", "matplotlib"} <= set(checked)
