"""`serve` of the local serving image: SageMaker's container contract over plain HTTP on port 8080.

SageMaker (and the SDK's local mode) unpacks model.tar.gz into `/opt/ml/model` and runs `<image> serve`;
the container must answer `GET /ping` and `POST /invocations` on 8080. Like AWS's TensorFlow Serving
container, this one first pip-installs `code/requirements.txt` whenever it exists, even empty (not
when `code/lib` exists), and stops if that fails; it then starts TF Serving (the real binary if on
PATH, else deploy/local's stand-in) on the container's loopback, and puts `code/inference.py` in
front of it with `ContainerFront`, calling TF Serving over HTTP as the real container does. It is the
same code as `python -m deploy.local` without TLS and the runtime API route, which the SageMaker
runtime (or the SDK's local runtime client) provides in front of a container.

Exit status: 0 after SIGTERM/SIGINT (requests in flight are finished), 1 when the model cannot be served.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
from pathlib import Path

from deploy.local.model_artifact import LocalEndpointError

LOG = logging.getLogger("ncf.local.container")

MODEL_DIR = Path("/opt/ml/model")
PORT = 8080
DRAIN_TIMEOUT_S = 30.0


def install_requirements(code_dir: Path) -> None:
    """`pip install -r code/requirements.txt` as the real container's serve.py does: whenever the file
    exists (its presence alone starts pip, which may try the index), and not when `code/lib` exists
    (then the packages are there and requirements.txt is ignored, with a warning)."""
    requirements = code_dir / "requirements.txt"
    if not requirements.is_file():
        return
    if (code_dir / "lib").exists():
        LOG.warning("loading modules in %s, ignoring %s", code_dir / "lib", requirements)
        return
    LOG.info("installing %s", requirements)
    command = [sys.executable, "-m", "pip", "install", "-r", str(requirements)]
    if subprocess.run(command, check=False).returncode != 0:
        raise LocalEndpointError(f"pip install -r {requirements} failed (see above)")


def serve(model_dir: Path, port: int, host: str = "0.0.0.0") -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status."""
    from deploy.local.container_server import ContainerFront
    from deploy.local.httpserver import Server
    from deploy.local.model_artifact import open_model
    from deploy.local.model_server import start_model_server

    artifact = open_model(model_dir)
    install_requirements(artifact.code_dir)
    model_server = start_model_server(artifact, "auto")
    try:
        front = ContainerFront(
            artifact.code_dir, model_server.rest_port, tfs_grpc_port=model_server.grpc_port
        )
        server = Server((host, port), front, name="ncf-container")
    except BaseException:
        model_server.stop()
        raise
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.request_stop())
    print(f"TF Serving: {model_server.description}", flush=True)
    print(f"serving {artifact.root} (version {artifact.version}) on {host}:{server.port}", flush=True)
    server.serve_forever()
    server.drain(DRAIN_TIMEOUT_S)
    model_server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR, help=f"default {MODEL_DIR}")
    parser.add_argument("--port", type=int, default=PORT, help=f"default {PORT}")
    parser.add_argument("--host", default="0.0.0.0", help="default 0.0.0.0 (the container's interfaces)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return serve(args.model_dir, args.port, args.host)
    except (LocalEndpointError, OSError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    from deploy.local.__main__ import exit_now

    exit_now(main())  # TensorFlow's interpreter teardown can abort (SIGABRT) after a clean stop
