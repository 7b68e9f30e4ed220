"""How long the README's test command takes (`make bench-suite`): `make test`, timed, its outcome counted.

The bar is `make test` under 12 minutes on 2 cores. A timing asserted inside the suite would flake under
load, so the suite is timed from outside, like every other figure: the wall time of the whole command,
the pytest summary it printed (passed, skipped, failed) and the machine's load at the start, which tells
whether the run had the machine to itself. `--quick` times one small test file instead (a smoke run of
this script). Results: tests/benchmarks/results/suite.json.

Run from the repository root: `.venv/bin/python tests/benchmarks/bench_suite.py [--quick]`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import common

QUICK_COMMAND = [sys.executable, "-m", "pytest", "-q", "tests/test_bench_common.py"]
FULL_COMMAND = ["make", "test"]
BAR_SECONDS = 12 * 60


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_run_options(parser, "suite", "one test file instead of `make test`", "pytest's logs")
    return common.parse_run_args(parser, argv, "suite")


def outcome_counts(output: str) -> dict[str, int]:
    """pytest's final summary (`1022 passed, 3 skipped in 700.1s`) as counts by outcome."""
    summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    if not summary:
        raise common.BenchError("the test command printed no pytest summary")
    return {word: int(count) for count, word in re.findall(r"(\d+) ([a-z]+)", summary[-1])}


def run(args: argparse.Namespace) -> int:
    command = QUICK_COMMAND if args.quick else FULL_COMMAND
    header = common.run_header("suite", args.quick)
    log = args.work_dir / "test.log"
    measured = common.run_measured(command, log, show=lambda line: False)
    counts = outcome_counts(measured.output)
    common.check_success(measured, "the test command", log)
    payload = {
        **header,
        "test_command": common.shell_command(command),
        "wall_seconds": round(measured.seconds, 1),
        "wall_minutes": round(measured.seconds / 60, 1),
        "outcomes": counts,
        "bar_seconds": BAR_SECONDS,
        "meets_bar": measured.seconds < BAR_SECONDS,
    }
    path = common.write_results(args.output, payload)
    print(f"{payload['test_command']}: {payload['wall_seconds']} s, {counts} -> {Path(path).name}")
    return 0


main = common.script_main(parse_args, run)

if __name__ == "__main__":
    sys.exit(main())
