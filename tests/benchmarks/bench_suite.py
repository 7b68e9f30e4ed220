"""How long the README's test command takes (`make bench-suite`): `make test`, timed, its outcome counted.

The bars are `make test` under 12 minutes and CI (`.ci/run` on a clean clone) under 20, on 2 cores. A
timing asserted inside the suite would flake under load, so the suite is timed from outside, like every
other figure: the wall time of the whole command, the pytest summary it printed (passed, skipped, failed)
and the machine's load at the start, which tells whether the run had the machine to itself.

- default: `make test` in this checkout -> results/suite.json;
- `--clean-clone`: `git clone` of this checkout's HEAD into the work directory, then `CI=true bash .ci/run`
  there (install from scratch, Docker images, `make test`) -> results/suite-ci.json;
- `--quick`: one small test file instead (a smoke run of this script) -> results/suite-quick.json.

Run from the repository root: `.venv/bin/python tests/benchmarks/bench_suite.py [--clean-clone | --quick]`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import common

QUICK_COMMAND = [sys.executable, "-m", "pytest", "-q", "tests/test_bench_common.py"]
FULL_COMMAND = ["make", "test"]
CI_COMMAND = ["bash", ".ci/run"]
BAR_SECONDS = {"suite": 12 * 60, "suite-ci": 20 * 60}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_run_options(parser, "suite", "one test file instead of `make test`", "logs (and the clone)")
    parser.add_argument(
        "--clean-clone", action="store_true", help="time CI=true .ci/run in a fresh clone of HEAD"
    )
    args = parser.parse_args(argv)
    args.benchmark = "suite-ci" if args.clean_clone else "suite"
    args.output = args.output or common.results_path(args.benchmark, args.quick)
    return args


def clean_clone(work_dir: Path) -> Path:
    """A fresh clone of this checkout's HEAD under `work_dir`: what CI starts from."""
    clone = work_dir / "clone"
    if clone.exists():
        shutil.rmtree(clone)
    clone.parent.mkdir(parents=True, exist_ok=True)
    cloned = subprocess.run(
        ["git", "clone", "-q", str(common.REPO), str(clone)], capture_output=True, text=True
    )
    if cloned.returncode != 0:
        raise common.BenchError(f"git clone failed: {cloned.stderr.strip()}")
    return clone


def outcome_counts(output: str) -> dict[str, int]:
    """pytest's final summary (`1022 passed, 3 skipped in 700.1s`) as counts by outcome."""
    summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    if not summary:
        raise common.BenchError("the test command printed no pytest summary")
    return {word: int(count) for count, word in re.findall(r"(\d+) ([a-z]+)", summary[-1])}


def run(args: argparse.Namespace) -> int:
    header = common.run_header(args.benchmark, args.quick)
    log = args.work_dir / "test.log"
    if args.clean_clone:
        command, where, env = CI_COMMAND, clean_clone(args.work_dir), {"CI": "true"}
    else:
        command, where, env = (QUICK_COMMAND if args.quick else FULL_COMMAND), common.REPO, None
    measured = common.run_measured(command, log, show=lambda line: False, env=env, cwd=where)
    counts = outcome_counts(measured.output)
    common.check_success(measured, "the test command", log)
    payload = {
        **header,
        "test_command": common.shell_command(command),
        "wall_seconds": round(measured.seconds, 1),
        "wall_minutes": round(measured.seconds / 60, 1),
        "outcomes": counts,
        "bar_seconds": BAR_SECONDS[args.benchmark],
        "meets_bar": measured.seconds < BAR_SECONDS[args.benchmark],
    }
    path = common.write_results(args.output, payload)
    print(f"{payload['test_command']}: {payload['wall_seconds']} s, {counts} -> {Path(path).name}")
    return 0


main = common.script_main(parse_args, run)

if __name__ == "__main__":
    sys.exit(main())
