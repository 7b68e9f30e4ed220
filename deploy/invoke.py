"""`invoke`: ask a SageMaker endpoint (or the local one) for users' top-k items, or similar items/users.

`--user U` asks for U's recommendations, `--similar-to ITEM` for the items most similar to ITEM
(`similar_items`), `--similar-users-to U` for the users most similar to U (`similar_users`); each can be
repeated, and one call asks one kind of question. `--history ITEM` (repeated, oldest first) sends the
user's latest events with a recommendation request (`history`: a sequence model reads them at request
time, the NCF types fold them into the user's vector).

The CLI adds these options with `add_arguments` and calls `run`. With `--endpoint-url` (e.g. the local
endpoint, `https://127.0.0.1:8443`) the runtime client talks to that URL; for a loopback URL the local
endpoint's certificate is trusted automatically when `--ca-bundle` is not given, and dummy credentials
are used (the local endpoint does not check signatures).

Errors come back from the endpoint as botocore's `ModelError` (HTTP 424): its `OriginalMessage` is the
container's body `{"error": "<handler message>"}`, and the handler's message is itself JSON
`{"error", "field", "status"}` (see inference/inference.py). `run` unwraps both and prints one line
`error: the endpoint refused the request: <message> (field: <field>)`, returning 1. Problems with the
command line itself return 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    SSLError,
)

from deploy.local.tls import default_cert_path

CONTENT_TYPES = {"json": "application/json", "jsonlines": "application/jsonlines", "csv": "text/csv"}
RECOMMEND = "recommend"
SIMILAR_ITEMS = "similar_items"
SIMILAR_USERS = "similar_users"
# The request field of each signature's query id (as inference.py expects it).
QUERY_FIELDS = {RECOMMEND: "user_id", SIMILAR_ITEMS: "item_id", SIMILAR_USERS: "user_id"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class UsageError(Exception):
    """A problem with the command line (exit status 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `invoke` options: who to recommend for (or what to find neighbours of), how to ask, where."""
    parser.add_argument("--user", action="append", default=[], help="user id (repeat for several users)")
    parser.add_argument("--users-file", type=Path, help="text file with one user id per line")
    parser.add_argument(
        "--similar-to",
        action="append",
        default=[],
        metavar="ITEM",
        help="instead of recommendations: the items most similar to ITEM (repeat for several)",
    )
    parser.add_argument(
        "--similar-users-to",
        action="append",
        default=[],
        metavar="USER",
        help="instead of recommendations: the users most similar to USER (repeat for several)",
    )
    parser.add_argument(
        "--k", type=int, default=10, help="items (or similar items/users) per query (default 10)"
    )
    parser.add_argument(
        "--exclude", action="append", default=[], help="item id never to recommend (repeat for several)"
    )
    parser.add_argument(
        "--include-seen", action="store_true", help="allow items the user interacted with in training"
    )
    parser.add_argument(
        "--history",
        action="append",
        default=[],
        metavar="ITEM",
        help="an item the user just interacted with, oldest first (repeat for several): sent as the"
        " request's history (real-time events: read by sasrec, folded into the user by NCF types)",
    )
    _add_filter_arguments(parser)
    parser.add_argument(
        "--content-type",
        choices=tuple(CONTENT_TYPES),
        default="json",
        help="request format: one JSON document, JSON Lines, or CSV id,k[,signature] (default json)",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output (default table)")
    parser.add_argument(
        "--endpoint-url", help="runtime API URL, e.g. https://127.0.0.1:8443 for the local endpoint"
    )
    parser.add_argument("--ca-bundle", type=Path, help="certificate to trust for --endpoint-url")
    parser.add_argument("--endpoint-name", help="endpoint to invoke (default: the configured one)")


def _add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """`--filter`, `--filter-value`, `--promote` and `--item-field`."""
    parser.add_argument(
        "--filter",
        metavar="NAME",
        help="only items that pass this filter of the model (declared at training: README, Filters and"
        " promotions); for recommendations and --similar-to",
    )
    parser.add_argument(
        "--filter-value",
        action="append",
        default=[],
        metavar="PARAM=V1,V2",
        help="a value (or comma-separated values) of the filter's $PARAM, e.g. GENRES=Comedy,Drama"
        " (repeat for each parameter)",
    )
    parser.add_argument(
        "--promote",
        metavar="FILTER:SHARE",
        help="give SHARE (0 < SHARE <= 1) of the k slots to the best items that pass FILTER (a filter without"
        " parameters), marked promoted, e.g. on_sale:0.2",
    )
    parser.add_argument(
        "--item-field",
        action="append",
        default=[],
        metavar="COLUMN",
        help="return this item column (stored from the items channel) with each item, e.g. title (repeat)",
    )


def read_users(users: list[str], users_file: Path | None) -> list[str]:
    """`--user` values then the non-blank lines of `--users-file`; at least one is required."""
    found = list(users)
    if users_file is not None:
        try:
            found += [
                line.strip() for line in users_file.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
        except OSError as err:
            raise UsageError(f"cannot read --users-file {users_file}: {err.strerror}") from None
    if not found:
        raise UsageError("give a user id with --user (or a file of ids with --users-file)")
    return found


def choose_queries(args: argparse.Namespace) -> tuple[str, list[str]]:
    """`(signature, query ids)` from `--user`/`--users-file`, `--similar-to` or `--similar-users-to`."""
    kinds = [
        name
        for name, given in (
            ("--user/--users-file", args.user or args.users_file),
            ("--similar-to", args.similar_to),
            ("--similar-users-to", args.similar_users_to),
        )
        if given
    ]
    if len(kinds) > 1:
        raise UsageError(f"{kinds[0]} and {kinds[1]} cannot be combined: one kind of query per call")
    if args.history and (args.exclude or args.include_seen):
        raise UsageError("--history cannot be combined with --exclude or --include-seen")
    if args.similar_to or args.similar_users_to:
        if args.exclude or args.include_seen or args.history:
            raise UsageError(
                "--exclude, --include-seen and --history apply to recommendations, not to similarity"
            )
        return (SIMILAR_ITEMS, args.similar_to) if args.similar_to else (SIMILAR_USERS, args.similar_users_to)
    return RECOMMEND, read_users(args.user, args.users_file)


def filter_fields(name: str | None, values: list[str], signature: str) -> dict[str, Any]:
    """The request fields of `--filter NAME --filter-value PARAM=V1,V2 ...` ({} without a filter)."""
    if name is None:
        if values:
            raise UsageError("--filter-value needs --filter naming the filter")
        return {}
    if signature == SIMILAR_USERS:
        raise UsageError("--filter applies to recommendations and --similar-to, not to --similar-users-to")
    parsed: dict[str, list[str]] = {}
    for entry in values:
        param, sep, listed = entry.partition("=")
        items = [v.strip() for v in listed.split(",") if v.strip()]
        if not sep or not param.strip() or not items:
            raise UsageError(f"--filter-value {entry!r}: expected PARAM=VALUE or PARAM=V1,V2")
        if param.strip() in parsed:
            raise UsageError(
                f"--filter-value: {param.strip()} is given twice (list its values once, comma-separated)"
            )
        parsed[param.strip()] = items
    return {"filter": name, "filter_values": parsed} if parsed else {"filter": name}


def build_request(
    users: list[str],
    k: int,
    exclude: list[str],
    include_seen: bool,
    content_type: str,
    signature: str = RECOMMEND,
    history: list[str] | None = None,
    filtered: dict[str, Any] | None = None,
) -> tuple[bytes, str, str]:
    """`(body, Content-Type, Accept)` for the handler's request formats; `users` are the query ids,
    `history` every user's latest events (None or empty: none sent), `filtered` the fields of a filter
    (`filter_fields`) added to every request."""
    if content_type == "csv":
        if exclude or include_seen or history or filtered:
            raise UsageError(
                "--exclude, --include-seen, --history and --filter need --content-type json or jsonlines"
                " (CSV is user_id,k)"
            )
        suffix = "" if signature == RECOMMEND else f",{signature}"
        body = "".join(f"{_csv_field(user)},{k}{suffix}\n" for user in users)
        return body.encode(), CONTENT_TYPES["csv"], CONTENT_TYPES["json"]
    requests = []
    for user in users:
        request: dict[str, Any] = {QUERY_FIELDS[signature]: user, "k": k}
        if signature != RECOMMEND:
            request["signature"] = signature
        if exclude:
            request["exclude"] = exclude
        if include_seen:
            request["exclude_seen"] = False
        if history:
            request["history"] = history
        requests.append({**request, **(filtered or {})})
    if content_type == "jsonlines":
        body = "".join(json.dumps(r) + "\n" for r in requests)
        return body.encode(), CONTENT_TYPES["jsonlines"], CONTENT_TYPES["jsonlines"]
    document = requests[0] if len(requests) == 1 else {"instances": requests}
    return json.dumps(document).encode(), CONTENT_TYPES["json"], CONTENT_TYPES["json"]


def _csv_field(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def parse_predictions(body: bytes, accept: str) -> list[dict[str, Any]]:
    """The predictions of a JSON (`{"predictions": [...]}`) or JSON Lines response."""
    text = body.decode("utf-8")
    if accept == CONTENT_TYPES["jsonlines"]:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)["predictions"]


def render_table(predictions: list[dict[str, Any]]) -> str:
    """One row per recommended item: user, rank, item, score, and whether it is a popularity fallback;
    for similarity answers one row per neighbour: query, rank, neighbour, score."""
    if predictions and "similar" in predictions[0]:
        return _render_similar(predictions)
    rows = [("user_id", "rank", "item_id", "score", "fallback")]
    for prediction in predictions:
        fallback = "yes" if prediction.get("fallback") else "no"
        items = prediction.get("items", [])
        if not items:
            rows.append((prediction["user_id"], "-", "(no items)", "", fallback))
        for rank, item in enumerate(items, start=1):
            rows.append(
                (prediction["user_id"], str(rank), _label(item, "item_id"), f"{item['score']:.4f}", fallback)
            )
    ignored = [
        f"{p['user_id']}: {', '.join(p['ignored_history'])}" for p in predictions if p.get("ignored_history")
    ]
    notes = "".join(f"\nignored history items the model does not know ({line})" for line in ignored)
    return _aligned(rows) + notes


def _render_similar(predictions: list[dict[str, Any]]) -> str:
    field = "item_id" if "item_id" in predictions[0] else "user_id"
    rows = [(field, "rank", f"similar {field}", "score")]
    for prediction in predictions:
        if not prediction["similar"]:
            rows.append((prediction[field], "-", "(none)", ""))
        for rank, neighbour in enumerate(prediction["similar"], start=1):
            rows.append((prediction[field], str(rank), _label(neighbour, field), f"{neighbour['score']:.4f}"))
    return _aligned(rows)


def _label(entry: dict[str, Any], field: str) -> str:
    """A listed id, marked when promoted, followed by its item fields when the answer has them."""
    label = entry[field] + (" (promoted)" if entry.get("promoted") else "")
    fields = entry.get("fields") or {}
    return label + "".join(f"  {name}={value}" for name, value in fields.items())


def _aligned(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def describe_model_error(response: dict[str, Any]) -> str:
    """A one-line explanation of a `ModelError`, unwrapping the container's and the handler's JSON."""
    original = response.get("OriginalMessage")
    status = response.get("OriginalStatusCode")
    message = original if original is not None else response.get("Error", {}).get("Message", "")
    detail: Any = None
    try:
        message = json.loads(message)["error"]
        detail = json.loads(message)
    except (ValueError, TypeError, KeyError):
        pass
    if isinstance(detail, dict) and "error" in detail:
        kind = "refused the request" if int(detail.get("status") or 500) < 500 else "failed"
        field = f" (field: {detail['field']})" if detail.get("field") else ""
        return f"the endpoint {kind}: {detail['error']}{field}"
    return f"the model failed (HTTP {status}): {message}"


def _verify(args: argparse.Namespace) -> str | bool:
    if args.ca_bundle is not None:
        if not args.ca_bundle.is_file():
            raise UsageError(f"--ca-bundle {args.ca_bundle} does not exist")
        return str(args.ca_bundle)
    if (
        args.endpoint_url
        and urlsplit(args.endpoint_url).hostname in _LOOPBACK
        and default_cert_path().is_file()
    ):
        return str(default_cert_path())
    return True


def make_client(
    endpoint_url: str | None,
    verify: str | bool,
    region: str | None,
    *,
    max_attempts: int | None = None,
    max_pool_connections: int = 10,
) -> Any:
    """A `sagemaker-runtime` client. A loopback URL (the local endpoint, which checks no signature) gets
    dummy credentials, so no credential lookup (which may probe EC2 metadata) delays it.

    `max_attempts=1` turns botocore's retries off, for tests and benchmarks that must see every error.
    """
    session = boto3.Session(region_name=region)
    retries = {"retries": {"max_attempts": max_attempts}} if max_attempts else {}
    options: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "verify": verify,
        "config": Config(
            connect_timeout=10, read_timeout=70, max_pool_connections=max_pool_connections, **retries
        ),
    }
    if endpoint_url:
        options["region_name"] = session.region_name or "us-east-1"
    if endpoint_url and urlsplit(endpoint_url).hostname in _LOOPBACK:
        options.update(aws_access_key_id="local", aws_secret_access_key="local")
    return session.client("sagemaker-runtime", **options)


def promotion_fields(promote: str | None, signature: str) -> dict[str, Any]:
    """The request field of `--promote FILTER:SHARE` ({} without it); the endpoint checks the share."""
    if promote is None:
        return {}
    name, sep, share = promote.rpartition(":")
    try:
        value = float(share)
    except ValueError:
        value = None
    if not sep or not name or value is None:
        raise UsageError(f"--promote {promote!r}: expected FILTER:SHARE, e.g. on_sale:0.2")
    if signature != RECOMMEND:
        raise UsageError("--promote applies to recommendations, not to similarity")
    return {"promotion": {"filter": name, "share": value}}


def request_of(args: argparse.Namespace) -> tuple[bytes, str, str]:
    """`build_request`'s answer for the command line's queries, options, filter and promotion."""
    signature, queries = choose_queries(args)
    if args.item_field and signature == SIMILAR_USERS:
        raise UsageError(
            "--item-field applies to recommendations and --similar-to, not to --similar-users-to"
        )
    filtered = {
        **filter_fields(args.filter, args.filter_value, signature),
        **promotion_fields(args.promote, signature),
        **({"item_fields": args.item_field} if args.item_field else {}),
    }
    return build_request(
        queries, args.k, args.exclude, args.include_seen, args.content_type, signature, args.history, filtered
    )


def run(
    args: argparse.Namespace, *, default_endpoint_name: str, region: str | None, client: Any = None
) -> int:
    """Invoke the endpoint and print the answers; 0 on success, 1 endpoint error, 2 usage error.

    `client` replaces the boto3 runtime client (e.g. the SDK's local one for `invoke --local`)."""
    try:
        body, content_type, accept = request_of(args)
        verify = _verify(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = args.endpoint_name or default_endpoint_name
    where = args.endpoint_url or ("the local endpoint" if client is not None else "SageMaker")
    try:
        client = client or make_client(args.endpoint_url, verify, region)
        answer = client.invoke_endpoint(EndpointName=name, Body=body, ContentType=content_type, Accept=accept)
        predictions = parse_predictions(answer["Body"].read(), accept)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        message = (
            describe_model_error(err.response) if code == "ModelError" else err.response["Error"]["Message"]
        )
        print(f"error: endpoint {name}: {message}", file=sys.stderr)
        return 1
    except SSLError:
        print(
            f"error: {where}: TLS certificate not trusted; pass --ca-bundle <certificate path>",
            file=sys.stderr,
        )
        return 1
    except EndpointConnectionError:
        print(f"error: cannot reach {where}: is the endpoint running?", file=sys.stderr)
        return 1
    except NoCredentialsError:
        print("error: no AWS credentials found (configure a profile or AWS_* variables)", file=sys.stderr)
        return 1
    except NoRegionError:
        print("error: no AWS region configured (set AWS_REGION or the project's region)", file=sys.stderr)
        return 1
    except BotoCoreError as err:
        print(f"error: {where}: {err}", file=sys.stderr)
        return 1
    except (ValueError, KeyError):
        print(
            f"error: endpoint {name} answered something that is not a recommendation response",
            file=sys.stderr,
        )
        return 1
    if args.format == "json":
        print(json.dumps({"predictions": predictions}, indent=2))
    else:
        print(render_table(predictions))
    return 0
