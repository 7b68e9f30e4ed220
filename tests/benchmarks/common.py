"""What the benchmark scripts share: paths, the machine description, result files, measured subprocesses.

The scripts run from the repository root as `.venv/bin/python tests/benchmarks/<script>.py`, so this
folder is on `sys.path` and they import this module as `common`. Importing it also puts `training/` on
the path (for `ncf`). It never imports TensorFlow: versions are read from the installed distributions,
so a benchmark that trains in subprocesses keeps its own process small.

Result files: `results_path(name, quick)` is `results/<name>.json`, or `results/<name>-quick.json` for
smoke runs, so a `--quick` run never overwrites the figures quoted in the README. Every file starts
with `run_header()`: benchmark name, date, command, quick flag and `machine()`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "training"
RESULTS_DIR = REPO / "tests" / "benchmarks" / "results"
PREPARE_SCRIPT = TRAINING / "prepare.py"
TRAIN_SCRIPT = TRAINING / "train.py"
if str(TRAINING) not in sys.path:
    sys.path.insert(0, str(TRAINING))

from ncf import reporting  # noqa: E402

# Where MovieLens 100K is looked for, in order, relative to the repository root: what `make data`
# downloads, then a read-only copy beside the checkout where a machine has one (this project's
# development machines do; a user's checkout does not, and the error message never suggests it).
MOVIELENS_100K_PLACES = (Path("data/raw/ml-100k"), Path("../shared/data/ml-100k"))
MOVIELENS_100K_FILE = "u.data"


class BenchError(Exception):
    """A problem the user can fix (missing data, a failed step); printed as `error: ...`, exit 2."""


def run_main(main: Callable[[], int]) -> int:
    """Run a benchmark's main, turning BenchError into one `error: ...` line and exit status 2."""
    try:
        return main()
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no results written", file=sys.stderr, flush=True)
        return 130


def script_main(
    parse_args: Callable[[list[str] | None], argparse.Namespace], run: Callable[[argparse.Namespace], int]
) -> Callable[[list[str] | None], int]:
    """A benchmark's `main(argv)`: parse the arguments, then `run` them through `run_main`."""

    def main(argv: list[str] | None = None) -> int:
        args = parse_args(argv)
        return run_main(lambda: run(args))

    return main


# -- the machine ---------------------------------------------------------------------------------


def _distribution_version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return None


def machine(**extra_versions: str | None) -> dict[str, Any]:
    """What the numbers were measured on: CPU, usable cores, RAM, OS, and the versions that matter.

    Pass further versions by keyword (`machine(boto3=boto3.__version__)`).
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores_usable": usable,
        "cores_total": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": _distribution_version("tensorflow-cpu", "tensorflow"),
        "keras": _distribution_version("keras"),
        "numpy": _distribution_version("numpy"),
        "pandas": _distribution_version("pandas"),
        **extra_versions,
    }


# -- results --------------------------------------------------------------------------------------


def results_path(name: str, quick: bool) -> Path:
    """`results/<name>.json`; smoke runs go to `<name>-quick.json` and never replace the real figures."""
    return RESULTS_DIR / f"{name}{'-quick' if quick else ''}.json"


def add_run_options(parser: argparse.ArgumentParser, benchmark: str, quick: str, work: str) -> None:
    """The options every benchmark has: --quick (a smoke run: `quick`), --work-dir (holding `work`) and
    --output (default `results_path(benchmark, quick)`, filled in by `parse_run_args`)."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {quick}; results go to {benchmark}-quick.json (never replaces {benchmark}.json)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=REPO / "runs" / "bench" / benchmark,
        help=f"{work} (replaced on each run) [default: runs/bench/{benchmark}]",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help=f"results file [default: results/{benchmark}.json]"
    )


def parse_run_args(
    parser: argparse.ArgumentParser, argv: list[str] | None, benchmark: str
) -> argparse.Namespace:
    """Parse `argv`; --output defaults to `results_path(benchmark, --quick)`."""
    args = parser.parse_args(argv)
    args.output = args.output or results_path(benchmark, args.quick)
    return args


def shell_command(command: Sequence[str | Path]) -> str:
    """A command line as one would type it at the repository root (paths inside it made relative)."""
    return shlex.join(_relative(str(part)) for part in command)


def run_header(benchmark: str, quick: bool, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The fields every results file starts with."""
    return {
        "benchmark": benchmark,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shell_command([sys.executable, *(sys.argv if argv is None else argv)]),
        "commit": code_version(),
        "quick": quick,
        "machine": machine(),
        # Other processes' load at the start (1, 5, 15 min): on a shared machine it explains timing noise.
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def code_version() -> str:
    """The commit the measured code is at, with `+changes` when tracked files other than results files and
    Markdown differ from it (such a figure belongs to no commit), or `unknown` outside a git checkout."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return "unknown"
    # Results files and documentation are not measured code: a benchmark run after another one (which
    # rewrote its results file) still measures the commit.
    not_code = (":(exclude)tests/benchmarks/results", ":(exclude)*.md")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", *not_code).stdout.strip()
    return head.stdout.strip() + ("+changes" if dirty else "")


def _relative(part: str) -> str:
    if not part.startswith("/"):
        return part
    try:
        return str(Path(part).relative_to(REPO))
    except ValueError:
        return part


def write_results(path: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` as indented JSON, atomically (a reader never sees half a file).

    Paths inside the repository, or beside it, are written relative to the repository root so the
    results read the same on every machine.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    text = json.dumps(payload, indent=2, default=str)
    text = text.replace(f"{REPO}/", "").replace(f"{REPO.parent}/", "../")
    scratch.write_text(text + "\n")
    scratch.replace(path)
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; numbers are printed as given (format them first)."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# -- subprocesses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasuredRun:
    """A finished subprocess: its exit status, output, wall time and peak resident memory."""

    command: list[str]
    returncode: int
    output: str
    seconds: float
    peak_rss_mib: float

    def metric_values(self, name: str) -> list[float]:
        """Every value of one `name=value;` metric line train.py printed, in order (SageMaker's regex)."""
        return [float(v) for v in re.findall(reporting.metric_regex(name), self.output)]


def _child_environment() -> dict[str, str]:
    """This environment without SageMaker's variables (a stray SM_* would redirect train.py's paths)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_measured(
    command: Sequence[str],
    log_path: Path,
    show: Callable[[str], bool] = lambda line: True,
    prefix: str = "",
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
) -> MeasuredRun:
    """Run `command`, echo the lines `show` accepts, keep all output in `log_path`, measure peak RSS.

    Peak RSS is the child's own `ru_maxrss` from `os.wait4` (its whole life, TensorFlow import
    included), not a sampled estimate, and not mixed up with other children of this process. `env`
    adds variables (SM_* included) to the child's environment; `cwd` is where it runs (the repository).
    """
    command = [str(part) for part in command]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    lines = []
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env={**_child_environment(), **(env or {})},
        )
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            log.write(line)
            if show(line.rstrip("\n")):
                print(f"{prefix}{line}", end="", flush=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    divisor = 1024**2 if sys.platform == "darwin" else 1024
    return MeasuredRun(command, process.returncode, "".join(lines), seconds, usage.ru_maxrss / divisor)


def check_success(run: MeasuredRun, what: str, log_path: Path) -> None:
    """Raise BenchError with the tail of the output when a step failed."""
    if run.returncode != 0:
        tail = "".join(run.output.splitlines(keepends=True)[-15:])
        raise BenchError(f"{what} failed with exit status {run.returncode} (full log: {log_path}):\n{tail}")


def is_progress_line(line: str) -> bool:
    """False for train.py's `name=value;` metric lines (they are for SageMaker's regexes, not people)."""
    return re.fullmatch(r"[a-z0-9_]+=[^;\s]+;", line.strip()) is None


def prepare_measured(source: Path, output: Path, logs: Path, *options: str) -> MeasuredRun:
    """Run the real training/prepare.py on `source` into `output` (log in `logs`); BenchError if it fails."""
    command = [sys.executable, PREPARE_SCRIPT, "--input", source, "--output", output, "--overwrite", *options]
    log_path = logs / "prepare.log"
    run = run_measured(command, log_path, prefix="  ")
    check_success(run, "prepare.py", log_path)
    return run


def prepare(source: Path, output: Path, logs: Path, *options: str) -> dict[str, Any]:
    """Run the real training/prepare.py on `source` into `output`; return the meta.json it wrote."""
    prepare_measured(source, output, logs, *options)
    return json.loads((output / "meta.json").read_text())


def train_command(
    prepared: Path, model_dir: Path, output_dir: Path, *flags: str, train: Path | None = None
) -> list[str]:
    """The train.py command line on prepared channels; `flags` are the only non-default settings.
    `train` replaces the prepared train channel (a worker's own files of a sharded channel)."""
    return [
        sys.executable,
        str(TRAIN_SCRIPT),
        "--train",
        str(train or prepared / "train"),
        "--validation",
        str(prepared / "validation"),
        "--test",
        str(prepared / "test"),
        "--model-dir",
        str(model_dir),
        "--output-data-dir",
        str(output_dir),
        *flags,
    ]


# -- data -----------------------------------------------------------------------------------------


def find_movielens_100k(explicit: Path | None) -> Path:
    """The MovieLens 100K folder: `explicit`, else the first of MOVIELENS_100K_PLACES that holds u.data."""
    places = [explicit] if explicit is not None else [REPO / p for p in MOVIELENS_100K_PLACES]
    for place in places:
        if (place / MOVIELENS_100K_FILE).is_file():
            return place.resolve()
    looked = ", ".join(str(p) for p in places)
    raise BenchError(
        f"MovieLens 100K not found (no {MOVIELENS_100K_FILE} in {looked}). Download it with "
        "`make data DATASET=ml-100k` (into data/raw/ml-100k), or pass the folder of an unpacked copy "
        "with --data DIR (the folder you would give make train-local as DATA_DIR)"
    )
