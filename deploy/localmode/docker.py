"""The Docker engine that SDK local mode needs: checks that name the fix, and clean-up of what compose left.

Every problem is an `NcfError` (the CLI prints it as one `error:` line), so a missing engine, a stopped
daemon, a missing image or a busy port is explained before the SDK starts anything.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

from ncf.errors import NcfError

INSTALL_HINT = "as root: apt-get install -y docker.io docker-compose, then start dockerd"


def docker_problem() -> str | None:
    """Why SDK local mode cannot run here (no docker CLI, daemon, or compose), or None when it can."""
    if shutil.which("docker") is None:
        return f"Docker is not installed (no `docker` on PATH): {INSTALL_HINT}"
    try:
        probe = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "the Docker daemon does not answer (`docker version` timed out): restart dockerd"
    if probe.returncode != 0:
        detail = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"the Docker daemon is not reachable ({detail}): start dockerd (as root: dockerd &)"
    if compose_command() is None:
        return f"Docker Compose is not installed (SDK local mode runs it): {INSTALL_HINT}"
    return None


def require_docker() -> None:
    """Raise `NcfError` naming the cause and the fix when Docker cannot run local mode."""
    problem = docker_problem()
    if problem:
        raise NcfError(problem)


def compose_command() -> list[str] | None:
    """`docker compose` (v2) or `docker-compose`, whichever the SDK would pick; None when neither."""
    try:
        plugin = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30, check=False
        )
        match = re.search(r"version\s+v?(\d+)", plugin.stdout)
        if plugin.returncode == 0 and match and int(match.group(1)) >= 2:
            return ["docker", "compose"]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return ["docker-compose"] if shutil.which("docker-compose") else None


def image_exists(tag: str) -> bool:
    """True when the engine has an image called `tag`."""
    found = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    return found.returncode == 0


def require_image(tag: str, kind: str) -> None:
    """`NcfError` naming `make local-images` when the local `kind` image is not built."""
    if not image_exists(tag):
        raise NcfError(f"the local {kind} image {tag} is not built: run `make local-images` first")


def require_free_port(port: int, host: str = "127.0.0.1") -> None:
    """`NcfError` when `host:port` cannot be bound (the endpoint's container would fail to start)."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise NcfError(
                f"port {host}:{port} is in use ({err.strerror}): stop what listens there or choose another"
                " with --port"
            ) from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on `host` now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def compose_down(compose_file: Path) -> None:
    """Stop and remove the containers and the network that `compose_file` created (best effort)."""
    command = compose_command()
    if command is None or not compose_file.is_file():
        return
    subprocess.run(
        [*command, "-f", str(compose_file), "down", "--remove-orphans", "--timeout", "10"],
        capture_output=True,
        check=False,
        timeout=120,
    )


def container_exit_codes(compose_file: Path) -> list[int]:
    """The exit status of every container of `compose_file`'s project (docker-compose 1.x's `up
    --abort-on-container-exit` sometimes exits 0 when its container failed, so ask the engine)."""
    command = compose_command()
    if command is None or not compose_file.is_file():
        return []
    ids = subprocess.run(
        [*command, "-f", str(compose_file), "ps", "-a", "-q"], capture_output=True, text=True, check=False
    ).stdout.split()
    if not ids:
        return []
    states = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.ExitCode}}", *ids],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return [int(code) for code in states if code.lstrip("-").isdigit()]


def remove_containers(names: list[str], network: str) -> None:
    """Remove these containers (stopped or not) and then `network` unless another container uses it
    (best effort: what is already gone is no error)."""
    if names:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, check=False, timeout=120)
    subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False, timeout=60)
