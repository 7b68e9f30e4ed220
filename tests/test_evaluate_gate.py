"""training/evaluate.py: the retraining gate's report, on the session's tiny trained model."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import evaluate
import pytest

pytest_plugins = ["deploy_fixtures"]


def folder_with(archive: Path, folder: Path) -> Path:
    """A Processing input folder holding `archive` as model.tar.gz."""
    folder.mkdir(parents=True)
    (folder / "model.tar.gz").write_bytes(archive.read_bytes())
    return folder


def run(tmp_path: Path, candidate: Path, current: Path | None, test: Path, margin: float = 0.0) -> dict:
    args = ["--candidate", str(candidate), "--test", str(test), "--output", str(tmp_path / "out")]
    args += ["--margin", str(margin), "--top-k", "10"]
    if current is not None:
        args += ["--current", str(current)]
    assert evaluate.main(args) == 0
    return json.loads((tmp_path / "out" / evaluate.REPORT).read_text())


def test_without_a_current_model_a_working_candidate_passes(
    trained_model: Path, tiny_channels: Path, tmp_path: Path
) -> None:
    candidate = folder_with(trained_model.parent / "model.tar.gz", tmp_path / "candidate")
    report = run(tmp_path, candidate, tmp_path / "no-current", tiny_channels / "test")
    assert report["current"] is None
    assert report["candidate"]["loaded"] and report["candidate"]["smoke_ok"]
    assert 0.0 < report["candidate"]["test_ndcg_at_10"] <= 1.0
    score = report["candidate"]["test_ndcg_at_10"]
    assert report["gate"] == {
        "metric": "test_ndcg_at_10",
        "candidate": score,
        "current": None,
        "margin": 0.0,
        "threshold": 0.0,
        "smoke_ok": True,
        "passed": True,
        "summary": f"candidate test_ndcg_at_10 {score:.4f}, current none approved, margin 0,"
        " threshold 0.0000, smoke request answered: passed",
    }


def test_a_folder_with_only_the_marker_means_no_current_model(tmp_path: Path) -> None:
    (tmp_path / evaluate.NO_MODEL_MARKER).write_text("none approved")
    assert evaluate.find_archive(tmp_path) is None
    (tmp_path / "other.txt").write_text("not a model")
    with pytest.raises(evaluate.NcfError, match=r"no model\.tar\.gz"):
        evaluate.find_archive(tmp_path)


def test_both_models_are_scored_on_the_same_candidates(
    trained_model: Path, tiny_channels: Path, tmp_path: Path
) -> None:
    archive = trained_model.parent / "model.tar.gz"
    candidate = folder_with(archive, tmp_path / "candidate")
    current = folder_with(archive, tmp_path / "current")
    report = run(tmp_path, candidate, current, tiny_channels / "test", margin=0.05)
    assert report["candidate"]["test_ndcg_at_10"] == report["current"]["test_ndcg_at_10"]
    assert report["gate"]["threshold"] == pytest.approx(report["current"]["test_ndcg_at_10"] - 0.05)
    assert report["gate"]["passed"] is True


def test_a_candidate_that_does_not_load_is_refused_with_the_reason(
    trained_model: Path, tiny_channels: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken" / "model.tar.gz"
    broken.parent.mkdir()
    with tarfile.open(broken, "w:gz") as tar:
        tar.add(tiny_channels / "test", arcname="1")  # a folder that is no SavedModel
    current = folder_with(trained_model.parent / "model.tar.gz", tmp_path / "current")
    report = run(tmp_path, broken.parent, current, tiny_channels / "test")
    assert report["candidate"]["loaded"] is False
    assert report["candidate"]["error"]
    assert report["gate"]["candidate"] == evaluate.FAILED_SCORE
    assert report["gate"]["passed"] is False


@pytest.mark.parametrize(
    ("candidate", "current", "margin", "passed"),
    [(0.30, 0.31, 0.02, True), (0.30, 0.35, 0.02, False), (0.30, 0.30, 0.0, True)],
)
def test_the_gate_allows_the_margin_and_no_more(
    candidate: float, current: float, margin: float, passed: bool
) -> None:
    entry = {"loaded": True, "smoke_ok": True, "test_ndcg_at_10": candidate}
    verdict = evaluate.gate(entry, {"test_ndcg_at_10": current}, 10, margin)
    assert verdict["passed"] is passed
    assert f"candidate test_ndcg_at_10 {candidate:.4f}, current {current:.4f}" in verdict["summary"]
    assert verdict["summary"].endswith("passed" if passed else "refused")
    assert verdict["threshold"] == pytest.approx(current - margin)


def test_a_candidate_that_does_not_answer_fails_whatever_its_score() -> None:
    entry = {"loaded": True, "smoke_ok": False, "test_ndcg_at_10": 0.9}
    assert evaluate.gate(entry, None, 10, 0.0)["passed"] is False


def test_a_missing_candidate_is_one_error_line(tmp_path: Path, tiny_channels: Path, capsys) -> None:
    args = ["--candidate", str(tmp_path), "--test", str(tiny_channels / "test"), "--output", str(tmp_path)]
    assert evaluate.main(args) == 2
    assert capsys.readouterr().err.startswith("error: --candidate")


def test_a_run_nobody_resolved_current_model_for_compares_with_the_newest_approved(
    moto_aws: None, trained_model: Path, tiny_channels: Path, tmp_path: Path
) -> None:
    """A scheduled run gets CurrentModel's default, the LATEST_APPROVED marker: the Evaluate step looks
    the group's newest Approved version up itself (an older approved one and a rejected one are ignored)."""
    import boto3
    from deploy_helpers import BUCKET, REGION

    s3, sagemaker = boto3.client("s3", region_name=REGION), boto3.client("sagemaker", region_name=REGION)
    archive = trained_model.parent / "model.tar.gz"
    s3.upload_file(str(archive), BUCKET, "ncf/models/newest/model.tar.gz")
    sagemaker.create_model_package_group(ModelPackageGroupName="ncftest-models")
    for data, status in (("old", "Approved"), ("newest", "Approved"), ("rejected", "Rejected")):
        sagemaker.create_model_package(
            ModelPackageGroupName="ncftest-models",
            ModelApprovalStatus=status,
            InferenceSpecification={
                "Containers": [
                    {"Image": "image", "ModelDataUrl": f"s3://{BUCKET}/ncf/models/{data}/model.tar.gz"}
                ],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
    current = tmp_path / "current"
    current.mkdir()
    (current / evaluate.LATEST_APPROVED_MARKER).write_text(
        json.dumps({"group": "ncftest-models", "region": REGION})
    )
    candidate = folder_with(archive, tmp_path / "candidate")
    report = run(tmp_path, candidate, current, tiny_channels / "test")
    assert report["current"]["loaded"], report["current"]
    assert report["current"]["test_ndcg_at_10"] == report["candidate"]["test_ndcg_at_10"]

    sagemaker.create_model_package_group(ModelPackageGroupName="ncftest-empty")
    (current / evaluate.LATEST_APPROVED_MARKER).write_text(
        json.dumps({"group": "ncftest-empty", "region": REGION})
    )
    assert run(tmp_path, candidate, current, tiny_channels / "test")["current"] is None
