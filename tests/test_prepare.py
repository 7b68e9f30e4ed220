"""training/prepare.py as users run it: a subprocess, exit codes, the summary, one-line errors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PREPARE = REPO / "training" / "prepare.py"
OPTIONS = [
    *("--input", "--output", "--overwrite", "--feedback", "--rating-threshold", "--eval-negatives", "--seed"),
    *("--min-user-interactions", "--min-item-interactions", "--shards", "--sep"),
    *("--user-col", "--item-col", "--rating-col", "--timestamp-col", "--event-type-col"),
]


def run_prepare(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    # -P: no script folder on sys.path, so `import ncf` works only because prepare.py adds its folder.
    return subprocess.run(
        [sys.executable, "-P", str(PREPARE), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def interactions(tmp_path: Path) -> Path:
    lines = ["user_id,item_id,rating,timestamp"]
    lines += [f"u{u},i{(u * 7 + k) % 30},{1 + (u + k) % 5},{1000 + k}" for u in range(20) for k in range(6)]
    lines += ["u0,i0,5,999"]  # a repeated pair (the older row goes)
    path = tmp_path / "interactions.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_prepare_writes_the_channels_and_prints_a_summary(interactions: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    result = run_prepare("--input", interactions, "--output", out, "--eval-negatives", "10", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "read 121 interactions" in result.stdout
    assert "1 repeated user-item pairs" in result.stdout
    assert f"wrote {out}" in result.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["counts"]["rows_kept"] == 120
    assert meta["counts"]["test_users"] == 20
    assert meta["source"]["files"][0]["sha256"] and meta["options"]["eval_negatives"] == 10
    assert (out / "validation" / "part-00000.csv").read_text().count("\n") == 1 + 20 * 11

    again = run_prepare("--input", interactions, "--output", out, cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr == f"error: output {out} already exists; pass --overwrite to replace it\n"


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,timestamp\nu,a,1\nu,b,yesterday\n")
    result = run_prepare("--input", bad, "--output", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {bad}: line 3, column 'timestamp': timestamp 'yesterday'")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_help_documents_every_option(tmp_path: Path) -> None:
    result = run_prepare("--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in OPTIONS:
        assert option in result.stdout


def test_in_process_run_with_options(interactions: Path, tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("prepare_script", PREPARE)
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    main = prepare.main
    out = tmp_path / "out"
    args = [
        "--input",
        str(interactions),
        "--output",
        str(out),
        "--feedback",
        "explicit",
        "--eval-negatives",
        "5",
    ]
    assert main([*args, "--shards", "2", "--seed", "3"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["feedback"] == "explicit" and meta["seed"] == 3
    assert meta["channels"]["train"]["files"] == ["part-00000.csv", "part-00001.csv"]
    assert meta["channels"]["test"]["columns"] == ["user_id", "item_id", "label", "rating", "timestamp"]
    assert main([*args, "--overwrite", "--sep", "tab"]) == 2
    assert "missing column 'user_id'" in capsys.readouterr().err


def test_event_types_are_kept_in_the_channels_and_recorded(tmp_path: Path) -> None:
    lines = ["user,item,time,kind"]
    lines += [
        f"u{u},i{(u * 7 + k) % 30},{1000 + k},{'purchase' if k % 3 == 0 else 'view'}"
        for u in range(20)
        for k in range(6)
    ]
    source = tmp_path / "events.csv"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "prepared"
    columns = (
        "--user-col",
        "user",
        "--item-col",
        "item",
        "--timestamp-col",
        "time",
        "--event-type-col",
        "kind",
    )
    result = run_prepare("--input", source, "--output", out, "--eval-negatives", "5", *columns, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["options"]["event_type_col"] == "kind"
    assert meta["channels"]["train"]["columns"] == ["user_id", "item_id", "timestamp", "event_type"]
    assert meta["channels"]["test"]["columns"] == ["user_id", "item_id", "label", "timestamp", "event_type"]
    test_rows = (out / "test" / "part-00000.csv").read_text().splitlines()
    assert test_rows[1].endswith(",1005,view") and test_rows[2].endswith(",1005,view")
