"""The README's measured figures against the results files that hold them.

A part of the README that quotes measurements is a *figures block*: it opens with
`<!-- figures: speed.json optimizer.json -->` (files in tests/benchmarks/results/) and closes with
`<!-- /figures -->`. Inside a block, every measured number must equal a value of one of the named files,
rounded as printed:

- a number with decimals or thousands separators (`0.702`, `681,850`), or
- any number followed by a unit of measure (`7 ms`, `12 s`, `25 %`, `1.8×`, `591 req/s`, `752 MiB`).

Whole numbers without a unit (`10 users`, `k = 10`), text in code spans and blocks (commands, settings and
limits such as `6 MiB`), dates and versions are not figures. A number right after a comparison (`≤ 10 ms`,
`bar 3 ms`) is a bar, not a measurement. Outside blocks, a number followed by a unit of time, throughput
or memory, or a number with decimals right after a metric's name (`HR@10 0.77`), is refused unless it is
such a bar: a measurement quoted there has no file behind it.

A unit may be stored in a smaller one: milliseconds as seconds, GiB as MiB, KiB (`ru_maxrss`) or bytes,
MiB as KiB or bytes, a percentage as a fraction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "tests" / "benchmarks" / "results"

BLOCK = re.compile(r"<!-- figures: (?P<files>[^>]+?) -->(?P<body>.*?)<!-- /figures -->", re.DOTALL)
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
NUMBER = re.compile(
    r"(?<![\w@.\-/#=])(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?![\w.\-:/]?\d)(?P<unit>\s?(?:ms|s|MiB|GiB|MB|GB|%|×|req/s|samples/s|users/s)(?![\w/]))?"
)
# A number preceded by one of these is a bar or a limit, not a measurement.
COMPARISON = re.compile(r"(?:≤|≥|<|>|=|bar|bars|under|over|within|at most|at least|up to|limit)\s*$", re.I)
# Outside blocks these units mark a measurement (percentages and ratios there are settings or shares), and
# so does a number with decimals shortly after a metric's name.
MEASUREMENT_UNITS = {"ms", "s", "MiB", "GiB", "MB", "GB", "req/s", "samples/s", "users/s"}
METRIC_NAME = re.compile(r"(?:HR|NDCG|Recall)@\d+|AUC|overlap", re.I)
# Smaller units a value may be stored in: the factors that turn the stored value into the printed one.
SCALES = {
    "ms": (1.0, 1000.0),
    "GiB": (1.0, 1 / 1024, 1 / 1024**2, 1 / 1024**3),
    "GB": (1.0, 1 / 1000, 1 / 1000**3),
    "MiB": (1.0, 1 / 1024, 1 / 1024**2),
    "MB": (1.0, 1 / 1000**2),
    "%": (1.0, 100.0),
}


@dataclass(frozen=True)
class Figure:
    """One printed number: its text, value, decimals shown and unit (empty when none)."""

    text: str
    value: float
    decimals: int
    unit: str
    line: int

    def matches(self, stored: float) -> bool:
        """Whether `stored`, in this unit or a smaller one, prints as this figure."""
        half_step = 0.5 * 10.0 ** (-self.decimals) + 1e-9
        return any(abs(stored * scale - self.value) <= half_step for scale in SCALES.get(self.unit, (1.0,)))


@dataclass(frozen=True)
class Problem:
    """Something wrong with the README's figures, with the line it is on."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.message}"


def _blank(match: re.Match[str]) -> str:
    """The match replaced by spaces and its newlines, so offsets and line numbers stay put."""
    return re.sub(r"[^\n]", " ", match.group(0))


def _prose(text: str) -> str:
    """`text` without code blocks and spans, link targets and comments (same length)."""
    for pattern in (COMMENT, FENCE, CODE_SPAN, LINK_TARGET):
        text = pattern.sub(_blank, text)
    return text


def _after_metric(prose: str, match: re.Match[str]) -> bool:
    """A number with decimals at most 40 characters after a metric's name (`HR@10 0.77`)."""
    return (
        "." in match["number"]
        and METRIC_NAME.search(prose[max(0, match.start() - 40) : match.start()]) is not None
    )


def figures(text: str, first_line: int = 1, *, measurements_only: bool = False) -> Iterator[Figure]:
    """The measured numbers of `text` (see the module docstring); with `measurements_only`, only those
    followed by a unit of time, throughput or memory, as checked outside blocks."""
    prose = _prose(text)
    for match in NUMBER.finditer(prose):
        number, unit = match["number"], (match["unit"] or "").strip()
        if COMPARISON.search(prose[max(0, match.start() - 12) : match.start()]):
            continue
        if measurements_only and unit not in MEASUREMENT_UNITS and not _after_metric(prose, match):
            continue
        if not unit and "." not in number and "," not in number:
            continue
        decimals = len(number.partition(".")[2])
        line = first_line + prose.count("\n", 0, match.start())
        yield Figure(
            number + (" " + unit if unit else ""), float(number.replace(",", "")), decimals, unit, line
        )


def stored_numbers(payload: Any) -> list[float]:
    """Every finite number in a parsed JSON document, however deep."""
    if isinstance(payload, bool):
        return []
    if isinstance(payload, int | float):
        return [float(payload)] if math.isfinite(payload) else []
    if isinstance(payload, dict):
        payload = list(payload.values())
    if isinstance(payload, list):
        return [number for item in payload for number in stored_numbers(item)]
    return []


def results_commits(payload: dict[str, Any]) -> list[str | None]:
    """The commits a results file says it measured: its header's (top level or under `header`), or, in a
    file written part by part (`bench_serve.py --parts`), each part's run header (`part.run`, `part_run`)."""
    header = payload.get("header") if isinstance(payload.get("header"), dict) else payload
    if "commit" in header:
        return [header["commit"]]
    runs = [value["run"] for value in payload.values() if isinstance(value, dict) and "run" in value]
    runs += [value for name, value in payload.items() if name.endswith("_run")]
    return [run.get("commit") if isinstance(run, dict) else None for run in runs] or [None]


def check_results_file(name: str, line: int, results: Path = RESULTS) -> tuple[list[float], list[Problem]]:
    """The numbers of one named results file, and what is wrong with it."""
    path = results / name
    if not path.is_file():
        return [], [Problem(line, f"results file {name} does not exist")]
    payload = json.loads(path.read_text())
    for commit in results_commits(payload) if isinstance(payload, dict) else [None]:
        if not commit or not re.fullmatch(r"[0-9a-f]{40}", commit):
            why = "records no commit" if not commit else f"was measured at {commit}, not at a commit"
            return stored_numbers(payload), [Problem(line, f"{name} {why}: rerun its benchmark")]
    return stored_numbers(payload), []


def check(readme: str, results: Path = RESULTS) -> list[Problem]:
    """Every problem with the README's figures: blocks against their files, measurements outside blocks."""
    problems: list[Problem] = []
    for block in BLOCK.finditer(readme):
        line = readme.count("\n", 0, block.start()) + 1
        stored: list[float] = []
        for name in block["files"].split():
            numbers, found = check_results_file(name, line, results)
            stored += numbers
            problems += found
        for figure in figures(block["body"], readme.count("\n", 0, block.start("body")) + 1):
            if not any(figure.matches(value) for value in stored):
                problems.append(
                    Problem(figure.line, f"{figure.text} is in no value of {block['files'].strip()}")
                )
    outside = BLOCK.sub(_blank, readme)
    for figure in figures(outside, measurements_only=True):
        problems.append(
            Problem(figure.line, f"{figure.text} is quoted outside a figures block (no results file)")
        )
    return problems
