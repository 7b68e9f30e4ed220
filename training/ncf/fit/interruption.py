"""Spot interruption: SIGTERM asks training to stop at the next safe point.

SageMaker sends SIGTERM to the training container two minutes before it reclaims a spot
instance (and when a job is stopped). The handler only records the request (and ignores
repeats); the trainer checks it between chunks of an epoch (a few seconds apart) and stops by
raising `TrainingInterrupted`, keeping the checkpoint of the last completed epoch. train.py then
exits with `EXIT_INTERRUPTED`, and a restart with the same checkpoint folder resumes.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

EXIT_INTERRUPTED = 143  # 128 + SIGTERM, the shell's convention for "terminated by SIGTERM"


class TrainingInterrupted(Exception):
    """Training stopped on request; the newest checkpoint holds `epochs_done` epochs of `stage`."""

    def __init__(self, stage: str, epochs_done: int) -> None:
        super().__init__(f"stage {stage} stopped after {epochs_done} completed epochs")
        self.stage = stage
        self.epochs_done = epochs_done


_requested = threading.Event()


def install() -> None:
    """Record SIGTERM instead of dying on it (call once, from the main thread).

    After the first SIGTERM the rest are ignored: a `deploy train` job's signal forwarder repeats it every
    second until training has stopped (deploy/signals.py), and a Python handler would not protect the exit
    that follows, because the interpreter restores the default action (death) for signals with a Python
    handler while it shuts down, but leaves ignored ones ignored.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        _requested.set()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    signal.signal(signal.SIGTERM, handler)


def requested() -> bool:
    """True once SIGTERM has arrived."""
    return _requested.is_set()
