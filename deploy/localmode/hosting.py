"""`deploy deploy --local`: the model served by the SDK's local endpoint support, in the local serving image.

The SDK's local session (`sagemaker.core.local.LocalSession`) gets the same three calls as SageMaker:
`create_model` (the local serving image, `file://` model.tar.gz, `serving_env`), `create_endpoint_config`
(one `local` instance) and `create_endpoint`, which unpacks the model, writes a compose file and runs the
container with `serve`, publishing 8080 as `local_port` on 127.0.0.1, and returns once `/ping` answers.
The endpoint lives as long as this process: it serves until SIGTERM/SIGINT (or `deploy teardown --local`,
which sends SIGTERM), then takes down the compose project (container and network) and deletes the endpoint,
config and model through the same session. A record in `<local_dir>/endpoints/<name>.json` tells
`invoke --local` the port and `teardown --local` the process and compose file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ncf.errors import NcfError

from deploy.config import Settings
from deploy.localmode.build import image_tags
from deploy.localmode.docker import compose_down, require_docker, require_free_port, require_image
from deploy.localmode.sdk_fixes import local_mode_fixes
from deploy.packaging import has_handler, repackage_model

LOG = logging.getLogger("deploy")
VARIANT = "AllTraffic"
COMPOSE_FILE = "docker-compose.yaml"
#: How long the SDK waits for /ping (its HEALTH_CHECK_TIMEOUT_LIMIT: the SDK reads a
#: `local.health_check_timeout` setting, but its own config schema refuses that key).
HEALTH_CHECK_TIMEOUT_S = 120


@dataclass(frozen=True)
class EndpointRecord:
    """What `invoke --local` and `teardown --local` need to know about a running local endpoint."""

    name: str
    url: str
    port: int
    pid: int
    compose_file: str
    model_data: str


def records_dir(settings: Settings) -> Path:
    return Path(settings.local_dir) / "endpoints"


def record_path(settings: Settings, name: str) -> Path:
    return records_dir(settings) / f"{name}.json"


def read_record(settings: Settings, name: str) -> EndpointRecord | None:
    """The record of local endpoint `name`, or None when there is none."""
    try:
        return EndpointRecord(**json.loads(record_path(settings, name).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def all_records(settings: Settings) -> list[EndpointRecord]:
    names = sorted(p.stem for p in records_dir(settings).glob("*.json"))
    return [r for r in (read_record(settings, n) for n in names) if r is not None]


def latest_local_model(settings: Settings) -> Path:
    """The model.tar.gz of the newest `train --local` job under `local_dir`."""
    jobs = sorted(Path(settings.local_dir).glob(f"{settings.project}-*/model.tar.gz"))
    if not jobs:
        raise NcfError(
            f"no local training job with a model.tar.gz under {settings.local_dir}: run "
            "`python -m deploy train --local --prepared DIR`, or pass --model-data PATH/model.tar.gz"
        )
    return jobs[-1]


def resolve_local_model(settings: Settings, *, training_job: str | None, model_data: str | None) -> Path:
    """--model-data (a local model.tar.gz), else --training-job's (local), else the newest local job's."""
    if model_data:
        path = Path(model_data.removeprefix("file://"))
    elif training_job:
        path = Path(settings.local_dir) / training_job / "model.tar.gz"
    else:
        path = latest_local_model(settings)
    if not path.is_file():
        raise NcfError(f"model artifact {path} does not exist (with --local it is a local model.tar.gz)")
    return path.resolve()


def stage_model(model: Path, destination: Path, *, force_repackage: bool) -> Path:
    """`model` copied alone into `destination/` (the SDK unpacks it where it lies), with code/ when needed."""
    destination.mkdir(parents=True)
    staged = destination / "model.tar.gz"
    if force_repackage or not has_handler(model):
        LOG.info("repackaging %s with the current inference/ as code/", model)
        repackage_model(model, staged)
    else:
        shutil.copyfile(model, staged)
    return staged


class LocalHostedEndpoint:
    """One endpoint of the SDK's local session, from `start()` to `stop()`."""

    def __init__(self, settings: Settings, model: Path, *, repackage: bool = False) -> None:
        self.settings = settings
        self.name = settings.endpoint
        self.model = model
        self.repackage = repackage
        self.port = settings.local_port
        self.root = (Path(settings.local_dir) / "endpoints" / f"{self.name}.work").resolve()
        self.session: Any = None
        self.image = image_tags().serving
        self.stopped = True  # nothing to stop until start() has passed its checks

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _session(self) -> Any:
        import boto3
        from sagemaker.core.local.local_session import LocalSession

        session = LocalSession(boto_session=boto3.Session(region_name=self.settings.region or "us-east-1"))
        session.config = {
            "local": {
                "serving_port": self.port,
                "container_root": str(self.root),
            }
        }
        return session

    def check(self) -> None:
        """Everything that can be refused before a container starts."""
        require_free_port(self.port)
        require_docker()
        require_image(self.image, "serving")
        existing = read_record(self.settings, self.name)
        if existing is not None and _alive(existing.pid):
            raise NcfError(
                f"local endpoint {self.name} is already running (pid {existing.pid}, {existing.url}): "
                "run `python -m deploy teardown --local` first, or set another endpoint_name"
            )

    def start(self) -> EndpointRecord:
        """Create model, endpoint config and endpoint; return once /ping answers (or raise, cleaned up)."""
        self.check()
        self.stopped = False
        shutil.rmtree(self.root, ignore_errors=True)
        staged = stage_model(self.model, self.root / "model", force_repackage=self.repackage)
        self.session = self._session()
        client = self.session.sagemaker_client
        client.create_model(
            ModelName=self.name,
            PrimaryContainer={
                "Image": self.image,
                "ModelDataUrl": staged.as_uri(),
                "Environment": dict(self.settings.serving_env),
            },
        )
        client.create_endpoint_config(
            EndpointConfigName=self.name,
            ProductionVariants=[
                {
                    "VariantName": VARIANT,
                    "ModelName": self.name,
                    "InitialInstanceCount": 1,
                    "InstanceType": "local",
                }
            ],
        )
        try:
            self._create_endpoint(client)
        except BaseException:
            self.stop()
            raise
        record = EndpointRecord(
            self.name, self.url, self.port, os.getpid(), str(self.compose_file() or ""), str(self.model)
        )
        record_path(self.settings, self.name).write_text(json.dumps(asdict(record), indent=2))
        return record

    def _sdk_endpoint(self) -> Any:
        from sagemaker.core.local.local_session import LocalSagemakerClient

        return LocalSagemakerClient._endpoints.get(self.name)

    def compose_file(self) -> Path | None:
        """The compose file the SDK wrote for this endpoint (None before it has)."""
        container = getattr(self._sdk_endpoint(), "container", None)
        root = getattr(container, "container_root", None)
        return Path(root) / COMPOSE_FILE if root else None

    def compose_status(self) -> int | None:
        """The exit status of the SDK's `compose up` (the container's), or None while it runs."""
        container = getattr(self._sdk_endpoint(), "container", None)
        hosting = getattr(container, "container", None)
        process = getattr(hosting, "process", None)
        return None if process is None else process.poll()

    def _create_endpoint(self, client: Any) -> None:
        """The SDK's create_endpoint, watched: a container that exits is reported at once, not after the
        SDK's health-check timeout."""
        failure: list[BaseException] = []

        def create() -> None:
            try:
                client.create_endpoint(EndpointName=self.name, EndpointConfigName=self.name)
            except BaseException as err:
                failure.append(err)

        with local_mode_fixes():
            creator = threading.Thread(target=create, name="sdk-create-endpoint", daemon=True)
            creator.start()
            while creator.is_alive():
                status = self.compose_status()
                if status is not None:
                    raise NcfError(
                        f"the serving container exited with status {status} before answering /ping (its log"
                        " is above): check the model.tar.gz (1/ SavedModel, code/inference.py) and run again"
                    )
                creator.join(0.5)
        if failure:
            raise NcfError(
                f"the local endpoint did not answer /ping within {HEALTH_CHECK_TIMEOUT_S} s ({failure[0]}); "
                "its log is above"
            )

    def wait(self, should_stop: Callable[[], bool]) -> int | None:
        """Block until `should_stop()` or the container exits; returns the container's status if it did."""
        while not should_stop():
            status = self.compose_status()
            if status is not None:
                return status
            time.sleep(0.5)
        return None

    def stop(self) -> None:
        """Take down container and network, delete endpoint, config and model; remove the record (once)."""
        if self.stopped:
            return
        self.stopped = True
        compose = self.compose_file()
        if compose is not None:
            compose_down(compose)
        if self.session is not None:
            client = self.session.sagemaker_client
            client.delete_endpoint(EndpointName=self.name)  # joins the SDK's hosting thread
            client.delete_endpoint_config(EndpointConfigName=self.name)
            client.delete_model(ModelName=self.name)
        record = read_record(self.settings, self.name)
        if record is not None and record.pid == os.getpid():
            record_path(self.settings, self.name).unlink(missing_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    """True while process `pid` runs (a zombie, exited but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


class quiet_thread_errors:
    """The SDK's hosting thread raises RuntimeError when `compose up` ends (also when teardown ends it);
    `deploy --local` reports a dead container itself (one `error:` line), so while this is active the
    thread's traceback is logged at debug level instead of printed."""

    def __enter__(self) -> None:
        self.previous = threading.excepthook

        def hook(args: threading.ExceptHookArgs) -> None:
            LOG.debug("%s: %s", args.thread.name if args.thread else "thread", args.exc_value)

        threading.excepthook = hook

    def __exit__(self, *exc: object) -> None:
        threading.excepthook = self.previous


def teardown_local(settings: Settings, *, timeout_s: float = 60.0) -> list[str]:
    """Stop every local endpoint recorded under `local_dir`; returns one line per endpoint."""
    lines = []
    for record in all_records(settings):
        if _alive(record.pid):
            os.kill(record.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _alive(record.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        if _alive(record.pid):
            lines.append(
                f"local endpoint {record.name}: pid {record.pid} did not stop; kill it and run again"
            )
            continue
        # Its process is gone; if it was killed before cleaning up, take its containers down here.
        if record.compose_file:
            compose_down(Path(record.compose_file))
        record_path(settings, record.name).unlink(missing_ok=True)
        shutil.rmtree(records_dir(settings) / f"{record.name}.work", ignore_errors=True)
        lines.append(f"local endpoint {record.name}: deleted")
    return lines
