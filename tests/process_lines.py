"""Waiting for a child process to reach a point of its run, told by a line it prints.

The tests that stop training mid-run (SIGTERM, SIGKILL) read its output until an epoch line and only then
send the signal. `wait_for_line` is that loop, with a deadline that holds even when the child goes quiet,
and it fails the test when the line never came, so that a signal sent too early or too late cannot pass
unnoticed.
"""

from __future__ import annotations

import subprocess
import threading

import pytest

#: How long SageMaker waits after SIGTERM before SIGKILL when it stops a job or reclaims a spot
#: instance (StopTrainingJob in the API reference: "delays job termination for 120 seconds").
GRACE_SECONDS = 120


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 120) -> list[str]:
    """Read `process`'s stdout (text mode) until a line contains `text`; the lines read, that one last.

    The rest of the output stays in the pipe for the caller (`communicate()`). When the process ends or
    `timeout` seconds pass first, the process is killed and the test fails, showing what it printed.
    """
    assert process.stdout is not None, "start the process with stdout=subprocess.PIPE, text=True"
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in process.stdout:
            seen.append(line)
            if text in line:
                found.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found.is_set():
        when = f"in {timeout:.0f} s" if reader.is_alive() else "before its output ended"
        process.kill()
        pytest.fail(f"no line with {text!r} {when}; the process printed:\n{''.join(seen)}")
    return seen
