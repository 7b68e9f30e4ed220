"""The `--local` forms of `train`, `deploy`, `invoke` and `teardown` (called by deploy/cli.py)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from ncf.errors import NcfError

from deploy.config import Settings


def train(args: argparse.Namespace, settings: Settings) -> tuple[dict[str, Any], list[str]]:
    """Run the training job (or a tuning trial's form of it) in local containers, to the end."""
    from deploy.localmode.training import train_local

    if args.prepared is None:
        raise NcfError("train --local needs --prepared DIR (the output folder of training/prepare.py)")
    result = train_local(settings, args.prepared, Path(settings.local_dir), tuning_style=args.tuning_style)
    lines = [
        f"local training job: {result.job_name}",
        "status: Completed",
        f"model: {result.model_data}",
        *(f"{name}: {value}" for name, value in sorted(result.metrics.get("test", {}).items())),
        "serve it with `python -m deploy deploy --local`",
    ]
    return {**vars(result), "status": "Completed"}, lines


def deploy(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT (or `teardown --local`); 0 when stopped, 1 when the container died."""
    from deploy.localmode.hosting import LocalHostedEndpoint, quiet_thread_errors, resolve_local_model

    model = resolve_local_model(settings, training_job=args.training_job, model_data=args.model_data)
    endpoint = LocalHostedEndpoint(settings, model, repackage=args.repackage)
    stop = {"requested": False}

    def request_stop(*_: object) -> None:
        stop["requested"] = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    with quiet_thread_errors():
        try:
            record = endpoint.start()
            print(f"local endpoint {record.name}: InService (model {record.model_data})", flush=True)
            print(
                "invoke it with `python -m deploy invoke --local --user 42`; stop it with Ctrl-C or "
                "`python -m deploy teardown --local`",
                flush=True,
            )
            print(f"ready: {record.url}", flush=True)
            status = endpoint.wait(lambda: stop["requested"])
        finally:
            endpoint.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if status is not None:
        print(f"error: the serving container exited with status {status} (its log is above)", file=sys.stderr)
        return 1
    print(f"local endpoint {endpoint.name}: deleted", flush=True)
    return 0


def runtime_client(settings: Settings, endpoint_name: str | None) -> Any:
    """The SDK's local runtime client for the recorded endpoint's port (else `local_port`)."""
    from deploy.localmode.hosting import read_record
    from deploy.localmode.runtime import LocalRuntimeClient

    record = read_record(settings, endpoint_name or settings.endpoint)
    return LocalRuntimeClient(record.port if record else settings.local_port)


def teardown(settings: Settings) -> int:
    from deploy.localmode.hosting import teardown_local

    lines = teardown_local(settings)
    print(
        "\n".join(lines)
        if lines
        else f"nothing to delete: no local endpoint recorded in {settings.local_dir}"
    )
    return 1 if any("did not stop" in line for line in lines) else 0
