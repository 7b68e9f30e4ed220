"""Stopping a `deploy train` job: SIGTERM reaches train.py, which keeps its checkpoint and exits 143 in time.

SageMaker stops a training job (StopTrainingJob, and a managed spot interruption) by sending SIGTERM to the
job container's main process, then SIGKILL: "To stop a job, SageMaker sends the algorithm the SIGTERM signal,
which delays job termination for 120 seconds" (StopTrainingJob in the SageMaker API reference, quoted in
botocore's service model). train.py records SIGTERM, stops at the next chunk boundary, keeps the checkpoint of
its last completed epoch and exits 143 (training/ncf/fit/interruption.py), but only when the signal reaches
it.

Under SDK v3's `ModelTrainer` it does not. The job's main process is the SDK's `/bin/bash -c "chmod +x
.../sm_drivers/sm_train.sh && .../sm_drivers/sm_train.sh"` (`DEFAULT_CONTAINER_ENTRYPOINT` and
`DEFAULT_CONTAINER_ARGUMENTS` of `sagemaker.train.constants`); sm_train.sh runs the SDK's
`basic_script_driver.py`, which runs `python train.py --name value ...` with `subprocess.Popen` and forwards
no signal. That bash is the container's PID 1 and has no SIGTERM handler, and the kernel drops a signal that
a PID namespace's init does not handle, so the SIGTERM is lost and SIGKILL ends the job 120 s later.

`FORWARDER` (a bash script small enough for one ContainerEntrypoint string, at most 256 characters) is the
main process instead, with the SDK's command, unchanged, as its arguments. It
1. runs that command in a process group of its own (`set -m`, for that one command), so that one `kill`
   reaches sm_train.sh, the driver and train.py;
2. starts it with SIGTERM and SIGINT ignored, which every process below inherits until it installs a handler:
   the shells and the driver, which handle neither, survive the signal and pass train.py's exit status up
   (the driver's `sys.exit`, sm_train.sh's `set -e` and ERR trap), while train.py catches it;
3. on SIGTERM or SIGINT sends SIGTERM to that group, and again every second until the group is gone, so a
   train.py still importing TensorFlow (its handler not yet installed) gets it as soon as it listens;
4. waits for the command and exits with its status: 143 when train.py stopped on the signal.
The SDK's drivers still install the requirements, set up the environment and run the script as they do.

`ModelTrainer` has no setting for the entrypoint: with `source_code` it always sends the SDK's default
(`ModelTrainer._create_training_job_args`). `SignalForwardingTrainer` wraps what that method returns, the
one request both paths use: `TrainingJob.create` (SageMaker) and `_LocalContainer` (`deploy train --local`).

Tuning trials are not covered: the tuning API has no ContainerEntrypoint, so a trial's main process is the
image's `train` (sagemaker-training), which installs no signal handler and forwards nothing either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagemaker.train import ModelTrainer

#: The forwarder's `$0`, how it shows in `ps` and in bash's messages.
FORWARDER_NAME = "ncf-forward-signals"
FORWARDER = "\n".join(
    (
        "set -m",
        """(trap '' TERM INT; exec "$@") &""",
        "c=$!",
        "set +m",
        "trap '(while kill -TERM -$c; do sleep 1; done) >/dev/null 2>&1 &' TERM INT",
        "while wait $c; s=$?; kill -0 $c 2>/dev/null; do :; done",
        "exit $s",
    )
)


def forwarding_command(
    entrypoint: Sequence[str], arguments: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """(ContainerEntrypoint, ContainerArguments) that run `entrypoint + arguments` under `FORWARDER`."""
    return ["/bin/bash", "-c", FORWARDER, FORWARDER_NAME], [*entrypoint, *(arguments or ())]


class SignalForwardingTrainer(ModelTrainer):
    """`ModelTrainer` whose job container runs the SDK's command as a child of `FORWARDER`."""

    def _create_training_job_args(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The SDK's request, with its container command moved under the forwarder.

        A job without `source_code` has no entrypoint (the image's own `train` runs): left as it is. Under
        a pipeline session the SDK returns the request already serialized (the API's field names).
        """
        request = super()._create_training_job_args(*args, **kwargs)
        if "AlgorithmSpecification" in request:  # a pipeline step's CreateTrainingJob request
            spec = request["AlgorithmSpecification"]
            if spec.get("ContainerEntrypoint"):
                entrypoint, arguments = forwarding_command(
                    spec["ContainerEntrypoint"], spec.get("ContainerArguments")
                )
                request["AlgorithmSpecification"] = {
                    **spec,
                    "ContainerEntrypoint": entrypoint,
                    "ContainerArguments": arguments,
                }
            return request
        spec = request["algorithm_specification"]
        if spec.container_entrypoint:
            entrypoint, arguments = forwarding_command(spec.container_entrypoint, spec.container_arguments)
            request["algorithm_specification"] = spec.model_copy(
                update={"container_entrypoint": entrypoint, "container_arguments": arguments}
            )
        return request
