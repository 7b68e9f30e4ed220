"""What Batch Transform sends to the container, for tests and benchmarks: `MultiRecord` mini-batches.

SageMaker's documented rule (CreateTransformJob, `TransformInput.SplitType` and `BatchStrategy`): with
`SplitType=Line` the input object is split into records at newline boundaries, and with
`BatchStrategy=MultiRecord` "SageMaker sends the maximum number of records in each request, up to the
MaxPayloadInMB limit"; `MaxPayloadInMB` "must be greater than, or equal to, the size of a single record".
So a request is a run of consecutive whole lines, as long as the next line still fits. Here a record is a
line with its newline (the bytes it occupies in the file) and a MB is 2**20 bytes, the larger reading,
so the requests are at least as large as SageMaker's. Records keep their file order; nothing is dropped.

Not a conftest: the tests that need it import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import requests

MB = 1024 * 1024
JSONLINES = "application/jsonlines"


class RecordTooLarge(ValueError):
    """A single record is larger than MaxPayloadInMB: the transform job fails on it."""


def multi_record_payloads(data: bytes, max_payload_mb: int) -> Iterator[bytes]:
    """The request bodies MultiRecord + SplitType=Line makes of `data` (one input object), in order."""
    limit = max_payload_mb * MB
    batch: list[bytes] = []
    size = 0
    for record in _records(data):
        if len(record) > limit:
            raise RecordTooLarge(f"a record of {len(record)} bytes exceeds MaxPayloadInMB={max_payload_mb}")
        if size + len(record) > limit:
            yield b"".join(batch)
            batch, size = [], 0
        batch.append(record)
        size += len(record)
    if batch:
        yield b"".join(batch)


def post_to_container(
    session: requests.Session, url: str, cert: Path, body: bytes, timeout: float
) -> requests.Response:
    """One Batch Transform request: `body` as JSON Lines to the container's `POST /invocations`, JSON
    Lines asked back (the job's ContentType and Accept)."""
    return session.post(
        f"{url}/invocations",
        data=body,
        headers={"Content-Type": JSONLINES, "Accept": JSONLINES},
        verify=str(cert),
        timeout=timeout,
    )


def _records(data: bytes) -> Iterable[bytes]:
    """Lines split at b"\\n" (SageMaker's newline boundary), each with its newline; the last may lack one."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        yield data[start:end]
        start = end
