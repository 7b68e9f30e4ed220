"""Fail when a Python function is longer than a limit (default 60 lines): `make lint` runs it on training/.

    python tests/tools/function_length.py [--max-lines N] PATH...

A function's length runs from its first decorator (or `def`) to its last line, docstring, comments
and blank lines included: what a reader has to take in at once. Nested functions count on their own
and inside their parent. Prints one `path:line: name is N lines (max M)` per offender and exits 1;
exits 0 when there is none, 2 when a file cannot be read or parsed.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

DEFAULT_MAX_LINES = 60


def function_lengths(source: str) -> Iterator[tuple[int, str, int]]:
    """(first line, qualified name, length in lines) of every function and method in `source`.

    Raises:
        SyntaxError: `source` is not valid Python.
    """
    yield from _walk(ast.parse(source), "")


def _walk(node: ast.AST, prefix: str) -> Iterator[tuple[int, str, int]]:
    for child in ast.iter_child_nodes(node):
        name = f"{prefix}{getattr(child, 'name', '')}"
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
            yield first, name, child.end_lineno - first + 1
            yield from _walk(child, f"{name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _walk(child, f"{name}.")
        else:
            yield from _walk(child, prefix)


def python_files(paths: list[Path]) -> list[Path]:
    """The .py files of `paths` (files as given, folders searched recursively), sorted."""
    found: list[Path] = []
    for path in paths:
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="function_length.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="files or folders to check")
    parser.add_argument("--max-lines", type=int, default=DEFAULT_MAX_LINES, help="longest allowed function")
    args = parser.parse_args(argv)
    offenders = 0
    for path in python_files(args.paths):
        try:
            lengths = list(function_lengths(path.read_text(encoding="utf-8")))
        except (OSError, SyntaxError, UnicodeDecodeError) as error:
            print(f"error: {path}: {error}", file=sys.stderr)
            return 2
        for line, name, length in lengths:
            if length > args.max_lines:
                offenders += 1
                print(f"{path}:{line}: {name} is {length} lines (max {args.max_lines})")
    return 1 if offenders else 0


if __name__ == "__main__":
    sys.exit(main())
