"""Batch Transform's requests through the local endpoint: a 100,000-line users file in 6 MB bodies.

`deploy batch` runs the transform with `SplitType=Line`, `BatchStrategy=MultiRecord` and
`MaxPayloadInMB=6`, so the container's `POST /invocations` receives as many whole JSON Lines as fit in
6 MB (tens of thousands of users). `batch_transform.multi_record_payloads` cuts the file the way the
documented rule says (its own tests are here too); each body goes to the local endpoint's container route
over HTTPS, as Batch Transform sends it, and every line must come back answered, in order, for its user.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from batch_transform import JSONLINES, MB, RecordTooLarge, multi_record_payloads, post_to_container
from serving_fixtures import trained_model_endpoint

from deploy.local.process import EndpointProcess

KNOWN_USERS = 60  # users in conftest's make_interactions()

# ------------------------------------------------------------------------------ the packer itself


def test_packs_as_many_whole_lines_as_fit_in_the_payload():
    lines = [b'{"user_id": "%06d"}' % i + b" " * 80 + b"\n" for i in range(30_000)]
    data, record = b"".join(lines), len(lines[0])
    payloads = list(multi_record_payloads(data, 1))
    per_payload = MB // record
    assert [len(p) for p in payloads] == [per_payload * record] * 2 + [(30_000 - 2 * per_payload) * record]
    assert b"".join(payloads) == data
    assert all(p.endswith(b"\n") and len(p) <= MB < len(p) + record for p in payloads[:-1])


def test_lines_of_mixed_sizes_fill_each_payload_greedily_and_keep_a_last_line_without_newline():
    sizes = [700_000, 300_000, 48_576 - 1, 2, 500_000, 10]
    lines = [b"x" * (size - 1) + b"\n" for size in sizes[:-1]] + [b"y" * sizes[-1]]
    payloads = list(multi_record_payloads(b"".join(lines), 1))
    # 700,000 + 300,000 + 48,575 = 1,048,575 bytes: one byte under 1 MB, so the 2-byte line waits.
    assert payloads == [b"".join(lines[:3]), b"".join(lines[3:])]


def test_a_record_larger_than_the_payload_limit_fails_like_the_job():
    with pytest.raises(RecordTooLarge, match="MaxPayloadInMB=1"):
        list(multi_record_payloads(b"short\n" + b"z" * (MB + 1) + b"\n", 1))
    assert list(multi_record_payloads(b"", 6)) == []


# ------------------------------------------------------------------ through the local endpoint


def users_file(lines: int) -> tuple[bytes, list[dict]]:
    """A JSON Lines users file mixing known users and unknown ones (UUID-like ids), several k, exclusion
    lists and exclude_seen: four TF Serving signatures, lines of ~96 bytes (9.6 MB for 100,000 users)."""
    requests_: list[dict] = []
    for i in range(lines):
        user = f"u{i % KNOWN_USERS}" if i % 3 else f"new-user-{i:08d}-{i * 7919 % 10**12:012d}"
        request: dict = {"user_id": user, "k": 1 + i % 7}
        if i % 5:
            request["exclude"] = [f"item-{(i + j) % 40}" for j in range(i % 5 + 3)]
        if i % 11 == 0:
            request["exclude_seen"] = False
        requests_.append(request)
    return b"".join(json.dumps(r).encode() + b"\n" for r in requests_), requests_


@pytest.fixture(scope="module")
def endpoint(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EndpointProcess]:
    with trained_model_endpoint(trained_model, tmp_path_factory) as running:
        yield running


@pytest.mark.slow
def test_a_100k_line_file_in_6mb_multirecord_bodies_is_answered_line_by_line(endpoint):
    data, sent = users_file(100_000)
    payloads = list(multi_record_payloads(data, 6))
    assert len(payloads) >= 2 and all(len(p) > 5 * MB for p in payloads[:-1])
    answered: list[dict] = []
    with requests.Session() as session:
        for body in payloads:
            reply = post_to_container(session, endpoint.url, endpoint.cert, body, timeout=300)
            assert reply.status_code == 200, reply.text[:500]
            assert reply.headers["Content-Type"] == JSONLINES
            lines = reply.text.splitlines()
            assert len(lines) == body.count(b"\n"), "one output line per input line"
            answered.extend(json.loads(line) for line in lines)
    assert [a["user_id"] for a in answered] == [s["user_id"] for s in sent]
    for request, answer in zip(sent, answered, strict=True):
        items = [item["item_id"] for item in answer["items"]]
        assert 0 < len(items) <= request["k"]
        assert not set(items) & set(request.get("exclude", []))
        assert answer["fallback"] is request["user_id"].startswith("new-user-")
