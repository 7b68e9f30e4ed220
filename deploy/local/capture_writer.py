"""Data capture for the local endpoint: every answered InvokeEndpoint request, written as SageMaker does.

The records and the path layout are deploy/capture.py's (SageMaker's): one JSON Lines file per hour
under `<capture dir>/<endpoint name>/<variant>/yyyy/mm/dd/hh/`, so `python -m deploy ab-report
--capture <capture dir>` reads them as it reads an endpoint's capture in S3. Two local endpoints
started with different `--variant` names and the same `--capture-dir` stand for an endpoint with two
variants. Like SageMaker, only answered requests (2xx) are captured, and capture is asynchronous to
nothing here: each record is appended and flushed before the answer goes back.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from deploy import capture


class CaptureWriter:
    """Appends capture records for `variant` under `folder` (thread-safe: requests run on threads)."""

    def __init__(
        self, folder: Path, variant: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.folder = folder
        self.variant = variant
        self.clock = clock
        self._file_name = f"{uuid.uuid4().hex}.jsonl"  # one writer's files never collide with another's
        self._lock = threading.Lock()

    def write(
        self, endpoint: str, request: bytes, request_type: str, response: bytes, response_type: str
    ) -> Path:
        """Capture one answered request; returns the file it went to."""
        now = self.clock()
        line = json.dumps(capture.record(request, request_type, response, response_type, now))
        path = self.folder / capture.relative_path(endpoint, self.variant, now, self._file_name)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        return path
