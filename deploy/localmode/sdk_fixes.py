"""Narrow workarounds for three gaps of SageMaker SDK 3.27 local mode, active inside `local_mode_fixes()`.

1. **Training without a container entrypoint never runs `train`.** SageMaker starts a training container
   as `docker run <image> train`; SDK v2's local mode wrote `command: train` into the compose file. SDK v3's
   `sagemaker.train.local.local_container._LocalContainer._create_docker_host` writes no command when the
   job has no `ContainerEntrypoint` (a tuning trial's case, or any job without `source_code`), so the
   container runs the image's default CMD (`/bin/bash` in AWS's TensorFlow images) and trains nothing.
   Fix: `command: ["train"]` when the service has no entrypoint.
2. **The endpoint's port is published on every interface.** `sagemaker.core.local.image.
   _SageMakerContainer._create_docker_host` writes `ports: ["<port>:8080"]`, which Docker binds on
   0.0.0.0, so anyone on the network reaches the model. The SDK's own clients only use localhost.
   Fix: `127.0.0.1:<port>:8080`.
3. **A `$` in a training container's entrypoint breaks the compose file.** `_LocalContainer.
   _create_docker_host` writes the entrypoint strings into docker-compose.yaml as they are, and compose
   substitutes `$NAME` in every value (and refuses `$@`, `$!`, `$?`: "Invalid interpolation format"), so
   the signal forwarder that `deploy train` jobs run as their main process (deploy/signals.py) would not
   start. Fix: write each `$` as compose's escape `$$`, which compose turns back into `$` for the container.
   The local pipeline session runs its Training and Processing steps through `sagemaker.core.local.image.
   _SageMakerContainer._create_docker_host` instead, which writes entrypoints the same way: same fix there.

Each patch wraps the SDK's method and changes only the field named above; each is undone on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOOPBACK = "127.0.0.1"


def with_train_command(host_config: dict[str, Any]) -> dict[str, Any]:
    """A training service without an entrypoint runs `train`, as SageMaker runs it."""
    if not host_config.get("entrypoint") and "command" not in host_config:
        return {**host_config, "command": ["train"]}
    return host_config


def with_literal_dollars(host_config: dict[str, Any]) -> dict[str, Any]:
    """Escape `$` as `$$` in the service's entrypoint, so that compose passes it to the container verbatim."""
    entrypoint = host_config.get("entrypoint")
    if not entrypoint:
        return host_config
    return {**host_config, "entrypoint": [part.replace("$", "$$") for part in entrypoint]}


def training_service(host_config: dict[str, Any]) -> dict[str, Any]:
    """The training service with fixes 1 and 3."""
    return with_literal_dollars(with_train_command(host_config))


def with_loopback_ports(host_config: dict[str, Any]) -> dict[str, Any]:
    """Bind every published port to 127.0.0.1 (`8080:8080` -> `127.0.0.1:8080:8080`)."""
    ports = host_config.get("ports")
    if not ports:
        return host_config
    bound = [p if str(p).count(":") >= 2 else f"{LOOPBACK}:{p}" for p in ports]
    return {**host_config, "ports": bound}


def sagemaker_container_service(host_config: dict[str, Any]) -> dict[str, Any]:
    """A service of the SDK's other local runner (endpoints, pipeline steps) with fixes 2 and 3."""
    return with_literal_dollars(with_loopback_ports(host_config))


def _wrap(owner: type, name: str, fix: Any) -> Any:
    original = getattr(owner, name)

    def patched(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return fix(original(self, *args, **kwargs))

    patched.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(owner, name, patched)
    return original


@contextmanager
def local_mode_fixes() -> Iterator[None]:
    """Apply the workarounds for the duration of a local-mode call."""
    from sagemaker.core.local.image import _SageMakerContainer
    from sagemaker.train.local.local_container import _LocalContainer

    originals = [
        (
            _LocalContainer,
            "_create_docker_host",
            _wrap(_LocalContainer, "_create_docker_host", training_service),
        ),
        (
            _SageMakerContainer,
            "_create_docker_host",
            _wrap(_SageMakerContainer, "_create_docker_host", sagemaker_container_service),
        ),
    ]
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
