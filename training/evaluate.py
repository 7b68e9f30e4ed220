"""Score a candidate model against the serving one on the same test channel: the retraining gate's input.

    python training/evaluate.py --candidate DIR --current DIR --test DIR --output DIR --margin 0.01

Runs as the evaluation step of the retraining pipeline (deploy/pipeline.py) in the training container, from
the source bundle; needs only TensorFlow, numpy and pandas (no deploy/). `--candidate` and `--current` are
folders holding a `model.tar.gz` as train.py writes it (1/ a SavedModel, code/ the serving handler);
`--current` may be empty, absent or hold only a NO_APPROVED_MODEL file: no approved model yet, and the
candidate passes on its quality alone.

Each model is loaded from its archive, asked one smoke request (its `serving_default` signature, the one
TF Serving answers, for the first test user) and scored by the project's sampled protocol
(ncf.evaluation.protocol: the rank of each test user's held-out positive among its sampled candidates)
through its `score` signature, so both models see exactly the same users and candidates. It writes
`evaluation.json` (the pipeline's property file):

    {"candidate": {"loaded", "smoke_ok", "test_ndcg_at_<k>", "test_hr_at_<k>", "error"},
     "current":   {... the same, or null},
     "gate": {"metric", "candidate", "current", "margin", "threshold", "smoke_ok", "passed", "summary"}}

`gate.threshold` is current - margin (0 without a current model) because a pipeline's Condition step can
compare two values but cannot subtract. A candidate that does not load or answer gets score -1, so it
fails the gate; the report says why. Bad arguments print one `error: ...` line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # run as a script with a safe path (python -P): make `import ncf` work
    sys.path.insert(0, _HERE)

import numpy as np  # noqa: E402
from ncf.data.channels import read_channel  # noqa: E402
from ncf.data.heldout import HeldOut, build_heldout  # noqa: E402
from ncf.data.vocab import Vocabulary  # noqa: E402
from ncf.errors import NcfError  # noqa: E402
from ncf.evaluation.protocol import hit_rate, ndcg, sampled_ranks  # noqa: E402

PROCESSING = Path("/opt/ml/processing")
REPORT = "evaluation.json"
NO_MODEL_MARKER = "NO_APPROVED_MODEL"
#: CurrentModel's default (a run nobody resolved it for, such as a schedule's): {"group", "region"} of the
#: Model Package Group whose newest Approved version is the model to beat, looked up here at run time.
LATEST_APPROVED_MARKER = "LATEST_APPROVED.json"
#: The score of a model that did not load or answer: below any real NDCG, so the gate refuses it.
FAILED_SCORE = -1.0


@dataclass(frozen=True)
class TestSet:
    """The test channel as the protocol needs it: the held-out rows and the raw ids behind the indices."""

    heldout: HeldOut
    users: Vocabulary
    items: Vocabulary


def read_test_set(folder: Path) -> TestSet:
    """The test channel prepare.py wrote (one positive and the same number of negatives per user)."""
    frame = read_channel(folder, required=("user_id", "item_id", "label"))
    users = Vocabulary.from_values(frame["user_id"])
    items = Vocabulary.from_values(frame["item_id"])
    return TestSet(build_heldout(frame, users, items, str(folder)), users, items)


def find_archive(folder: Path | None) -> Path | None:
    """The folder's model.tar.gz; None for no folder, an empty one or one holding only the
    `NO_MODEL_MARKER` file (the pipeline's stand-in input while no model is approved)."""
    if folder is None or not folder.is_dir() or {p.name for p in folder.iterdir()} <= {NO_MODEL_MARKER}:
        return None
    archives = sorted(folder.rglob("model.tar.gz"))
    if not archives:
        raise NcfError(f"{folder}: no model.tar.gz in it")
    return archives[0]


def current_archive(folder: Path | None, scratch: Path) -> Path | None:
    """The current model's archive: the folder's own (`find_archive`), or, when the folder holds the
    LATEST_APPROVED marker, the group's newest Approved version downloaded into `scratch`."""
    marker = folder / LATEST_APPROVED_MARKER if folder is not None else None
    if marker is None or not marker.is_file():
        return find_archive(folder)
    spec = json.loads(marker.read_text())
    return download_latest_approved(spec["group"], spec["region"], scratch)


def download_latest_approved(group: str, region: str, scratch: Path) -> Path | None:
    """The model.tar.gz of the group's newest Approved version (None while there is none), from S3."""
    import boto3

    sagemaker = boto3.client("sagemaker", region_name=region)
    newest = sagemaker.list_model_packages(
        ModelPackageGroupName=group,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=1,
    )["ModelPackageSummaryList"]
    if not newest:
        return None
    package = sagemaker.describe_model_package(ModelPackageName=newest[0]["ModelPackageArn"])
    uri = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    archive = scratch / "current" / "model.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    boto3.client("s3", region_name=region).download_file(bucket, key, str(archive))
    print(f"current model: {newest[0]['ModelPackageArn']} ({uri})")
    return archive


def load_saved_model(archive: Path, into: Path) -> Any:
    """The SavedModel under 1/ of a model.tar.gz, extracted into `into`."""
    import tensorflow as tf

    # The "data" filter (no absolute paths, links out of `into` or devices) where this Python has it
    # (3.11.4+; the local training image has an older 3.11).
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(archive) as tar:
        tar.extractall(into, **safe)
    return tf.saved_model.load(str(into / "1"))


def smoke_ok(model: Any, user_id: str, k: int) -> bool:
    """Whether the serving signature answers one request with k item ids (what TF Serving would call)."""
    import tensorflow as tf

    answer = model.signatures["serving_default"](user_id=tf.constant([user_id]), k=tf.constant(k))
    return int(tf.size(answer["item_ids"])) == k


def pair_scorer(model: Any, test: TestSet) -> Any:
    """The protocol's `pairs(users, items)` through the model's `score` signature, on raw ids."""
    import tensorflow as tf

    score = model.signatures["score"]

    def pairs(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        user_ids = tf.constant(test.users.ids[users].astype(str))
        item_ids = tf.constant(test.items.ids[items].astype(str))
        return score(user_id=user_ids, item_id=item_ids)["score"].numpy()

    return pairs


def score_model(archive: Path | None, test: TestSet, k: int) -> dict[str, Any] | None:
    """A model's report entry: loaded, smoke_ok, test HR@k and NDCG@k (or why it could not be scored)."""
    if archive is None:
        return None
    entry: dict[str, Any] = {"loaded": False, "smoke_ok": False, "error": ""}
    entry.update({f"test_ndcg_at_{k}": FAILED_SCORE, f"test_hr_at_{k}": FAILED_SCORE})
    with tempfile.TemporaryDirectory(prefix="ncf-evaluate-") as tmp:
        try:
            model = load_saved_model(archive, Path(tmp))
            entry["loaded"] = True
            entry["smoke_ok"] = smoke_ok(model, str(test.users.ids[0]), k)
            ranks = sampled_ranks(test.heldout, pair_scorer(model, test))
        except Exception as exc:  # any failure of a model is a finding of the report, not of this script
            entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            return entry
    entry.update({f"test_ndcg_at_{k}": ndcg(ranks, k), f"test_hr_at_{k}": hit_rate(ranks, k)})
    return entry


def gate(candidate: dict[str, Any], current: dict[str, Any] | None, k: int, margin: float) -> dict[str, Any]:
    """The gate's inputs and verdict: candidate NDCG@k >= current - margin, and the candidate answered."""
    metric = f"test_ndcg_at_{k}"
    current_score = None if current is None else current[metric]
    threshold = 0.0 if current_score is None else current_score - margin
    ok = bool(candidate["loaded"] and candidate["smoke_ok"])
    passed = ok and candidate[metric] >= threshold
    current_text = "none approved" if current_score is None else f"{current_score:.4f}"
    summary = (
        f"candidate {metric} {candidate[metric]:.4f}, current {current_text}, margin {margin:g}, "
        f"threshold {threshold:.4f}, smoke request {'answered' if ok else 'FAILED'}: "
        + ("passed" if passed else "refused")
    )
    return {
        "metric": metric,
        "candidate": candidate[metric],
        "current": current_score,
        "margin": margin,
        "threshold": threshold,
        "smoke_ok": ok,
        "passed": passed,
        "summary": summary,
    }


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """The whole report, written to `<output>/evaluation.json`."""
    test = read_test_set(args.test)
    candidate_archive = find_archive(args.candidate)
    if candidate_archive is None:
        raise NcfError(f"--candidate {args.candidate}: no model.tar.gz there")
    candidate = score_model(candidate_archive, test, args.top_k)
    with tempfile.TemporaryDirectory(prefix="ncf-current-") as scratch:
        current = score_model(current_archive(args.current, Path(scratch)), test, args.top_k)
    report = {
        "candidate": candidate,
        "current": current,
        "gate": gate(candidate, current, args.top_k, args.margin),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The folders (SageMaker Processing's defaults under /opt/ml/processing), the cut-off and the margin."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidate", type=Path, default=PROCESSING / "candidate")
    parser.add_argument("--current", type=Path, default=PROCESSING / "current")
    parser.add_argument("--test", type=Path, default=PROCESSING / "test")
    parser.add_argument("--output", type=Path, default=PROCESSING / "evaluation")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--margin", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.margin < 0:
        parser.error("--top-k must be >= 1 and --margin >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate and print the gate's line (the pipeline's log shows both scores)."""
    try:
        report = evaluate(parse_args(argv))
    except NcfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for role in ("candidate", "current"):
        if report[role] and report[role]["error"]:
            print(f"{role}: could not be scored: {report[role]['error']}")
    print(f"gate: {report['gate']['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
