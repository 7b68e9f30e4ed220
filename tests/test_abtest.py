"""ab-report: capture records, the join with later interactions, the metrics and their intervals, the CLI.

The bar (issue #21): on a synthetic capture where variant B's lists are followed by the users' next
interactions twice as often as A's, the report puts B ahead with intervals that do not overlap.
"""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ncf.errors import NcfError

from deploy import abtest, capture
from deploy.abtest import Outcome
from deploy.capture import Served
from deploy.cli import main

START = datetime(2026, 3, 1, 12, tzinfo=UTC)
CATALOG = [f"i{n}" for n in range(200)]


def answer_body(user: str, items: list[str]) -> bytes:
    scored = [{"item_id": item, "score": 1.0 / (rank + 1)} for rank, item in enumerate(items)]
    return json.dumps({"predictions": [{"user_id": user, "items": scored, "fallback": False}]}).encode()


def write_capture(folder: Path, variant: str, requests: list[tuple[str, list[str], datetime]]) -> None:
    """SageMaker's layout and records: one file per variant and hour."""
    by_file: dict[Path, list[str]] = {}
    for user, items, time in requests:
        body = json.dumps({"user_id": user, "k": len(items)}).encode()
        line = capture.record(body, "application/json", answer_body(user, items), "application/json", time)
        path = folder / capture.relative_path("shop-endpoint", variant, time, "capture.jsonl")
        by_file.setdefault(path, []).append(json.dumps(line))
    for path, lines in by_file.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")


def synthetic_ab(
    tmp_path: Path, rates: dict[str, float], users: int = 600, seed: int = 7
) -> tuple[Path, Path]:
    """Each user asks once per day for 2 days on a random variant; with that variant's rate, the user's
    next interaction (an hour later) is one of the 10 items it was shown, else an item it was not."""
    rng = random.Random(seed)
    rows, requests = [], {name: [] for name in rates}
    for u in range(users):
        user = f"u{u}"
        for day in range(2):
            variant = rng.choice(sorted(rates))
            at = START + timedelta(days=3 * day, minutes=rng.randrange(600))
            shown = rng.sample(CATALOG, 10)
            requests[variant].append((user, shown, at))
            unseen = [item for item in CATALOG if item not in shown]
            chosen = rng.choice(shown) if rng.random() < rates[variant] else rng.choice(unseen)
            rows.append((user, chosen, int((at + timedelta(hours=1)).timestamp())))
    folder = tmp_path / "capture"
    for variant, served in requests.items():
        write_capture(folder, variant, served)
    interactions = tmp_path / "interactions.csv"
    interactions.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    return folder, interactions


def ab_report(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    status = main(["ab-report", "--json", *argv])
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(out)


def by_metric(report: dict) -> dict[str, dict]:
    return {c["metric"]: c for c in report["comparisons"]}


def test_b_followed_twice_as_often_leads_with_intervals_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, interactions = synthetic_ab(tmp_path, {"A": 0.2, "B": 0.4})
    report = ab_report(capsys, "--capture", str(folder), "--interactions", str(interactions))
    variants = {v["variant"]: v for v in report["variants"]}
    assert variants["A"]["requests"] + variants["B"]["requests"] == 1200
    hit_a, hit_b = (variants[n]["metrics"]["hit_rate"] for n in "AB")
    assert hit_a["value"] == pytest.approx(0.2, abs=0.04) and hit_b["value"] == pytest.approx(0.4, abs=0.04)
    assert hit_a["low"] < hit_a["value"] < hit_a["high"] < hit_b["low"] < hit_b["value"] < hit_b["high"]
    for metric in ("hit_rate", "ndcg"):
        assert by_metric(report)[metric] == {"metric": metric, "leader": "B", "overlap": False}


def test_variants_followed_equally_often_overlap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, interactions = synthetic_ab(tmp_path, {"A": 0.3, "B": 0.3})
    report = ab_report(capsys, "--capture", str(folder), "--interactions", str(interactions))
    assert by_metric(report)["hit_rate"]["overlap"] is True


def test_text_report_names_the_leader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, interactions = synthetic_ab(tmp_path, {"A": 0.1, "B": 0.5}, users=200)
    status = main(["ab-report", "--capture", str(folder), "--interactions", str(interactions), "--k", "5"])
    out = capsys.readouterr().out
    assert status == 0
    assert "hit_rate@5: B leads (intervals do not overlap)" in out
    assert out.startswith("variant A: ")


def test_later_items_take_only_the_window_after_the_request() -> None:
    history = {"u": [(100, "a"), (200, "b"), (300, "c"), (400, "d")]}
    assert abtest.later_items(history, "u", 200, 150) == {"c"}
    assert abtest.later_items(history, "u", 99, 1000) == {"a", "b", "c", "d"}
    assert abtest.later_items(history, "nobody", 0, 1000) == set()


def test_score_is_hit_and_ndcg_at_k() -> None:
    assert abtest.score(["x", "a", "y"], {"a"}, 3) == pytest.approx((1.0, 1 / 1.5849625007211563))
    assert abtest.score(["a", "b"], {"a", "b"}, 2) == (1.0, 1.0)
    assert abtest.score(["x", "y", "a"], {"a"}, 2) == (0.0, 0.0)


def test_join_counts_a_request_without_later_interactions_as_a_miss() -> None:
    served = [
        Served("A", "e1", "u1", ("a", "b"), START),
        Served("A", "e2", "u2", ("a", "b"), START),
    ]
    later = int(START.timestamp()) + 60
    outcomes = abtest.join(served, {"u1": [(later, "b")]}, k=2, window=timedelta(days=1))
    assert [(o.hit, o.followed) for o in outcomes] == [(1.0, True), (0.0, False)]


def test_intervals_resample_users_not_requests() -> None:
    """One user with 50 hits and 50 users with one miss each: over users the hit rate's interval is
    wide (that one user is in or out); over requests it would be narrow around 0.5."""
    rows = [Outcome("A", "heavy", 1.0, 1.0, ("a",), True) for _ in range(50)]
    rows += [Outcome("A", f"u{n}", 0.0, 0.0, ("b",), False) for n in range(50)]
    [variant] = abtest.report(rows, catalog_size=2, resamples=400)
    hit = variant.metrics["hit_rate"]
    assert (variant.requests, variant.users) == (100, 51)
    assert hit.value == 0.5 and hit.low == 0.0 and hit.high > 0.75
    assert variant.metrics["coverage"].value == 1.0


def test_capture_records_decode_base64_and_json_lines() -> None:
    body = b'{"user_id": "u1", "items": [{"item_id": "7", "score": 1}]}\n{"user_id": "u2", "items": []}\n'
    line = capture.record(b"u1\nu2\n", "text/csv", body, "application/x-ndjson", START)
    assert line["captureData"]["endpointOutput"]["encoding"] == "BASE64"
    assert base64.b64decode(line["captureData"]["endpointOutput"]["data"]) == body
    served = capture.parse_record(json.dumps(line), "B", "here")
    assert [(s.user_id, s.items, s.time) for s in served] == [("u1", ("7",), START), ("u2", (), START)]


def test_the_variant_comes_from_the_path() -> None:
    assert capture.variant_of("s3://b/p/data-capture/ep/ep/Candidate/2026/03/01/12/x.jsonl") == "Candidate"
    with pytest.raises(NcfError, match="not a data capture file path"):
        capture.variant_of("capture/somewhere/x.jsonl")


def test_a_bad_record_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, interactions = synthetic_ab(tmp_path, {"A": 0.2, "B": 0.2}, users=5)
    broken = next(folder.rglob("*.jsonl"))
    broken.write_text(broken.read_text() + '{"captureData": {}}\n')
    status = main(["ab-report", "--capture", str(folder), "--interactions", str(interactions)])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith(f"error: {broken.as_posix()}: line ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--k", "0"], "--k must be at least 1"),
        (["--window-days", "0"], "--window-days must be positive"),
        (["--capture", "/nonexistent"], "capture folder not found"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    folder, interactions = synthetic_ab(tmp_path, {"A": 0.2}, users=3)
    status = main(["ab-report", "--capture", str(folder), "--interactions", str(interactions), *argv])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and message in err, err


def test_interactions_without_timestamps_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = synthetic_ab(tmp_path, {"A": 0.2}, users=3)
    plain = tmp_path / "plain.csv"
    plain.write_text("user_id,item_id\nu0,i1\n")
    status = main(["ab-report", "--capture", str(folder), "--interactions", str(plain)])
    assert status == 2 and "no timestamp column" in capsys.readouterr().err


def test_one_variant_is_reported_without_a_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, interactions = synthetic_ab(tmp_path, {"AllTraffic": 0.3}, users=20)
    report = ab_report(capsys, "--capture", str(folder), "--interactions", str(interactions))
    assert [v["variant"] for v in report["variants"]] == ["AllTraffic"] and report["comparisons"] == []
    main(["ab-report", "--capture", str(folder), "--interactions", str(interactions)])
    assert capsys.readouterr().out.splitlines()[-1] == "only one variant in the capture: nothing to compare"
