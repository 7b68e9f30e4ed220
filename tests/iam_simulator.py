"""Run tests/iam/simulate.mjs (@cloud-copilot/iam-simulate under node) over a batch of IAM requests.

One node process evaluates a whole batch. `make install` installs the npm package
(`npm ci --prefix tests/iam`). Without node, `require_simulator` skips the calling test on a
developer machine and fails it in CI (the `CI` variable is set there): the IAM check must run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from iam_requests import IamRequest

SIMULATOR = Path(__file__).parent / "iam" / "simulate.mjs"
PACKAGE = SIMULATOR.parent / "node_modules" / "@cloud-copilot" / "iam-simulate"


def require_simulator() -> str:
    """The node executable, after checking the simulator package is installed."""
    node = shutil.which("node")
    if node is None:
        message = "node is not installed: the IAM simulator (tests/iam) needs Node.js 20 or later"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if not PACKAGE.is_dir():
        pytest.fail(f"{PACKAGE} is missing: run `make install` (it runs `npm ci --prefix tests/iam`)")
    return node


def decisions(principal: str, policies: dict[str, Any], requests: list[IamRequest]) -> list[dict[str, Any]]:
    """The simulator's decision for each request: `{"decision": "Allowed" | ..., "errors"?: ...}`."""
    batch = {
        "principal": principal,
        "policies": policies,
        "requests": [{"action": r.action, "resource": r.resource, "context": r.context} for r in requests],
    }
    result = subprocess.run(
        [require_simulator(), str(SIMULATOR)],
        input=json.dumps(batch),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"the IAM simulator failed: {result.stderr[-2000:]}"
    answers = json.loads(result.stdout)
    assert len(answers) == len(requests)
    return answers
