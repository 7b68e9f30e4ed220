"""What every benchmark results file records about the code it measured."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from benchmarks import common


def test_a_results_header_names_the_commit_it_measured() -> None:
    header = common.run_header("example", quick=True, argv=["tests/benchmarks/bench_example.py"])
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=common.REPO, capture_output=True, text=True)
    assert re.fullmatch(r"[0-9a-f]{40}(\+changes)?", header["commit"])
    assert header["commit"].startswith(head.stdout.strip())
    assert header["command"].endswith("tests/benchmarks/bench_example.py")


def test_code_outside_a_checkout_is_unknown(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(common, "REPO", tmp_path)
    assert common.code_version() == "unknown"


def test_uncommitted_changes_are_flagged(tmp_path: Path, monkeypatch) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "one")
    monkeypatch.setattr(common, "REPO", tmp_path)
    assert not common.code_version().endswith("+changes")
    results = tmp_path / "tests" / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "bench.json").write_text("{}\n")
    (tmp_path / "README.md").write_text("figures\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "two")
    (results / "bench.json").write_text('{"x": 1}\n')  # another benchmark's results: not code
    (tmp_path / "README.md").write_text("new figures\n")
    assert not common.code_version().endswith("+changes")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert common.code_version().endswith("+changes")
