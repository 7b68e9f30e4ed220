"""Every measured figure in the README comes from a results file, as printed, measured at a commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import readme_figures
from readme_figures import check

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    payload = {
        "commit": COMMIT,
        "serve": {"p50_seconds": 0.00203, "throughput": 591.4, "rss_kib": 1_835_008},
        "quality": [{"hr_at_10": 0.70201, "ndcg_at_10": 0.4212, "share": 0.25}],
        "samples_per_sec": 681850.2,
    }
    (tmp_path / "bench.json").write_text(json.dumps(payload))
    (tmp_path / "dirty.json").write_text(json.dumps({"commit": COMMIT + "+changes", "x": 1.5}))
    (tmp_path / "old.json").write_text(json.dumps({"x": 1.5}))
    parts = {"a": {"run": {"commit": COMMIT}, "x": 1.5}, "b_run": {"commit": COMMIT}, "b": [2.5]}
    (tmp_path / "parts.json").write_text(json.dumps(parts))
    (tmp_path / "old-part.json").write_text(json.dumps({**parts, "c": {"run": {"date": "2026-11-30"}}}))
    return tmp_path


def block(body: str, files: str = "bench.json") -> str:
    return f"Intro.\n<!-- figures: {files} -->\n{body}\n<!-- /figures -->\n"


@pytest.mark.parametrize(
    "body",
    [
        "HR@10 **0.702**, NDCG@10 0.421 at 681,850 samples/s.",
        "| p50 | 2.03 ms | 591 req/s | 1.75 GiB | 1,792 MiB | 25 % |",
        "Top-10 of 1M items for 10 users on 2 cores, k = 10, 2026-11-30, TensorFlow `2.19.1`.",
        "A bar of ≤ 2.5 ms and ≥ 560 req/s is not a measurement; `--epochs 3` neither.",
    ],
)
def test_figures_that_match_their_file_pass(results: Path, body: str) -> None:
    assert check(block(body), results) == []


@pytest.mark.parametrize(
    ("body", "wrong"),
    [
        ("HR@10 0.703.", "0.703"),
        ("p50 2.4 ms.", "2.4 ms"),
        ("680,000 samples/s.", "680,000 samples/s"),
        ("2.2× popularity.", "2.2 ×"),
        ("Peak 3 GiB.", "3 GiB"),
    ],
)
def test_a_figure_that_differs_from_its_file_fails(results: Path, body: str, wrong: str) -> None:
    problems = check(block(body), results)
    assert [p.message.split(" is in no value")[0] for p in problems] == [wrong]
    assert problems[0].line == 3


def test_a_measurement_outside_any_block_fails(results: Path) -> None:
    readme = (
        "Answers in 2.4 ms at 591 req/s.\nThe limit is `6 MiB`, the bar ≤ 10 ms, learning rate 0.002.\n"
        "Test HR@10 0.77 on 10 users.\n" + block("0.702")
    )
    problems = check(readme, results)
    found = [(p.line, p.message.split(" is quoted")[0]) for p in problems]
    assert found == [(1, "2.4 ms"), (1, "591 req/s"), (3, "0.77")]


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ("missing.json", "does not exist"),
        ("old.json", "records no commit"),
        ("dirty.json", "not at a commit"),
        ("old-part.json", "records no commit"),
    ],
)
def test_a_block_needs_an_existing_file_measured_at_a_commit(results: Path, files: str, why: str) -> None:
    problems = check(block("1.5", files), results)
    assert why in problems[0].message


def test_a_file_written_part_by_part_names_each_parts_commit(results: Path) -> None:
    assert check(block("1.5 and 2.5", "parts.json"), results) == []


def test_code_blocks_are_not_figures(results: Path) -> None:
    readme = "```\n[neumf] epoch 5/30  654,522 samples/s  1.3s\n```\n"
    assert check(readme, results) == []


def test_the_readme_quotes_only_figures_its_results_files_hold() -> None:
    problems = check((readme_figures.REPO / "README.md").read_text())
    assert not problems, "\n".join(map(str, problems))
