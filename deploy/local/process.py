"""Run `python -m deploy.local` as a child process and wait until it is ready (tests and benchmarks).

A child process keeps the server's CPU work (TLS, JSON, TensorFlow) off the caller's interpreter, as a
real endpoint would be.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class EndpointProcess:
    """A running local endpoint: its URL, the certificate to trust, and what it printed."""

    process: subprocess.Popen[str]
    url: str
    cert: Path
    lines: queue.Queue[str]
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        """Everything printed so far (stdout and stderr)."""
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "\n".join(self.output)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for the exit; returns the exit status."""
        self.process.terminate()
        status = self.process.wait(timeout=timeout)
        time.sleep(0.1)  # let the reader thread collect the last lines
        return status


def _pump(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


@contextmanager
def ready_process(command: list[str], env: dict[str, str], timeout: float) -> Iterator[EndpointProcess]:
    """Run `command` (stdout and stderr together) until it prints `ready: <url>`, it exits or `timeout`
    passes; yields it with `url` "" when it never got ready, and kills it on exit if still running."""
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    output: list[str] = []
    deadline = time.monotonic() + timeout
    url = ""
    try:
        while not url and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if process.poll() is not None and lines.empty():
                    break
                continue
            output.append(line)
            if line.startswith("ready: "):
                url = line.removeprefix("ready: ")
        yield EndpointProcess(process, url, Path(), lines, output)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextmanager
def local_endpoint_process(
    model: Path, tls_dir: Path, *extra: str, timeout: float = 120.0
) -> Iterator[EndpointProcess]:
    """Start the endpoint on a free port, wait for its `ready:` line, and kill it on exit if still running."""
    command = [
        sys.executable,
        "-m",
        "deploy.local",
        "--model",
        str(model),
        "--port",
        "0",
        "--tls-dir",
        str(tls_dir),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    with ready_process([*command, *extra], env, timeout) as started:
        if not started.url:
            raise RuntimeError("local endpoint did not start:\n" + started.text())
        started.cert = tls_dir / "cert.pem"
        yield started
