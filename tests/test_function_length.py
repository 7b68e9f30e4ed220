"""tests/tools/function_length.py, the `make lint` check that no function in training/ exceeds 60 lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "tools" / "function_length.py"


def function(name: str, lines: int, indent: str = "", decorated: bool = False) -> list[str]:
    """Source of a function that is exactly `lines` lines long (decorator included)."""
    head = [f"{indent}@staticmethod"] if decorated else []
    body = [f"{indent}    x = {i}" for i in range(lines - len(head) - 2)]
    return [*head, f"{indent}def {name}():", *body, f"{indent}    return x"]


def check(tmp_path: Path, source: list[str], *options: str) -> subprocess.CompletedProcess:
    path = tmp_path / "module.py"
    path.write_text("\n".join(source) + "\n")
    return subprocess.run(
        [sys.executable, str(SCRIPT), *options, str(tmp_path)], capture_output=True, text=True, timeout=60
    )


def test_a_function_of_61_lines_fails_and_one_of_60_passes(tmp_path: Path) -> None:
    result = check(tmp_path, [*function("short", 60), "", *function("long", 61)])
    assert result.returncode == 1
    assert result.stdout == f"{tmp_path / 'module.py'}:62: long is 61 lines (max 60)\n"

    assert check(tmp_path, function("short", 60)).returncode == 0


def test_methods_nested_functions_and_decorators_count(tmp_path: Path) -> None:
    source = ["class Model:", *function("fit", 12, indent="    ", decorated=True)]
    source += ["def outer():", *function("inner", 8, indent="    "), "    return inner"]
    result = check(tmp_path, source, "--max-lines", "7")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{tmp_path / 'module.py'}:2: Model.fit is 12 lines (max 7)",
        f"{tmp_path / 'module.py'}:14: outer is 10 lines (max 7)",
        f"{tmp_path / 'module.py'}:15: outer.inner is 8 lines (max 7)",
    ]


def test_a_file_that_does_not_parse_is_an_error(tmp_path: Path) -> None:
    result = check(tmp_path, ["def broken(:"])
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'module.py'}:")


def test_no_function_in_training_is_over_60_lines() -> None:
    """The bar itself, in `make test` too (not only `make lint`), so CI holds it."""
    training = Path(__file__).resolve().parents[1] / "training"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--max-lines", "60", str(training)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
