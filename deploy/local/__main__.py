"""`python -m deploy.local --model PATH [--port 8443]`: serve a model like a SageMaker endpoint, locally.

Runs until SIGTERM or Ctrl-C, then finishes the requests in flight and exits 0. Problems with what was
asked (missing model, port in use) print `error: <message>` and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local",
        description="Serve a model directory or model.tar.gz like the SageMaker TF Serving container, "
        "with the SageMaker runtime API route over HTTPS.",
    )
    parser.add_argument(
        "--model", required=True, type=Path, help="model directory (1/, code/) or model.tar.gz"
    )
    parser.add_argument("--port", type=int, default=8443, help="HTTPS port (0: any free port; default 8443)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--tls-dir", type=Path, help="where the self-signed certificate is kept")
    parser.add_argument(
        "--model-server",
        choices=("auto", "standin", "binary"),
        default="auto",
        help="TF Serving: the tensorflow_model_server binary if on PATH (auto), the built-in stand-in, "
        "or the binary only",
    )
    parser.add_argument(
        "--transport",
        choices=("inprocess", "http"),
        default="inprocess",
        help="how inference.py reaches the stand-in: a direct call (default) or loopback HTTP",
    )
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        help="region named in ModelError's LogStreamArn",
    )
    parser.add_argument(
        "--capture-dir",
        type=Path,
        help="write SageMaker data capture files (<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl) here",
    )
    parser.add_argument(
        "--variant", default="AllTraffic", help="the production variant this endpoint stands for"
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from deploy.local.endpoint import EndpointConfig, LocalEndpoint
    from deploy.local.model_artifact import LocalEndpointError

    config = EndpointConfig(
        model=args.model,
        port=args.port,
        host=args.host,
        tls_dir=args.tls_dir,
        model_server=args.model_server,
        transport=args.transport,
        region=args.region,
        variant=args.variant,
        capture_dir=args.capture_dir,
    )
    endpoint = LocalEndpoint(config)
    try:
        endpoint.start()
    except LocalEndpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: endpoint.request_stop())
    for line in endpoint.describe():
        print(line, flush=True)
    endpoint.serve_forever()
    print("stopping: finishing requests in flight", flush=True)
    drained = endpoint.close()
    print("stopped" if drained else "stopped (some requests were cut off)", flush=True)
    return 0


def exit_now(status: int) -> None:
    """Exit without the interpreter's teardown: everything is closed, and TensorFlow's takes seconds."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    exit_now(main())
