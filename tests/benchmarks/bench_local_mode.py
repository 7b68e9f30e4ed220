"""SDK local mode against a plain local run (`make bench-local-mode`): same model, same metrics?

On the embedded data (`data/default`, prepared as `make prepare` does) with the default settings and seed:

1. `make train-local`'s training: `training/train.py` on this machine, given the same channels as the
   local job (`deploy train --local`, like `deploy train`, passes prepare.py's optional items/ and
   vocabulary/ folders too: `make train-local TRAIN_ARGS="--items DIR/items --vocabulary DIR/vocabulary"`);
2. `python -m deploy train --local`: the same job through the SDK's local container mode on the local
   training image (`make local-images` first).

Results: the test metrics of both, their largest absolute difference (the bar is 0.01) and wall times,
in tests/benchmarks/results/local-mode.json (`--quick`: 2 epochs, into local-mode-quick.json). Needs Docker.

Run from the repository root: `.venv/bin/python tests/benchmarks/bench_local_mode.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

DATA = common.REPO / "data" / "default"
CHANNELS = ("train", "validation", "test", "items", "vocabulary")


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(command, cwd=common.REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise common.BenchError(f"{common.shell_command(command)} failed:\n{done.stderr[-3000:]}")
    return done, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs (smoke run)")
    args = parser.parse_args()
    hyperparameters = {"epochs": "2"} if args.quick else {}
    with tempfile.TemporaryDirectory(prefix="bench-local-mode-") as tmp:
        work = Path(tmp)
        prepared = work / "prepared"
        timed([sys.executable, str(common.PREPARE_SCRIPT), "--input", str(DATA), "--output", str(prepared)])
        flags = [f"--{name.replace('_', '-')}={value}" for name, value in hyperparameters.items()]
        # The channels the local job gets: the three splits and the optional items/vocabulary folders.
        channels = [f"--{c}={prepared / c}" for c in CHANNELS if (prepared / c).is_dir()]
        _, host_seconds = timed(
            [
                sys.executable,
                str(common.TRAIN_SCRIPT),
                *channels,
                f"--model-dir={work / 'host' / 'model'}",
                *flags,
            ]
        )
        host = json.loads((work / "host" / "output" / "metrics.json").read_text())["test"]
        env = {**os.environ, "NCF_LOCAL_DIR": str(work / "local-mode")}
        hp = [part for name, value in hyperparameters.items() for part in ("--hp", f"{name}={value}")]
        done, local_seconds = timed(
            [sys.executable, "-m", "deploy", "train", "--local", "--prepared", str(prepared), "--json", *hp],
            env,
        )
        local = json.loads(done.stdout)["metrics"]["test"]
    differences = {name: abs(local[name] - value) for name, value in host.items()}
    payload: dict[str, Any] = {
        **common.run_header("local-mode", args.quick),
        "data": "data/default",
        "hyperparameters": hyperparameters or "train.py defaults",
        "train_local": {"test": host, "seconds": round(host_seconds, 1)},
        "deploy_train_local": {"test": local, "seconds": round(local_seconds, 1)},
        "abs_difference": differences,
        "max_abs_difference": max(differences.values()),
        "within_0_01": max(differences.values()) <= 0.01,
    }
    path = common.write_results(common.results_path("local-mode", args.quick), payload)
    print(
        json.dumps(
            {k: payload[k] for k in ("train_local", "deploy_train_local", "max_abs_difference")}, indent=2
        )
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
