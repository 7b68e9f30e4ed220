"""deploy/invoke.py's `--similar-to` / `--similar-users-to`: request bodies, usage errors and the table."""

from __future__ import annotations

import argparse
import json

import pytest

from deploy import invoke


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    invoke.add_arguments(parser)
    return parser.parse_args(argv)


def request_for(*argv: str) -> tuple[bytes, str, str]:
    args = parse(*argv)
    signature, queries = invoke.choose_queries(args)
    options = (args.k, args.exclude, args.include_seen, args.content_type)
    return invoke.build_request(queries, *options, signature)


def test_similar_to_builds_similar_items_requests_in_every_format() -> None:
    body, content_type, _ = request_for("--similar-to", "50", "--k", "3")
    assert content_type == "application/json"
    assert json.loads(body) == {"item_id": "50", "k": 3, "signature": "similar_items"}
    body, _, _ = request_for("--similar-to", "50", "--similar-to", "1", "--content-type", "jsonlines")
    assert [json.loads(line) for line in body.decode().splitlines()] == [
        {"item_id": "50", "k": 10, "signature": "similar_items"},
        {"item_id": "1", "k": 10, "signature": "similar_items"},
    ]
    body, content_type, _ = request_for("--similar-users-to", "a,b", "--k", "2", "--content-type", "csv")
    assert (body, content_type) == (b'"a,b",2,similar_users\n', "text/csv")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--user", "1", "--similar-to", "50"], "--user/--users-file and --similar-to cannot be combined"),
        (["--similar-to", "5", "--similar-users-to", "1"], "--similar-to and --similar-users-to cannot"),
        (["--similar-to", "50", "--exclude", "7"], "apply to recommendations, not to similarity"),
        (["--similar-users-to", "1", "--include-seen"], "apply to recommendations, not to similarity"),
    ],
)
def test_similarity_usage_errors_exit_2(capsys, argv, message) -> None:
    assert invoke.run(parse(*argv), default_endpoint_name="e", region=None) == 2
    assert message in capsys.readouterr().err


def test_table_of_neighbours() -> None:
    predictions = [
        {"item_id": "50", "similar": [{"item_id": "172", "score": 0.81}, {"item_id": "181", "score": 0.8}]},
        {"item_id": "9", "similar": []},
    ]
    assert [line.split() for line in invoke.render_table(predictions).splitlines()] == [
        ["item_id", "rank", "similar", "item_id", "score"],
        ["50", "1", "172", "0.8100"],
        ["50", "2", "181", "0.8000"],
        ["9", "-", "(none)"],
    ]
