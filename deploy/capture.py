"""SageMaker data capture files: their record format and path layout, read and written (pure functions).

An endpoint with data capture writes JSON Lines files under
`<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl`, one record per captured request:

    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                       "data": "...", "encoding": "JSON"},
                     "endpointOutput": {... "mode": "OUTPUT" ...}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceTime": "2026-01-02T03:04:05Z"},
     "eventVersion": "0"}

`data` is the body as text when its content type is one of the endpoint config's JSON content types
(`encoding` "JSON"), else base64 (`encoding` "BASE64"). The variant is named only by the path, so
`variant_of` reads it from there. The local endpoint (`python -m deploy.local --capture-dir`) writes the
same records with `record` and `relative_path`, so ab-report reads both alike. The time is read from
`inferenceTime` (SageMaker's name) or `inferenceTimestamp`.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ncf.errors import NcfError

#: Content types captured as text (the endpoint config's CaptureContentTypeHeader.JsonContentTypes).
JSON_CONTENT_TYPES = ("application/json", "application/jsonlines")
_TIME_KEYS = ("inferenceTime", "inferenceTimestamp")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Served:
    """One user's answer in a captured request: which variant served it, when, and the items in order."""

    variant: str
    event_id: str
    user_id: str
    items: tuple[str, ...]
    time: datetime


def variant_of(path: str) -> str:
    """The variant named by a capture file's path (`.../<variant>/yyyy/mm/dd/hh/<file>.jsonl`)."""
    parts = path.replace("\\", "/").split("/")
    if len(parts) < 6 or not all(p.isdigit() for p in parts[-5:-1]):
        raise NcfError(f"{path}: not a data capture file path (<endpoint>/<variant>/yyyy/mm/dd/hh/<file>)")
    return parts[-6]


def parse_record(line: str, variant: str, where: str) -> list[Served]:
    """The answers in one capture record (a batch request holds several); `where` names it in errors."""
    try:
        record = json.loads(line)
        output = record["captureData"]["endpointOutput"]
        metadata = record["eventMetadata"]
        time = _parse_time(next(metadata[key] for key in _TIME_KEYS if key in metadata))
        answers = _predictions(decode(output))
        return [Served(variant, metadata["eventId"], str(a["user_id"]), _item_ids(a), time) for a in answers]
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        raise NcfError(
            f"{where}: not a data capture record with a recommendations answer ({exc!r})"
        ) from None


def decode(payload: dict[str, Any]) -> str:
    """A captured body as text: `data` itself (encoding JSON) or decoded from base64."""
    encoding = payload.get("encoding", "JSON")
    if encoding == "JSON":
        return payload["data"]
    if encoding == "BASE64":
        try:
            return base64.b64decode(payload["data"], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"bad BASE64 data: {exc}") from None
    raise ValueError(f"unknown encoding {encoding!r}")


def _predictions(body: str) -> list[dict[str, Any]]:
    """The answers of a response body: `{"predictions": [...]}` or JSON Lines of answers."""
    text = body.strip()
    if text.startswith("{") and "\n" not in text:
        parsed = json.loads(text)
        return parsed.get("predictions", [parsed])
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _item_ids(answer: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(item["item_id"]) for item in answer["items"])


def _parse_time(text: str) -> datetime:
    """`2026-01-02T03:04:05Z` (also with fractional seconds or an offset) as an aware UTC time."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def record(
    request: bytes, request_type: str, response: bytes, response_type: str, time: datetime
) -> dict[str, Any]:
    """The capture record SageMaker writes for one request and its answer."""
    return {
        "captureData": {
            "endpointInput": _payload(request, request_type, "INPUT"),
            "endpointOutput": _payload(response, response_type, "OUTPUT"),
        },
        "eventMetadata": {"eventId": str(uuid.uuid4()), "inferenceTime": time.strftime(_TIME_FORMAT)},
        "eventVersion": "0",
    }


def _payload(body: bytes, content_type: str, mode: str) -> dict[str, str]:
    as_text = content_type.split(";")[0].strip() in JSON_CONTENT_TYPES
    return {
        "observedContentType": content_type,
        "mode": mode,
        "data": body.decode("utf-8", "replace") if as_text else base64.b64encode(body).decode("ascii"),
        "encoding": "JSON" if as_text else "BASE64",
    }


def relative_path(endpoint: str, variant: str, time: datetime, file_name: str) -> str:
    """`<endpoint>/<variant>/yyyy/mm/dd/hh/<file_name>`: where a capture file of that hour goes."""
    return f"{endpoint}/{variant}/{time:%Y/%m/%d/%H}/{file_name}"
