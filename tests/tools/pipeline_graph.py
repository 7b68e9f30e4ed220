"""Draw the retraining pipeline's graph (deploy/pipeline.png) from the definition `pipeline upsert` sends.

    python tests/tools/pipeline_graph.py deploy/pipeline.png

The definition is built exactly as `pipeline upsert` builds it, against in-process moto (the SDK uploads
the training drivers while it defines the Train step, so it needs an S3; nothing leaves this machine).
Edges come from the definition itself: a step depends on every step whose properties it reads (`Get:
Steps.<name>...`, property files included), and a Condition step leads to its if/else branches.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "training"), str(ROOT)]

STEP_REFERENCE = re.compile(r'"Get": "Steps\.([A-Za-z0-9_-]+)[.\[]')
COLOURS = {
    "Processing": "#cfe2f3",
    "Training": "#d9ead3",
    "Condition": "#fff2cc",
    "RegisterModel": "#ead1dc",
    "Fail": "#f4cccc",
}


def definition() -> dict[str, Any]:
    """The definition `pipeline upsert` sends with the default settings."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="graph",
        AWS_SECRET_ACCESS_KEY="graph",
        AWS_DEFAULT_REGION="us-east-1",
        SAGEMAKER_VALIDATE_ROLE="false",
    )
    import boto3
    from moto import mock_aws

    from deploy.config import load_settings
    from deploy.pipeline import upsert

    settings = load_settings(
        None, {"bucket": "example-bucket", "role_arn": "arn:aws:iam::123456789012:role/ncf"}
    )
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        session.client("s3").create_bucket(Bucket=settings.bucket)
        upsert(settings, session)
        described = session.client("sagemaker").describe_pipeline(PipelineName=settings.pipeline)
    return json.loads(described["PipelineDefinition"])


def references(step: dict[str, Any]) -> set[str]:
    """The other steps whose properties `step` reads (a Condition's branches are steps of their own)."""
    arguments = {k: v for k, v in step.get("Arguments", {}).items() if k not in ("IfSteps", "ElseSteps")}
    own = json.dumps({**step, "Arguments": arguments})
    return {ref for ref in STEP_REFERENCE.findall(own) if ref != step["Name"]}


def edges(steps: list[dict[str, Any]]) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Every step's type, and (from, to, label) for data dependencies and condition branches."""
    types: dict[str, str] = {}
    found: list[tuple[str, str, str]] = []
    for step in steps:
        types[step["Name"]] = step["Type"]
        found += [(ref, step["Name"], "") for ref in sorted(references(step))]
        arguments = step.get("Arguments", {})
        for label, branch in (("passed", "IfSteps"), ("refused", "ElseSteps")):
            for inner in arguments.get(branch, []):
                types[inner["Name"]] = inner["Type"]
                found.append((step["Name"], inner["Name"], label))
                found += [(ref, inner["Name"], "") for ref in sorted(references(inner))]
    return types, found


def draw(types: dict[str, str], links: list[tuple[str, str, str]], output: Path) -> None:
    """Steps top to bottom in definition order, branches side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = list(types)
    main = [n for n in order if not any(to == n and label for _, to, label in links)]
    positions = {name: (0.0, -i) for i, name in enumerate(main)}
    branches = [to for _, to, label in links if label]
    for i, name in enumerate(branches):
        positions[name] = (-1.3 + 2.6 * i, -len(main))
    figure, axes = plt.subplots(figsize=(7, 1.25 * (len(main) + 1)))
    for start, end, label in links:
        if end in branches and not label:
            continue  # a branch's data links would cross the picture; its condition link says enough
        (x0, y0), (x1, y1) = positions[start], positions[end]
        axes.annotate("", (x1, y1 + 0.22), (x0, y0 - 0.22), arrowprops={"arrowstyle": "->", "color": "#555"})
        if label:
            axes.text((x0 + x1) / 2, (y0 + y1) / 2, label, ha="center", fontsize=9, color="#333")
    for name, (x, y) in positions.items():
        axes.text(
            x,
            y,
            f"{name}\n({types[name]})",
            ha="center",
            va="center",
            fontsize=10,
            bbox={
                "boxstyle": "round,pad=0.5",
                "facecolor": COLOURS.get(types[name], "#eee"),
                "edgecolor": "#666",
            },
        )
    axes.set_xlim(-2.5, 2.5)
    axes.set_ylim(-len(main) - 0.6, 0.6)
    axes.axis("off")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/tools/pipeline_graph.py OUTPUT.png", file=sys.stderr)
        return 2
    types, links = edges(definition()["Steps"])
    draw(types, links, Path(argv[0]))
    print(f"wrote {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
