"""Top-k recommendations from the NCF SavedModel, inside the SageMaker TensorFlow Serving container.

The container imports this file as `/opt/ml/model/code/inference.py` and calls `handler(data, context)` for
every `POST /invocations`; `data` is the request body stream and `context` carries `rest_uri` (TF Serving's
REST predict URL), `request_content_type`, `accept_header` and `content_length`. Only the standard library and
`requests` are used: the serving image has neither TensorFlow nor a guaranteed numpy.

Why `handler` and not `input_handler`/`output_handler`: the response needs the request (each user's own `k`,
the requested ids, which signature was chosen), a batch may need one TF Serving call per signature, and TF
Serving's own errors must be caught and rewritten before anything reaches the client. The split handlers
give `output_handler` only the TF Serving response, and the container posts with a fresh connection each
time, where this module keeps one pooled `requests.Session` (`SESSION`).

Requests (`Content-Type`):
- `application/json`: one request `{"user_id": "42", "k": 10, "exclude": ["50"], "exclude_seen": true}`
  (only `user_id` is required), a request with the user's latest events `{"user_id": "42", "history":
  ["50", "172"], "k": 10}` (oldest first; see "Real-time events" below), a batch `{"instances":
  [{...}, ...]}`, or pair scoring `{"signature": "score", "instances": [{"user_id": "42", "item_id":
  "50"}]}`, or similarity
  `{"signature": "similar_items", "item_id": "50", "k": 10}` / `{"signature": "similar_users",
  "user_id": "42", "k": 10}`. `"signature"` is `"recommend"` (default), `"score"`, `"similar_items"` or
  `"similar_users"`, at the top level (the default of every instance) or per instance.
- `application/jsonlines` (or `application/x-jsonlines`): one request object per line, as Batch Transform
  sends with `SplitType=Line`. With `BatchStrategy=MultiRecord` a body holds as many lines as fit in
  `MaxPayloadInMB` (some 200,000 short lines in 6 MB), so line-based bodies (JSON Lines and CSV) are
  bounded by `NCF_MAX_BODY_BYTES` only, never by `NCF_MAX_INSTANCES`; blank lines are skipped.
- `text/csv`: `id[,k[,signature]]` per line, no header: the id is the signature's (`user_id` for
  `recommend` and `similar_users`, `item_id` for `similar_items`); an empty or missing k is the default k,
  a missing signature `recommend` (e.g. `42`, `42,5`, `50,10,similar_items`, `50,,similar_items`).
  Scoring needs two ids and is JSON-only.

Responses (`Accept`: `application/json`, the default, or `application/jsonlines`), in request order:
`{"predictions": [{"user_id": "42", "items": [{"item_id": "50", "score": 0.93}, ...], "fallback": false}]}`
and `{"user_id": "42", "item_id": "50", "score": 0.93, "fallback": false}` per pair scored; similarity
answers `{"item_id": "50", "similar": [{"item_id": "172", "score": 0.81}, ...]}` (`similar_items`) and
`{"user_id": "42", "similar": [{"user_id": "7", "score": 0.64}, ...]}` (`similar_users`), most similar
first, the query itself never listed; the score is the measure chosen at export (cosine or Pearson in
[-1, 1], Jaccard in [0, 1]). JSON Lines puts one prediction per line. `fallback` is true for an unknown
user (popularity items) or, when scoring, an unknown user or item. The user's training items are never
recommended unless `"exclude_seen": false`.

Real-time events (`history`, JSON and JSON Lines only): the items the user interacted with since the model
was trained, oldest first. A sequence model (`model_type` sasrec) appends them to the user's stored history
(for an unknown user they are the whole history) and keeps the latest `max_len` items; the history's items
are excluded like seen items. Ids the catalog does not know are ignored and listed in the prediction's
`ignored_history`; `fallback` is true only when no known item is left (and the user is unknown). NCF model
types fold the history into the user's vector by a few gradient steps inside the model
(`ncf.serving.foldin`); a known user with an empty history gets the plain answer. At most
`NCF_MAX_HISTORY` entries (default 1000); `history` cannot be combined with `exclude` or `exclude_seen`.

Filters (JSON and JSON Lines, for recommendations and `similar_items`): `"filter": "NAME"` and
`"filter_values": {"PARAM": value or [values]}` select one of the filters declared at training and
exported in the model (README: Filters and promotions); the model answers only items that pass it, and
checks the names and values itself (`filter_error`: unknown filter, missing or extra parameter, wrong
type, value not in the vocabulary), which this handler turns into a 400. The shape of `filter_values`
is checked here. Instances with the same filter, values and `exclude_seen` share a call to
`recommend_filtered` / `similar_items_filtered` / `recommend_from_history_filtered` (with `history`); a
model without those signatures refuses the request.

Interaction filters (`Interactions.event_type`, `Interactions.age_days`) read the user's stored
interactions; `"now": SECONDS` (since the epoch) is the time ages count from, by default the model
server's clock (only with a filter or a promotion). They apply to a user's recommendations, not to
`similar_items`.

Promotions (JSON and JSON Lines recommendations, with or without `history`): `"promotion": {"filter":
NAME, "filter_values": {...}, "share": S}` gives round(S * k) slots (at least 1) to the best items that
pass that filter (a second, filtered call with the request's exclusions, or its history), marked
`"promoted": true`; the request's own list fills the rest without repeating them, in score order.

Item fields (JSON and JSON Lines, recommendations and `similar_items`): `"item_fields": ["title", ...]`
adds `"fields": {"title": ...}` to every listed item, read from the model's `item_fields` signature.

Signatures called (always the columnar form, because `k` is a scalar): `serving_default` (seen items
excluded), `recommend_excluding` (seen items and the `exclude` list), `recommend_with_seen` (only the
`exclude` list), `recommend_from_history`, `score`, `similar_items`, `similar_users`. The instances of a
request are grouped by the signature they need and each group is sent in chunks of at most
`NCF_TFS_CHUNK_SIZE` instances, one TF Serving call per chunk with the largest `k` of that chunk; each
instance's list is then cut to its own `k`. Chunks keep every call (and the model server's memory for its
[chunk, catalog] scores) small whatever the body holds; answers are serialised chunk by chunk and returned
in request order.

Errors. The container answers 200 with whatever `handler` returns, and 500 `{"error": str(exception)}`
when it raises; it cannot send a 4xx. The SageMaker runtime then gives the client a `ModelError` (HTTP 424,
`OriginalStatusCode` 500, `OriginalMessage` the container's body). So every refusal raises `InferenceError`,
whose `str()` is itself JSON: `{"error": "<what was wrong>", "field": "<name or null>", "status": <code>}`.
`status` is the HTTP status this project would have used (400 bad input, 404 an unknown id in a
similarity request: there is no sensible fallback for "similar to X", and one unknown id refuses the whole
request, naming it; 406 Accept, 413 too large, 415 Content-Type; 502/503/504 TF Serving failures, 500 a
bug here), so clients and logs can tell a client error from a server error even though the transport
cannot. Every refusal is logged as one line of bare JSON on stderr, `{"event": "client_error", ...}`
(logger `ncf.inference.events`, level WARNING) or `{"event": "server_error", ...}` (ERROR), written
without the container's `<pid> <time> <LEVEL>` prefix: each is a whole CloudWatch log event that is a
JSON object, so the metric filters `{ $.event = "server_error" }` and `{ $.event = "client_error" }`
count them (JSON filter patterns match only log events that are JSON). The container's Python service
also logs every exception a handler raises, client errors included, with `log.exception` (ERROR and a
traceback): alarm on the `server_error` filter, not on "ERROR" or "Traceback". TF Serving's own error
text (often a stack dump) is logged, never returned. `ncf-sagemaker`'s `invoke` command unwraps
the nested JSON and prints the message.

Configuration (environment variables of the SageMaker model, read once at import):
- `NCF_MAX_K` (default 100): largest `k` accepted. The catalog size also caps `k`: asking for more
  items than the model has is refused with the catalog size in the message.
- `NCF_DEFAULT_K` (default 10): `k` when a request gives none.
- `NCF_MAX_INSTANCES` (default 1000): most users (or pairs) in a JSON `instances` list. JSON Lines and
  CSV bodies (Batch Transform's) are bounded by the body size only.
- `NCF_MAX_BODY_BYTES` (default 6291456, the 6 MB payload limit of real-time endpoints and of
  `MaxPayloadInMB=6`).
- `NCF_TFS_CHUNK_SIZE` (default 1000): most instances in one TF Serving call.
- `NCF_TFS_TIMEOUT_S` (default 30): how long to wait for one TF Serving call.
- `NCF_MAX_HISTORY` (default 1000): most entries in one request's `history`.
- `NCF_MAX_FILTER_VALUES` (default 100): most values of one filter parameter.
- `NCF_MAX_ITEM_FIELDS` (default 20): most names in one request's `item_fields`.
- `NCF_DEFAULT_PROMOTION` (default none): a promotion object, e.g. `{"filter": "on_sale", "share": 0.2}`,
  applied to every recommendation request without its own `promotion` (`"promotion": null` opts out).

Needs Python 3.10+ (the TF 2.x serving images ship 3.10-3.12). The container loads this file with
`importlib` without registering it in `sys.modules`, so it must not use `from __future__ import
annotations` (dataclasses then fail at import).
"""

import csv
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import requests

LOG = logging.getLogger("ncf.inference")
# Refusals, one bare JSON object per line (see the module docstring and `_log_refusal`).
EVENTS = logging.getLogger("ncf.inference.events")

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
_REQUEST_TYPES = {JSON: JSON, JSONLINES: JSONLINES, "application/x-jsonlines": JSONLINES, CSV: CSV}
_RESPONSE_TYPES = {
    JSON: JSON,
    "*/*": JSON,
    "application/*": JSON,
    JSONLINES: JSONLINES,
    "application/x-jsonlines": JSONLINES,
}

RECOMMEND = "recommend"
SCORE = "score"
SIMILAR_ITEMS = "similar_items"
SIMILAR_USERS = "similar_users"
_FIELDS = {
    RECOMMEND: (
        "user_id",
        "k",
        "exclude",
        "exclude_seen",
        "history",
        "filter",
        "filter_values",
        "promotion",
        "item_fields",
        "now",
        "signature",
    ),
    SCORE: ("user_id", "item_id", "signature"),
    SIMILAR_ITEMS: ("item_id", "k", "filter", "filter_values", "item_fields", "signature"),
    SIMILAR_USERS: ("user_id", "k", "signature"),
}
# The id a similarity signature takes, and the name of its id output in the SavedModel.
_SIMILAR_QUERY = {SIMILAR_ITEMS: "item_id", SIMILAR_USERS: "user_id"}
FROM_HISTORY = "recommend_from_history"
# The signatures of an export with filters (`ncf.serving.filtered`), by the signature a request names.
_FILTERED = {
    RECOMMEND: "recommend_filtered",
    SIMILAR_ITEMS: "similar_items_filtered",
    FROM_HISTORY: "recommend_from_history_filtered",
}
_PARAM_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


@dataclass(frozen=True)
class Settings:
    """Limits of the handler, from `NCF_*` environment variables (see the module docstring)."""

    max_k: int = 100
    default_k: int = 10
    max_instances: int = 1000
    max_history: int = 1000
    max_filter_values: int = 100
    max_item_fields: int = 20
    max_body_bytes: int = 6 * 1024 * 1024
    tfs_chunk_size: int = 1000
    tfs_timeout_s: float = 30.0
    default_promotion: Any = None  # a Promotion, from NCF_DEFAULT_PROMOTION (a JSON promotion object)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        """Read the settings; a bad value fails the container at start, naming the variable."""
        names = {
            "max_k": "NCF_MAX_K",
            "default_k": "NCF_DEFAULT_K",
            "max_instances": "NCF_MAX_INSTANCES",
            "max_history": "NCF_MAX_HISTORY",
            "max_filter_values": "NCF_MAX_FILTER_VALUES",
            "max_item_fields": "NCF_MAX_ITEM_FIELDS",
            "max_body_bytes": "NCF_MAX_BODY_BYTES",
            "tfs_chunk_size": "NCF_TFS_CHUNK_SIZE",
            "tfs_timeout_s": "NCF_TFS_TIMEOUT_S",
        }
        values: dict[str, Any] = {}
        for attr, var in names.items():
            raw = env.get(var, "").strip()
            if not raw:
                continue
            kind = float if attr == "tfs_timeout_s" else int
            try:
                values[attr] = kind(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
            if values[attr] <= 0:
                raise ValueError(f"{var}={raw!r} must be positive")
        settings = cls(**values)
        if settings.default_k > settings.max_k:
            raise ValueError(f"NCF_DEFAULT_K={settings.default_k} is larger than NCF_MAX_K={settings.max_k}")
        raw = env.get("NCF_DEFAULT_PROMOTION", "").strip()
        if raw:
            return replace(settings, default_promotion=_default_promotion(raw, settings))
        return settings


class InferenceError(Exception):
    """A refused or failed request; `str()` is the JSON body the client finally reads."""

    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field, "status": self.status}

    def __str__(self) -> str:
        return json.dumps(self.as_dict())


@dataclass(frozen=True)
class Filter:
    """A request's filter: its name and each `$PARAM`'s values as text, sorted by parameter name."""

    name: str
    values: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Promotion:
    """A share of a request's k slots for the best items that pass another filter."""

    filter: Filter
    share: float

    def slots(self, k: int) -> int:
        """Promoted slots of a k-item answer: the share of k, rounded, at least 1."""
        return min(k, max(1, round(self.share * k)))


@dataclass(frozen=True)
class Recommend:
    """One user's top-k request."""

    user_id: str
    k: int
    exclude: tuple[str, ...] = ()
    exclude_seen: bool = True
    history: tuple[str, ...] | None = None  # the user's latest events, oldest first (None: not given)
    filter: Filter | None = None
    promotion: Promotion | None = None
    item_fields: tuple[str, ...] = ()
    now: float = 0.0  # the time interaction filters count ages from; 0: the model server's clock


@dataclass(frozen=True)
class Score:
    """One (user, item) pair to score."""

    user_id: str
    item_id: str


@dataclass(frozen=True)
class Similar:
    """The k items most similar to an item (`similar_items`), or users to a user (`similar_users`)."""

    signature: str
    query_id: str
    k: int
    filter: Filter | None = None
    item_fields: tuple[str, ...] = ()


Instance = Recommend | Score | Similar


@dataclass(frozen=True)
class Call:
    """One TF Serving predict call: the signature, the request instances it answers, the JSON body."""

    signature: str
    indices: tuple[int, ...]
    body: dict[str, Any]


# --------------------------------------------------------------------------------------------- parsing


def media_type(header: str | None) -> str:
    """`"Application/JSON; charset=utf-8"` -> `"application/json"`."""
    return (header or "").split(";", 1)[0].strip().lower()


def response_type(accept: str | None) -> str:
    """The response media type for an Accept header (first supported entry wins; none given -> JSON)."""
    if not accept or not accept.strip():
        return JSON
    for entry in accept.split(","):
        chosen = _RESPONSE_TYPES.get(media_type(entry))
        if chosen:
            return chosen
    raise InferenceError(
        f"unsupported Accept {accept!r}: use application/json or application/jsonlines", "accept", 406
    )


def read_body(data: Any, content_length: int | None, settings: Settings) -> bytes:
    """Read the request body, refusing it before reading when the declared length is already too large."""
    too_large = InferenceError(
        f"request body is larger than {settings.max_body_bytes} bytes (NCF_MAX_BODY_BYTES)", "body", 413
    )
    if content_length is not None and content_length > settings.max_body_bytes:
        raise too_large
    body = data.read(settings.max_body_bytes + 1) if hasattr(data, "read") else data
    if isinstance(body, str):
        body = body.encode("utf-8")
    if len(body) > settings.max_body_bytes:
        raise too_large
    return body


def parse_request(body: bytes, content_type: str | None, settings: Settings) -> list[Instance]:
    """Turn a request body into validated instances, or raise `InferenceError` naming the bad field."""
    kind = _REQUEST_TYPES.get(media_type(content_type))
    if kind is None:
        raise InferenceError(
            f"unsupported Content-Type {content_type!r}: use application/json, application/jsonlines "
            "or text/csv",
            "content_type",
            415,
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InferenceError("request body is not UTF-8 text", "body") from None
    if kind == JSON:
        instances = _parse_json(text, settings)
    elif kind == JSONLINES:
        instances = _parse_json_lines(text, settings)
    else:
        instances = _parse_csv(text, settings)
    if not instances:
        raise InferenceError("request has no instances", "instances")
    return instances


def _load_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as err:
        raise InferenceError(f"{where}invalid JSON: {err}", "body") from None


def _check_count(count: int, settings: Settings) -> None:
    if count > settings.max_instances:
        raise InferenceError(
            f"too many instances: {count} > {settings.max_instances} (NCF_MAX_INSTANCES)", "instances", 413
        )


def _parse_json(text: str, settings: Settings) -> list[Instance]:
    if not text.strip():
        raise InferenceError("request body is empty", "body")
    document = _load_json(text, "")
    if not isinstance(document, dict):
        raise InferenceError("request must be a JSON object", "body")
    if "instances" not in document:
        return [_parse_instance(document, "", None, settings)]
    unknown = sorted(set(document) - {"instances", "signature"})
    if unknown:
        raise InferenceError(
            f"unknown field {unknown[0]!r} next to 'instances' (allowed: signature)", unknown[0]
        )
    rows = document["instances"]
    if not isinstance(rows, list):
        raise InferenceError("'instances' must be a list of objects", "instances")
    _check_count(len(rows), settings)
    default_signature = _signature(document, "", RECOMMEND)
    return [
        _parse_instance(row, f"instances[{i}]: ", default_signature, settings) for i, row in enumerate(rows)
    ]


def _parse_json_lines(text: str, settings: Settings) -> list[Instance]:
    # Split at "\n" only, as Batch Transform does (str.splitlines also splits at U+2028 and others).
    lines = [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    return [
        _parse_instance(_load_json(line, f"line {number}: "), f"line {number}: ", None, settings)
        for number, line in lines
    ]


def _parse_csv(text: str, settings: Settings) -> list[Instance]:
    rows = [(number, row) for number, row in enumerate(csv.reader(text.splitlines()), start=1) if row]
    instances: list[Instance] = []
    for number, row in rows:
        where = f"line {number}: "
        if len(row) > 3:
            raise InferenceError(f"{where}expected id[,k[,signature]], got {len(row)} columns", "body")
        signature = row[2].strip() if len(row) == 3 and row[2].strip() else RECOMMEND
        if signature not in (RECOMMEND, *_SIMILAR_QUERY):
            raise InferenceError(
                f"{where}signature {signature!r} is not available in CSV "
                f"(use {RECOMMEND}, {SIMILAR_ITEMS} or {SIMILAR_USERS}; score with JSON)",
                "signature",
            )
        field = _SIMILAR_QUERY.get(signature, "user_id")
        query_id = _user_id(row[0], where, field)
        k = settings.default_k
        if len(row) >= 2 and row[1].strip():
            try:
                k = int(row[1].strip())
            except ValueError:
                raise InferenceError(f"{where}k must be an integer, got {row[1]!r}", "k") from None
        k = _k(k, where, settings)
        instances.append(
            Similar(signature, query_id, k) if signature != RECOMMEND else Recommend(query_id, k)
        )
    return instances


def _signature(obj: dict[str, Any], where: str, default: str | None) -> str:
    value = obj.get("signature", default or RECOMMEND)
    if not isinstance(value, str) or value not in _FIELDS:
        raise InferenceError(
            f"{where}unknown signature {json.dumps(value)} (use {', '.join(map(repr, _FIELDS))})", "signature"
        )
    return value


def _parse_instance(obj: Any, where: str, default_signature: str | None, settings: Settings) -> Instance:
    if not isinstance(obj, dict):
        raise InferenceError(f"{where}each request must be a JSON object", "instances")
    signature = _signature(obj, where, default_signature)
    allowed = _FIELDS[signature]
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise InferenceError(
            f"{where}unknown field {unknown[0]!r} for signature {signature!r} "
            f"(allowed: {', '.join(allowed)})",
            unknown[0],
        )
    chosen = _filter(obj, where, settings)
    if signature in _SIMILAR_QUERY:
        field = _SIMILAR_QUERY[signature]
        query = _user_id(obj.get(field), where, field)
        fields = _item_fields(obj, where, settings)
        return Similar(signature, query, _json_k(obj, where, settings), chosen, fields)
    user_id = _user_id(obj.get("user_id"), where, "user_id")
    if signature == SCORE:
        return Score(user_id, _user_id(obj.get("item_id"), where, "item_id"))
    k = _json_k(obj, where, settings)
    exclude = obj.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(item, str) and item for item in exclude):
        raise InferenceError(f"{where}exclude must be a list of non-empty item id strings", "exclude")
    exclude_seen = obj.get("exclude_seen", True)
    if not isinstance(exclude_seen, bool):
        raise InferenceError(f"{where}exclude_seen must be true or false", "exclude_seen")
    history = _history(obj, where, settings)
    if history is not None and (exclude or "exclude_seen" in obj):
        raise InferenceError(
            f"{where}history cannot be combined with exclude or exclude_seen (its items and the user's"
            " seen items are always excluded)",
            "history",
        )
    promotion = _promotion(obj, where, settings)
    fields = _item_fields(obj, where, settings)
    now = _now(obj, where, chosen is not None or promotion is not None)
    return Recommend(user_id, k, tuple(exclude), exclude_seen, history, chosen, promotion, fields, now)


def _now(obj: dict[str, Any], where: str, filtered: bool) -> float:
    """The request's `now` (0.0 when absent: the model server's clock), with a filter or promotion only."""
    if "now" not in obj:
        return 0.0
    value = obj["now"]
    if not filtered:
        raise InferenceError(
            f"{where}now applies to filters only (the time Interactions.age_days counts from): give a filter"
            " or a promotion, or drop now",
            "now",
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise InferenceError(
            f"{where}now must be a time in seconds since the epoch (a positive number), got"
            f" {json.dumps(value)}",
            "now",
        )
    return float(value)


def _default_promotion(raw: str, settings: Settings) -> Promotion:
    """`NCF_DEFAULT_PROMOTION`'s promotion; a bad value stops the container at start, naming the variable."""
    try:
        promotion = _promotion({"promotion": json.loads(raw)}, "", settings)
    except (ValueError, InferenceError) as err:
        detail = err.message if isinstance(err, InferenceError) else f"not JSON ({err})"
        raise ValueError(f"NCF_DEFAULT_PROMOTION={raw!r}: {detail}") from None
    if promotion is None:
        raise ValueError(f"NCF_DEFAULT_PROMOTION={raw!r}: expected a promotion object, not null")
    return promotion


def _item_fields(obj: dict[str, Any], where: str, settings: Settings) -> tuple[str, ...]:
    """The request's `item_fields`: a list of at most `max_item_fields` distinct non-empty names."""
    fields = obj.get("item_fields", [])
    if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
        raise InferenceError(f"{where}item_fields must be a list of item column names", "item_fields")
    if len(fields) > settings.max_item_fields:
        raise InferenceError(
            f"{where}item_fields lists {len(fields)} names, more than {settings.max_item_fields}"
            " (NCF_MAX_ITEM_FIELDS)",
            "item_fields",
        )
    return tuple(dict.fromkeys(fields))


def _promotion(obj: dict[str, Any], where: str, settings: Settings) -> Promotion | None:
    """The request's `promotion`: `{"filter": ..., "filter_values": ..., "share": s}`; when absent the
    deploy-time default (`NCF_DEFAULT_PROMOTION`); `null` asks for none."""
    if "promotion" not in obj:
        return settings.default_promotion
    value = obj["promotion"]
    if value is None:
        return None
    shape = 'promotion must be an object {"filter": NAME, "share": S} (0 < S <= 1; optional filter_values)'
    if (
        not isinstance(value, dict)
        or "filter" not in value
        or set(value) - {"filter", "filter_values", "share"}
    ):
        raise InferenceError(f"{where}{shape}", "promotion")
    share = value.get("share")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise InferenceError(
            f"{where}promotion share must be a number in (0, 1], got {json.dumps(share)}", "promotion"
        )
    try:
        chosen = _filter(value, f"{where}promotion: ", settings)
    except InferenceError as err:
        raise InferenceError(err.message, "promotion", err.status) from None
    return Promotion(chosen, float(share))


def _filter(obj: dict[str, Any], where: str, settings: Settings) -> Filter | None:
    """The request's `filter` and `filter_values` (None without a filter), checked for shape; the model
    checks the names and values against the filter itself."""
    name = obj.get("filter")
    if name is None:
        if "filter_values" in obj:
            raise InferenceError(f"{where}filter_values needs a filter naming which one", "filter_values")
        return None
    if not isinstance(name, str) or not name:
        raise InferenceError(f"{where}filter must be a filter's name (a non-empty string)", "filter")
    given = obj.get("filter_values", {})
    if not isinstance(given, dict):
        raise InferenceError(
            f'{where}filter_values must be an object {{"PARAM": value or [values]}}', "filter_values"
        )
    values = tuple(
        sorted((param, _param_values(param, value, where, settings)) for param, value in given.items())
    )
    return Filter(name, values)


def _param_values(param: str, value: Any, where: str, settings: Settings) -> tuple[str, ...]:
    """One parameter's values as the model reads them: text, booleans as true/false, numbers as JSON."""
    if not _PARAM_NAME.fullmatch(param):
        raise InferenceError(
            f"{where}filter_values: {param!r} is not a parameter name (the $NAME of the filter without"
            " the $, upper case)",
            "filter_values",
        )
    listed = value if isinstance(value, list) else [value]
    if not listed:
        raise InferenceError(f"{where}filter_values: {param} has an empty list of values", "filter_values")
    if len(listed) > settings.max_filter_values:
        raise InferenceError(
            f"{where}filter_values: {param} has {len(listed)} values, more than"
            f" {settings.max_filter_values} (NCF_MAX_FILTER_VALUES)",
            "filter_values",
            413,
        )
    for entry in listed:
        if isinstance(entry, (dict, list)) or entry is None or entry == "":
            raise InferenceError(
                f"{where}filter_values: {param} must be a non-empty string, number or boolean, or a list"
                f" of them, got {json.dumps(entry)}",
                "filter_values",
            )
    return tuple(entry if isinstance(entry, str) else json.dumps(entry) for entry in listed)


def _history(obj: dict[str, Any], where: str, settings: Settings) -> tuple[str, ...] | None:
    """The request's `history` (None when absent): a list of at most `max_history` non-empty id strings."""
    if "history" not in obj:
        return None
    history = obj["history"]
    if not isinstance(history, list) or not all(isinstance(item, str) and item for item in history):
        raise InferenceError(f"{where}history must be a list of non-empty item id strings", "history")
    if len(history) > settings.max_history:
        raise InferenceError(
            f"{where}history has {len(history)} items, more than {settings.max_history} (NCF_MAX_HISTORY)",
            "history",
            413,
        )
    return tuple(history)


def _json_k(obj: dict[str, Any], where: str, settings: Settings) -> int:
    k = obj.get("k", settings.default_k)
    if isinstance(k, bool) or not isinstance(k, int):
        raise InferenceError(f"{where}k must be an integer, got {json.dumps(k)}", "k")
    return _k(k, where, settings)


def _user_id(value: Any, where: str, field: str) -> str:
    if value is None:
        raise InferenceError(f"{where}{field} is missing", field)
    if not isinstance(value, str):
        raise InferenceError(f"{where}{field} must be a string, got {json.dumps(value)}", field)
    if not value:
        raise InferenceError(f"{where}{field} is empty", field)
    return value


def _k(k: int, where: str, settings: Settings) -> int:
    if not 1 <= k <= settings.max_k:
        raise InferenceError(f"{where}k must be between 1 and {settings.max_k} (NCF_MAX_K), got {k}", "k")
    return k


# ------------------------------------------------------------------------------------ TF Serving calls


def plan_calls(instances: list[Instance], chunk_size: int) -> list[Call]:
    """Group instances by the signature they need; one columnar predict body per chunk of a group."""
    groups: dict[str, list[int]] = {}
    for index, instance in enumerate(instances):
        groups.setdefault(_call_key(instance), []).append(index)
    return [
        _call(key, indices[start : start + chunk_size], instances)
        for key, indices in groups.items()
        for start in range(0, len(indices), chunk_size)
    ]


def _call_key(instance: Instance) -> Any:
    """Which TF Serving call answers an instance (`seen` becomes a signature per chunk, in `_call`); a
    filtered request's call also carries its filter (one filter and one `exclude_seen` per call)."""
    if isinstance(instance, Score):
        return "score"
    if getattr(instance, "filter", None) is not None:
        seen = isinstance(instance, Recommend) and instance.exclude_seen
        kind = FROM_HISTORY if getattr(instance, "history", None) is not None else RECOMMEND
        now = getattr(instance, "now", 0.0)
        return (_FILTERED[getattr(instance, "signature", kind)], instance.filter, seen, now)
    if isinstance(instance, Similar):
        return instance.signature
    if instance.history is not None:
        return FROM_HISTORY
    return "seen" if instance.exclude_seen else "recommend_with_seen"


def _call(key: Any, indices: list[int], instances: list[Instance]) -> Call:
    """The predict body for the instances at `indices`, all of call key `key`."""
    members = [instances[i] for i in indices]
    if isinstance(key, tuple):
        return _filtered_call(key, indices, members)
    if key == "score":
        inputs: dict[str, Any] = {
            "user_id": [m.user_id for m in members],
            "item_id": [m.item_id for m in members],
        }
        return Call("score", tuple(indices), {"signature_name": "score", "inputs": inputs})
    if key in _SIMILAR_QUERY:
        inputs = {_SIMILAR_QUERY[key]: [m.query_id for m in members], "k": max(m.k for m in members)}
        return Call(key, tuple(indices), {"signature_name": key, "inputs": inputs})
    inputs = {"user_id": [m.user_id for m in members], "k": max(m.k for m in members)}
    if key == FROM_HISTORY:
        inputs["history"] = _padded([m.history for m in members])
        return Call(key, tuple(indices), {"signature_name": key, "inputs": inputs})
    signature = key
    if key == "seen":
        signature = "recommend_excluding" if any(m.exclude for m in members) else "serving_default"
    if signature != "serving_default":
        inputs["exclude"] = _padded([m.exclude for m in members])
    return Call(signature, tuple(indices), {"signature_name": signature, "inputs": inputs})


def _filtered_call(key: tuple[str, Filter, bool, float], indices: list[int], members: list[Any]) -> Call:
    """A `recommend_filtered` / `similar_items_filtered` call: the filter's name and its parameters as a
    name vector and a padded value matrix (one "" name and row when it has none: never an empty tensor);
    the recommendations' `now` (0: the model server's clock)."""
    signature, chosen, exclude_seen, now = key
    names = [name for name, _ in chosen.values] or [""]
    inputs: dict[str, Any] = {
        "k": max(m.k for m in members),
        "filter": chosen.name,
        "filter_names": names,
        "filter_values": _padded([values for _, values in chosen.values] or [()]),
    }
    if signature == _FILTERED[SIMILAR_ITEMS]:
        inputs["item_id"] = [m.query_id for m in members]
    elif signature == _FILTERED[FROM_HISTORY]:
        inputs["user_id"] = [m.user_id for m in members]
        inputs["history"] = _padded([m.history for m in members])
        inputs["now"] = now
    else:
        inputs["user_id"] = [m.user_id for m in members]
        inputs["exclude"] = _padded([m.exclude for m in members])
        inputs["exclude_seen"] = exclude_seen
        inputs["now"] = now
    return Call(signature, tuple(indices), {"signature_name": signature, "inputs": inputs})


def _padded(rows: list[tuple[str, ...]]) -> list[list[str]]:
    """Id lists as a string matrix, "" padding each to the longest (at least one column)."""
    width = max(1, *(len(row) for row in rows))
    return [list(row) + [""] * (width - len(row)) for row in rows]


def _new_session() -> requests.Session:
    """One pooled session to TF Serving on this host.

    `trust_env` off: the model server is on localhost, so the environment's proxies (an `HTTP_PROXY` set
    for the container's egress would otherwise carry localhost calls unless `NO_PROXY` names it) and
    netrc credentials never apply, and requests stops scanning the whole environment on every call
    (more time than the model's own top-k, measured with cProfile on the local endpoint).
    """
    session = requests.Session()
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
    session.mount("http://", adapter)
    return session


SESSION = _new_session()


def call_tfs(rest_uri: str, body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """POST one predict body; TF Serving failures become server-side `InferenceError`s (details logged)."""
    try:
        response = SESSION.post(
            rest_uri,
            data=json.dumps(body, separators=(",", ":")),
            headers={"Content-Type": JSON},
            timeout=settings.tfs_timeout_s,
        )
    except requests.Timeout:
        raise InferenceError(
            f"the model server did not answer within {settings.tfs_timeout_s:g} s", None, 504
        ) from None
    except requests.RequestException as err:
        LOG.error("TF Serving at %s is unreachable: %s", rest_uri, err)
        raise InferenceError("the model server is unavailable", None, 503) from None
    if response.status_code != 200:
        _refuse_missing_history_signature(body, response)
        _refuse_missing_filtered_signature(body, response)
        _refuse_missing_item_fields_signature(body, response)
        LOG.error(
            "TF Serving answered HTTP %d for signature %s: %.2000s",
            response.status_code,
            body.get("signature_name"),
            response.text,
        )
        raise InferenceError(f"the model server failed (HTTP {response.status_code})", None, 502)
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("outputs"), dict):
        raise _malformed(body, "no 'outputs' object")
    return document["outputs"]


def _refuse_missing_history_signature(body: dict[str, Any], response: requests.Response) -> None:
    """A `history` request to an export without `recommend_from_history` is the client's error, said clearly.

    Every export of this version has the signature; one made before real-time events were supported
    does not, and TF Serving answers 400 "... not found in signature def".
    """
    missing = response.status_code == 400 and "not found" in response.text
    if body.get("signature_name") == FROM_HISTORY and missing:
        raise InferenceError(
            "this model has no recommend_from_history signature (it was exported before requests could"
            " carry a history): retrain and redeploy it with this version, or drop 'history'",
            "history",
        )


def _refuse_missing_item_fields_signature(body: dict[str, Any], response: requests.Response) -> None:
    """`item_fields` from a model that stores none: exported without an items channel (or before)."""
    missing = response.status_code == 400 and "not found" in response.text
    if body.get("signature_name") == "item_fields" and missing:
        raise InferenceError(
            "this model stores no item fields (it was exported without an items channel, with"
            " item_fields none, or before item fields were supported): drop 'item_fields'",
            "item_fields",
        )


def _refuse_missing_filtered_signature(body: dict[str, Any], response: requests.Response) -> None:
    """A filter request to an export without filters is the client's error: exported without a filters
    file, or before filters were supported (TF Serving: 400 "... not found in signature def")."""
    missing = response.status_code == 400 and "not found" in response.text
    if body.get("signature_name") in _FILTERED.values() and missing:
        raise InferenceError(
            f"this model has no filters, so none named {body['inputs']['filter']!r} (it was exported"
            " without a filters file, or before filters were supported): retrain it with --filters, or"
            " drop 'filter'",
            "filter",
        )


def _malformed(body: dict[str, Any], detail: str) -> InferenceError:
    LOG.error("TF Serving returned malformed output for signature %s: %s", body.get("signature_name"), detail)
    return InferenceError("the model returned an unexpected response", None, 502)


def _column(outputs: dict[str, Any], name: str, rows: int, call: Call) -> list[Any]:
    value = outputs.get(name)
    if not isinstance(value, list) or len(value) != rows:
        raise _malformed(call.body, f"output {name!r} is not a list of {rows} rows")
    return value


def read_outputs(call: Call, outputs: dict[str, Any], instances: list[Instance]) -> list[dict[str, Any]]:
    """Predictions (in the call's instance order) from one signature's columnar outputs."""
    rows = len(call.indices)
    members = [instances[i] for i in call.indices]
    if call.signature in _FILTERED.values():
        _refuse_filter_errors(call, outputs, instances)
    if call.signature in (*_SIMILAR_QUERY, _FILTERED[SIMILAR_ITEMS]):
        return _read_similar(call, outputs, instances, members)
    fallback = _column(outputs, "fallback", rows, call)
    if call.signature == "score":
        scores = _column(outputs, "score", rows, call)
        return [
            {"user_id": m.user_id, "item_id": m.item_id, "score": float(s), "fallback": bool(f)}
            for m, s, f in zip(members, scores, fallback, strict=True)
        ]
    ranked = _ranked_lists(call, outputs, instances, "item_id", "the catalog ({width} items)")
    predictions = [
        {"user_id": member.user_id, "items": items, "fallback": bool(flag)}
        for member, items, flag in zip(members, ranked, fallback, strict=True)
    ]
    if call.signature in (FROM_HISTORY, _FILTERED[FROM_HISTORY]):
        unknown = _column(outputs, "unknown_history", rows, call)
        for prediction, member, flags in zip(predictions, members, unknown, strict=True):
            prediction["ignored_history"] = [i for i, bad in zip(member.history, flags, strict=False) if bad]
    return predictions


def _refuse_filter_errors(call: Call, outputs: dict[str, Any], instances: list[Instance]) -> None:
    """The model's verdict on the filter and its values (one per call: every row carries the same one)."""
    errors = _column(outputs, "filter_error", len(call.indices), call)
    if errors[0]:
        field = "filter" if str(errors[0]).startswith("unknown filter") else "filter_values"
        raise InferenceError(f"{_where(call.indices[0], instances)}{errors[0]}", field)


def _where(index: int, instances: list[Instance]) -> str:
    return f"instances[{index}]: " if len(instances) > 1 else ""


def _read_similar(
    call: Call, outputs: dict[str, Any], instances: list[Instance], members: list[Similar]
) -> list[dict[str, Any]]:
    """`similar_*` outputs: refuse unknown query ids (no fallback), then each query's neighbours."""
    field = _SIMILAR_QUERY[members[0].signature]
    noun = field.removesuffix("_id")
    known = _column(outputs, "known", len(members), call)
    for index, member, flag in zip(call.indices, members, known, strict=True):
        if not flag:
            raise InferenceError(
                f"{_where(index, instances)}unknown {field} {member.query_id!r}: the model has no such "
                f"{noun}, so it has no similar {noun}s",
                field,
                404,
            )
    ranked = _ranked_lists(call, outputs, instances, field, f"the number of other {noun}s ({{width}})")
    return [
        {field: member.query_id, "similar": neighbours}
        for member, neighbours in zip(members, ranked, strict=True)
    ]


def _ranked_lists(
    call: Call, outputs: dict[str, Any], instances: list[Instance], key: str, capacity: str
) -> list[list[dict[str, Any]]]:
    """Each instance's ranked `{key: id, "score": s}` list from the `<key>s`/`scores` outputs, cut to its
    own k, "" tail ids dropped; a k beyond what the model can return is refused naming `capacity`."""
    rows = len(call.indices)
    members = [instances[i] for i in call.indices]
    ids = _column(outputs, f"{key}s", rows, call)
    scores = _column(outputs, "scores", rows, call)
    width = len(ids[0]) if isinstance(ids[0], list) else -1
    if any(not isinstance(r, list) or len(r) != width for r in (*ids, *scores)):
        raise _malformed(call.body, f"{key}s/scores rows are not lists of one width")
    for index, member in zip(call.indices, members, strict=True):
        if member.k > width:
            limit = capacity.format(width=width)
            raise InferenceError(f"{_where(index, instances)}k={member.k} is larger than {limit}", "k", 400)
    return [
        [
            {key: str(found), "score": float(score)}
            for found, score in zip(row[: member.k], values[: member.k], strict=True)
            if found != ""
        ]
        for member, row, values in zip(members, ids, scores, strict=True)
    ]


def serialise(prediction: dict[str, Any]) -> str:
    """One prediction as compact JSON (a JSON Lines line, or an element of `"predictions"`)."""
    return json.dumps(prediction, separators=(",", ":"))


def format_response(predictions: list[str], accept: str) -> str:
    """Serialised predictions as JSON (`{"predictions": [...]}`) or JSON Lines (one per line)."""
    if accept == JSONLINES:
        return "".join(p + "\n" for p in predictions)
    return '{"predictions":[' + ",".join(predictions) + "]}"


# ------------------------------------------------------------------------------------------- handler

SETTINGS = Settings.from_env(os.environ)


def predict(data: Any, context: Any, settings: Settings) -> tuple[str, str]:
    """Validate, call TF Serving once per chunk of each signature needed, and format the response.

    Each chunk's predictions are serialised as soon as they arrive, so a large batch holds one string per
    instance rather than nested dicts."""
    accept = response_type(context.accept_header)
    body = read_body(data, context.content_length, settings)
    instances = parse_request(body, context.request_content_type, settings)
    promoted = [i for i, m in enumerate(instances) if getattr(m, "promotion", None) is not None]
    described = [i for i, m in enumerate(instances) if getattr(m, "item_fields", ())]
    held = dict.fromkeys([*promoted, *described])  # completed (promotions, fields) before serialising
    predictions: list[str] = [""] * len(instances)
    for index, prediction in answers(instances, context.rest_uri, settings):
        if index in held:
            held[index] = prediction
        else:
            predictions[index] = serialise(prediction)
    for index, promotion in promoted_items(instances, promoted, context.rest_uri, settings):
        held[index] = merge_promoted(held[index], promotion, instances[index].k)
    if described:
        attach_item_fields({i: held[i] for i in described}, instances, context.rest_uri, settings)
    for index, prediction in held.items():
        predictions[index] = serialise(prediction)
    return format_response(predictions, accept), accept


def _listed(prediction: dict[str, Any]) -> list[dict[str, Any]]:
    """The ranked entries of a prediction: its `items`, or its `similar` items."""
    return prediction["items"] if "items" in prediction else prediction["similar"]


def attach_item_fields(
    predictions: dict[int, dict[str, Any]], instances: list[Instance], rest_uri: str, settings: Settings
) -> None:
    """Give each listed item of `predictions` a `"fields"` object with its instance's `item_fields`, read
    from the model's `item_fields` signature (one call per chunk of distinct ids)."""
    fields = list(dict.fromkeys(f for i in predictions for f in instances[i].item_fields))
    ids = list(dict.fromkeys(e["item_id"] for p in predictions.values() for e in _listed(p)))
    values: dict[str, list[str]] = {}
    for start in range(0, len(ids), settings.tfs_chunk_size):
        chunk = ids[start : start + settings.tfs_chunk_size]
        body = {"signature_name": "item_fields", "inputs": {"item_id": chunk, "field": fields}}
        outputs = call_tfs(rest_uri, body, settings)
        _refuse_unknown_fields(fields, outputs)
        values.update(zip(chunk, outputs["values"], strict=True))
    for index, prediction in predictions.items():
        wanted = instances[index].item_fields
        for entry in _listed(prediction):
            row = dict(zip(fields, values.get(entry["item_id"], [""] * len(fields)), strict=True))
            entry["fields"] = {name: row[name] for name in wanted}


def _refuse_unknown_fields(fields: list[str], outputs: dict[str, Any]) -> None:
    known = outputs.get("known_field")
    if not isinstance(known, list) or not isinstance(outputs.get("values"), list):
        raise _malformed({"signature_name": "item_fields"}, "no known_field/values outputs")
    unknown = [name for name, flag in zip(fields, known, strict=True) if not flag]
    if unknown:
        listed = ", ".join(outputs.get("field_names") or []) or "none"
        raise InferenceError(f"unknown item field {unknown[0]!r} (this model's: {listed})", "item_fields")


def answers(instances: list[Instance], rest_uri: str, settings: Settings) -> Any:
    """(index, prediction) of every instance, one TF Serving call per chunk of each signature needed."""
    for call in plan_calls(instances, settings.tfs_chunk_size):
        outputs = call_tfs(rest_uri, call.body, settings)
        yield from zip(call.indices, read_outputs(call, outputs, instances), strict=True)


def promoted_items(instances: list[Instance], promoted: list[int], rest_uri: str, settings: Settings) -> Any:
    """(index, promoted prediction) of each promoting instance: the best items that pass its promotion's
    filter, as many as its promoted slots, with the instance's own exclusions (or its history)."""
    requests = [instances[i] for i in promoted]
    asked = [
        replace(m, k=m.promotion.slots(m.k), filter=m.promotion.filter, promotion=None, item_fields=())
        for m in requests
    ]
    try:
        for position, prediction in answers(asked, rest_uri, settings):
            yield promoted[position], prediction
    except InferenceError as err:
        if err.status >= 500:
            raise
        raise InferenceError(f"promotion: {err.message}", "promotion", err.status) from None


def merge_promoted(answer: dict[str, Any], promotion: dict[str, Any], k: int) -> dict[str, Any]:
    """`answer` with its promoted items (marked `"promoted": true`) in their slots: the rest of its own
    list fills the other slots, without the promoted items, and the whole list is in score order."""
    chosen = [{**entry, "promoted": True} for entry in promotion["items"]]
    ids = {entry["item_id"] for entry in chosen}
    rest = [entry for entry in answer["items"] if entry["item_id"] not in ids][: k - len(chosen)]
    return {**answer, "items": sorted(chosen + rest, key=lambda entry: -entry["score"])}


def handler(data: Any, context: Any) -> tuple[str, str]:
    """The container's entry point: `(body, content_type)`, or raise `InferenceError` (see module doc)."""
    try:
        return predict(data, context, SETTINGS)
    except InferenceError as err:
        _log_refusal(err)
        raise
    except Exception as err:
        LOG.exception("bug in the inference handler")
        failure = InferenceError("internal error in the inference handler", None, 500)
        _log_refusal(failure)
        raise failure from err


def _log_refusal(err: InferenceError) -> None:
    event = "client_error" if err.status < 500 else "server_error"
    line = json.dumps({"event": event, **err.as_dict()})
    EVENTS.log(logging.WARNING if event == "client_error" else logging.ERROR, line)


class _BareStderrLines(logging.StreamHandler):
    """Writes each record's message alone on a line to the current `sys.stderr` (looked up at each write,
    like `logging.lastResort`), with no prefix: the line is exactly the JSON the handler logged."""

    is_ncf_events = True

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:
        return sys.stderr


def _install_event_lines() -> None:
    """Give `EVENTS` its own bare-line handler, once per process (the module may be imported again), and
    keep its records away from the container's prefixing root handler."""
    if not any(getattr(handler, "is_ncf_events", False) for handler in EVENTS.handlers):
        EVENTS.addHandler(_BareStderrLines())
    EVENTS.setLevel(logging.WARNING)
    EVENTS.propagate = False


_install_event_lines()
