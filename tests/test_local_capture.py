"""Data capture by the local endpoint (`python -m deploy.local --capture-dir DIR --variant NAME`), read
back by `deploy ab-report`.

Two local endpoints with different variant names and one capture folder stand for an endpoint with two
variants. Users of variant B then interact with the first item B recommended them; users of A with an
item A did not recommend: ab-report must find B ahead, from the files the endpoint wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from serving_fixtures import runtime_client

from deploy import capture
from deploy.cli import main
from deploy.local.capture_writer import CaptureWriter
from deploy.local.httpserver import Request, Response
from deploy.local.process import EndpointProcess, local_endpoint_process
from deploy.local.runtime_api import RuntimeApi

AT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def recommending(items: list[str]):
    """A fake container answering every user with `items`."""

    def container(request: Request) -> Response:
        user = json.loads(request.body)["user_id"]
        answer = {"user_id": user, "items": [{"item_id": i, "score": 1.0} for i in items], "fallback": False}
        return Response(200, json.dumps({"predictions": [answer]}).encode(), content_type="application/json")

    return container


def invoke(api: RuntimeApi, user: str, endpoint: str = "shop") -> Response:
    body = json.dumps({"user_id": user, "k": 3}).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    return api(Request("POST", f"/endpoints/{endpoint}/invocations", headers, body))


def followed_interactions(path: Path, users: dict[str, str], at: datetime) -> Path:
    """Each user interacts with `users[user]` an hour after `at`."""
    later = int(at.timestamp()) + 3600
    rows = "".join(f"{user},{item},{later}\n" for user, item in users.items())
    path.write_text("user_id,item_id,timestamp\n" + rows)
    return path


def ab_report(capsys: pytest.CaptureFixture[str], folder: Path, interactions: Path) -> dict:
    status = main(["ab-report", "--capture", str(folder), "--interactions", str(interactions), "--json"])
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(out)


def test_the_runtime_api_writes_sagemaker_capture_records(tmp_path: Path) -> None:
    api = RuntimeApi(
        recommending(["7", "8"]),
        region="us-east-1",
        variant="B",
        capture=CaptureWriter(tmp_path, "B", lambda: AT),
    )
    answer = invoke(api, "u1")
    assert answer.headers["x-Amzn-Invoked-Production-Variant"] == "B"
    (written,) = tmp_path.rglob("*.jsonl")
    assert written.relative_to(tmp_path).parts[:6] == ("shop", "B", "2026", "03", "01", "12")
    record = json.loads(written.read_text())
    assert record["captureData"]["endpointInput"] == {
        "observedContentType": "application/json",
        "mode": "INPUT",
        "data": '{"user_id": "u1", "k": 3}',
        "encoding": "JSON",
    }
    assert record["eventMetadata"]["inferenceTime"] == "2026-03-01T12:30:00Z"
    served = capture.parse_record(written.read_text(), capture.variant_of(written.as_posix()), "x")
    assert [(s.variant, s.user_id, s.items) for s in served] == [("B", "u1", ("7", "8"))]


def test_refused_requests_are_not_captured(tmp_path: Path) -> None:
    def refusing(_: Request) -> Response:
        return Response(500, b'{"error": "no"}', content_type="application/json")

    api = RuntimeApi(refusing, region="us-east-1", capture=CaptureWriter(tmp_path, "AllTraffic"))
    assert invoke(api, "u1").status == 424
    assert not list(tmp_path.rglob("*.jsonl"))


def test_ab_report_on_two_local_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "capture"
    apis = {
        name: RuntimeApi(
            recommending(items), region="us-east-1", capture=CaptureWriter(folder, name, lambda: AT)
        )
        for name, items in (("A", ["1", "2", "3"]), ("B", ["4", "5", "6"]))
    }
    users = {}
    for n in range(40):
        variant = "AB"[n % 2]
        invoke(apis[variant], f"u{n}")
        users[f"u{n}"] = "4"  # everyone goes on to item 4, which only B recommended
    report = ab_report(capsys, folder, followed_interactions(tmp_path / "i.csv", users, AT))
    hit = {v["variant"]: v["metrics"]["hit_rate"]["value"] for v in report["variants"]}
    assert hit == {"A": 0.0, "B": 1.0}
    assert {"metric": "hit_rate", "leader": "B", "overlap": False} in report["comparisons"]


@pytest.fixture(scope="module")
def two_variants(
    trained_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, EndpointProcess]]]:
    """The session's trained model served twice, as variants A and B, capturing into one folder."""
    folder = tmp_path_factory.mktemp("capture")
    with ExitStack() as stack:
        running = {
            name: stack.enter_context(
                local_endpoint_process(
                    trained_model.parent / "model.tar.gz",
                    tmp_path_factory.mktemp("tls"),
                    "--capture-dir",
                    str(folder),
                    "--variant",
                    name,
                )
            )
            for name in ("A", "B")
        }
        yield folder, running


@pytest.mark.slow
def test_ab_report_on_files_the_local_endpoint_wrote(
    two_variants: tuple[Path, dict[str, EndpointProcess]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, running = two_variants
    start = datetime.now(UTC).replace(microsecond=0)
    users = {}
    for n in range(12):
        variant = "AB"[n % 2]
        client = runtime_client(running[variant].url, running[variant].cert)
        answer = client.invoke_endpoint(
            EndpointName="ncf-local",
            Body=json.dumps({"user_id": f"u{n}", "k": 5}),
            ContentType="application/json",
        )
        assert answer["InvokedProductionVariant"] == variant
        items = [i["item_id"] for i in json.loads(answer["Body"].read())["predictions"][0]["items"]]
        users[f"u{n}"] = items[0] if variant == "B" else "not-recommended"
    report = ab_report(capsys, folder, followed_interactions(tmp_path / "i.csv", users, start))
    variants = {v["variant"]: v for v in report["variants"]}
    assert {name: v["requests"] for name, v in variants.items()} == {"A": 6, "B": 6}
    assert variants["B"]["metrics"]["hit_rate"]["value"] == 1.0
    assert variants["A"]["metrics"]["hit_rate"]["value"] == 0.0
    assert {"metric": "hit_rate", "leader": "B", "overlap": False} in report["comparisons"]
