"""`make local-images` (`python -m deploy.localmode.build`): the local training and serving images, offline.

No image registry is reachable, so the images are built from nothing but the Debian package mirror and
PyPI wheels downloaded on the host:

1. `debian-python`: `debootstrap --variant=minbase bookworm` with Python, imported with `docker import`;
2. `tensorflow-base`: + tensorflow-cpu, numpy, requests (images/Dockerfile.base), shared by both images;
3. `tensorflow-training`: + AWS's `sagemaker-training` / `sagemaker-tensorflow-training` toolkits and what
   train.py imports (images/Dockerfile.training);
4. `tensorflow-inference`: + deploy/local's container front and TF Serving stand-in, `serve`
   (images/Dockerfile.serving).

Each tag is a hash of that image's inputs (its Dockerfile, requirement pins, copied files, its parent's
tag), so an image is rebuilt only when something it is made of changed, and an unchanged checkout reuses
what the engine already has. Wheels are cached in `$NCF_LOCAL_IMAGES_CACHE` (default
~/.cache/ncf-sagemaker/local-images), outside the checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ncf.errors import NcfError

from deploy.localmode.docker import image_exists, require_docker

IMAGES_DIR = Path(__file__).resolve().parent / "images"
DEPLOY_DIR = Path(__file__).resolve().parents[1]
REPOSITORY = "ncf-sagemaker"
CACHE_ENV = "NCF_LOCAL_IMAGES_CACHE"

DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("python3", "python3-pip", "python-is-python3", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What the serving image copies from deploy/ (the container front, TF Serving stand-in and their helpers).
SERVING_MODULES = (
    "__init__.py",
    "local/__init__.py",
    "local/__main__.py",
    "local/container.py",
    "local/container_server.py",
    "local/httpserver.py",
    "local/model_artifact.py",
    "local/model_server.py",
    "local/tfserving_standin.py",
)
BASE_REQUIREMENTS = ("requirements-base.txt",)
TRAINING_REQUIREMENTS = ("requirements-training.txt",)

Log = Callable[[str], None]


@dataclass(frozen=True)
class LocalImages:
    """The tags of the local images for this checkout (built or not)."""

    rootfs: str
    base: str
    training: str
    serving: str


def _digest(parts: Iterable[str | bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:12]


def _files(folder: Path, names: Iterable[str]) -> list[bytes]:
    return [name.encode() + b"\0" + (folder / name).read_bytes() for name in names]


def image_tags() -> LocalImages:
    """The tag of each image, from the hash of its inputs."""
    rootfs = f"{REPOSITORY}/debian-python:" + _digest(
        ["debootstrap --variant=minbase", DEBIAN_SUITE, *DEBIAN_PACKAGES, "rootfs-recipe-1"]
    )
    base = f"{REPOSITORY}/tensorflow-base:" + _digest(
        [rootfs, *_files(IMAGES_DIR, ("Dockerfile.base", *BASE_REQUIREMENTS))]
    )
    training = f"{REPOSITORY}/tensorflow-training:" + _digest(
        [base, *_files(IMAGES_DIR, ("Dockerfile.training", *TRAINING_REQUIREMENTS))]
    )
    serving = f"{REPOSITORY}/tensorflow-inference:" + _digest(
        [base, *_files(IMAGES_DIR, ("Dockerfile.serving", "serve")), *_files(DEPLOY_DIR, SERVING_MODULES)]
    )
    return LocalImages(rootfs, base, training, serving)


def cache_dir() -> Path:
    """Where wheels and build contexts are kept between builds."""
    default = Path.home() / ".cache" / "ncf-sagemaker" / "local-images"
    return Path(os.environ.get(CACHE_ENV) or default)


def debian_mirror(sources: Iterable[Path] | None = None) -> str:
    """The Debian archive this machine's apt uses (debootstrap needs no other host), else deb.debian.org."""
    if sources is None:
        sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in re.findall(r"(?:^deb\s+(?:\[[^\]]*\]\s+)?|^URIs:\s*)(\S+)", text, flags=re.MULTILINE):
            if re.search(r"/debian/?$", uri) and "security" not in uri:
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _run(command: list[str], what: str, **options: object) -> None:
    """Run a build step; on failure, `NcfError` with the step and the tail of its output."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, **options)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise NcfError(f"{what} failed (exit {done.returncode}): {' '.join(command[:3])} ...\n{tail}")


def unmount_below(folder: Path, mounts: Path = Path("/proc/mounts")) -> None:
    """Unmount what a failed debootstrap may have left mounted in `folder` (its /proc, /sys), deepest first,
    so that removing the build folder never walks into the host's /proc."""
    prefix = str(folder.resolve())
    mounted = [
        line.split()[1].encode().decode("unicode_escape")
        for line in mounts.read_text().splitlines()
        if len(line.split()) > 1
    ]
    for point in sorted((m for m in mounted if m == prefix or m.startswith(prefix + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def build_rootfs(tag: str, workdir: Path, log: Log) -> None:
    """debootstrap a minimal bookworm with Python and `docker import` it as `tag`."""
    if shutil.which("debootstrap") is None:
        raise NcfError("debootstrap is not installed: as root, apt-get install -y debootstrap")
    if os.geteuid() != 0:
        raise NcfError("building the local base image runs debootstrap, which needs root: run as root")
    target = workdir / "rootfs"
    mirror = debian_mirror()
    log(f"debootstrap {DEBIAN_SUITE} from {mirror} (a minute or two)")
    try:
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(DEBIAN_PACKAGES)}",
                DEBIAN_SUITE,
                str(target),
                mirror,
            ],
            "debootstrap",
        )
    finally:
        unmount_below(target)
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (target / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    log(f"docker import -> {tag}")
    tar = subprocess.Popen(["tar", "-C", str(target), "-c", "."], stdout=subprocess.PIPE)
    try:
        _run(
            ["docker", "import", "--change", 'CMD ["/bin/bash"]', "-", tag], "docker import", stdin=tar.stdout
        )
    finally:
        tar.stdout.close()
        tar.wait()


def download_wheels(wheels: Path, log: Log) -> None:
    """Every wheel the images install, built or downloaded for this Python (3.11, as bookworm's)."""
    wheels.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--prefer-binary", "-w", str(wheels)]
    requirements = [
        f for name in (*BASE_REQUIREMENTS, *TRAINING_REQUIREMENTS) for f in ("-r", IMAGES_DIR / name)
    ]
    offline = [*pip, "--no-index", "--find-links", str(wheels), *map(str, requirements)]
    if subprocess.run(offline, capture_output=True, check=False).returncode == 0:
        return
    log("downloading wheels from the package index")
    _run([*pip, *map(str, requirements)], "pip wheel")


def _context(workdir: Path, files: dict[str, Path], wheels: Path | None) -> Path:
    """A build context with `files` (name -> source) and, when given, the wheels (hard links if possible)."""
    context = workdir / "context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    for name, source in files.items():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, context / name)
    if wheels is not None:
        (context / "wheels").mkdir()
        for wheel in wheels.glob("*.whl"):
            try:
                os.link(wheel, context / "wheels" / wheel.name)
            except OSError:
                shutil.copy2(wheel, context / "wheels" / wheel.name)
    return context


def docker_build(tag: str, dockerfile: str, context: Path, parent_arg: str, parent: str, log: Log) -> None:
    log(f"docker build {dockerfile} -> {tag}")
    _run(
        [
            "docker",
            "build",
            "--quiet",
            "-t",
            tag,
            "-f",
            str(context / dockerfile),
            "--build-arg",
            f"{parent_arg}={parent}",
            "--label",
            "ncf-sagemaker.local-image=1",
            str(context),
        ],
        f"docker build of {tag}",
    )


def remove_stale_images(current: LocalImages, log: Log) -> None:
    """Remove this project's local images whose tags no checkout input hashes to any more (disk space)."""
    listed = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"{REPOSITORY}/*"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    stale = sorted(set(listed) - set(vars(current).values()))
    if stale:
        log(f"removing stale local images: {', '.join(stale)}")
        subprocess.run(["docker", "rmi", *stale], capture_output=True, check=False)


def ensure_images(log: Log = print) -> LocalImages:
    """Build whichever local image is missing (and what it builds on); reuse the rest."""
    require_docker()
    tags = image_tags()
    missing = {name: tag for name, tag in vars(tags).items() if not image_exists(tag)}
    if not missing:
        log(f"local images up to date: {tags.training}, {tags.serving}")
        return tags
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    wheels = cache / "wheels"
    need_base = "base" in missing
    with tempfile.TemporaryDirectory(prefix="build-", dir=cache) as tmp, ThreadPoolExecutor(1) as pool:
        workdir = Path(tmp)
        # The wheels download while debootstrap runs: both mostly wait on the network and the disk.
        downloaded = pool.submit(download_wheels, wheels, log) if need_base or "training" in missing else None
        if "rootfs" in missing and need_base:
            build_rootfs(tags.rootfs, workdir, log)
        if downloaded is not None:
            downloaded.result()
        if need_base:
            files = {"Dockerfile.base": IMAGES_DIR / "Dockerfile.base"}
            files.update({name: IMAGES_DIR / name for name in BASE_REQUIREMENTS})
            docker_build(
                tags.base, "Dockerfile.base", _context(workdir, files, wheels), "ROOTFS", tags.rootfs, log
            )
        if "training" in missing:
            files = {"Dockerfile.training": IMAGES_DIR / "Dockerfile.training"}
            files.update({name: IMAGES_DIR / name for name in TRAINING_REQUIREMENTS})
            context = _context(workdir, files, wheels)
            docker_build(tags.training, "Dockerfile.training", context, "BASE", tags.base, log)
        if "serving" in missing:
            files = {"Dockerfile.serving": IMAGES_DIR / "Dockerfile.serving", "serve": IMAGES_DIR / "serve"}
            files.update({f"ncf/deploy/{name}": DEPLOY_DIR / name for name in SERVING_MODULES})
            context = _context(workdir, files, None)
            docker_build(tags.serving, "Dockerfile.serving", context, "BASE", tags.base, log)
    remove_stale_images(tags, log)
    return tags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.localmode.build", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--print-tags", action="store_true", help="only print the tags this checkout uses")
    args = parser.parse_args(argv)
    if args.print_tags:
        print("\n".join(f"{name}: {tag}" for name, tag in vars(image_tags()).items()))
        return 0
    started = time.monotonic()
    try:
        tags = ensure_images(lambda line: print(f"[{time.monotonic() - started:4.0f} s] {line}", flush=True))
    except NcfError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"training image: {tags.training}\nserving image: {tags.serving}")
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
