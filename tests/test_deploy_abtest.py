"""A/B tests on the endpoint against in-process moto: `deploy --candidate`, `status`, `promote`.

moto lacks UpdateEndpoint (answered by deploy_helpers.stub_update_endpoint); it has
UpdateEndpointWeightsAndCapacities. The tests assert on the requests the CLI sent.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from deploy_helpers import BUCKET, PROJECT, REGION, Recorder, write_model_archive

from deploy.cli import main

pytest_plugins = ["deploy_fixtures"]

ENDPOINT = f"{PROJECT}-endpoint"
CURRENT = f"s3://{BUCKET}/ncf/models/current/output/model.tar.gz"
CHALLENGER = f"s3://{BUCKET}/ncf/models/challenger/output/model.tar.gz"


class Cli:
    def __init__(self, recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
        self.recorder, self.capsys = recorder, capsys

    def __call__(self, *argv: str, status: int = 0) -> str:
        with self.recorder.recording():
            code = main(list(argv), session_factory=self.recorder)
        out, err = self.capsys.readouterr()
        assert code == status, f"exit {code}\nstdout: {out}\nstderr: {err}"
        return out if status == 0 else err


@pytest.fixture
def cli(moto_aws: None, recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    s3 = boto3.client("s3", region_name=REGION)
    for uri in (CURRENT, CHALLENGER):
        path = write_model_archive(tmp_path / "model.tar.gz", with_code=True)
        s3.upload_file(str(path), BUCKET, uri.removeprefix(f"s3://{BUCKET}/"))
    return Cli(recorder, capsys)


@pytest.fixture
def with_candidate(cli: Cli) -> dict:
    """The endpoint serves CURRENT, then CHALLENGER joins it with 20 % of the traffic."""
    cli("deploy", "--model-data", CURRENT)
    first_model = cli.recorder.only("CreateModel")["ModelName"]
    cli.recorder.calls.clear()
    report = json.loads(cli("deploy", "--candidate", CHALLENGER, "--candidate-share", "0.2", "--json"))
    return {"first_model": first_model, "report": report}


def variants_of(config: dict) -> list[tuple[str, str, float]]:
    return [
        (v["VariantName"], v["ModelName"], v["InitialVariantWeight"]) for v in config["ProductionVariants"]
    ]


def test_the_candidate_serves_next_to_the_current_model_with_data_capture(
    cli: Cli, with_candidate: dict
) -> None:
    config = cli.recorder.only("CreateEndpointConfig")
    candidate_model = cli.recorder.only("CreateModel")["ModelName"]
    assert cli.recorder.only("CreateModel")["PrimaryContainer"]["ModelDataUrl"] == CHALLENGER
    assert variants_of(config) == [
        ("AllTraffic", with_candidate["first_model"], 0.8),
        ("Candidate", candidate_model, 0.2),
    ]
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    assert capture["DestinationS3Uri"] == f"s3://{BUCKET}/ncf/data-capture/{ENDPOINT}"
    assert cli.recorder.only("UpdateEndpoint")["EndpointConfigName"] == config["EndpointConfigName"]
    # the old config goes, the model both configs serve stays
    assert [r["ModelName"] for r in cli.recorder.requests("DeleteModel")] == []
    assert len(cli.recorder.requests("DeleteEndpointConfig")) == 1
    assert with_candidate["report"]["action"] == "candidate added"


def test_status_shows_the_variants_and_their_weights(cli: Cli, with_candidate: dict) -> None:
    out = cli("status")
    assert "variants AllTraffic 80% (1 instance), Candidate 20% (1 instance)" in out


def test_promote_shifts_all_traffic_then_keeps_only_the_winner(cli: Cli, with_candidate: dict) -> None:
    candidate_model = cli.recorder.only("CreateModel")["ModelName"]
    cli.recorder.calls.clear()
    out = cli("promote", "--variant", "Candidate")
    weights = cli.recorder.only("UpdateEndpointWeightsAndCapacities")["DesiredWeightsAndCapacities"]
    assert sorted((w["VariantName"], w["DesiredWeight"]) for w in weights) == [
        ("AllTraffic", 0.0),
        ("Candidate", 1.0),
    ]
    operations = [c.operation for c in cli.recorder.calls]
    assert operations.index("UpdateEndpointWeightsAndCapacities") < operations.index("UpdateEndpoint")
    config = cli.recorder.only("CreateEndpointConfig")
    assert variants_of(config) == [("AllTraffic", candidate_model, 1.0)]
    assert [r["ModelName"] for r in cli.recorder.requests("DeleteModel")] == [with_candidate["first_model"]]
    assert "all traffic on Candidate" in out
    endpoint = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == config["EndpointConfigName"]


def test_promote_names_the_variants_when_the_one_asked_for_is_not_there(
    cli: Cli, with_candidate: dict
) -> None:
    err = cli("promote", "--variant", "Nope", status=2)
    assert err.strip() == (
        f"error: endpoint {ENDPOINT} serves AllTraffic, Candidate: --variant must name one of two or more "
        "variants, got 'Nope'"
    )
    assert not cli.recorder.requests("UpdateEndpointWeightsAndCapacities")


def test_a_second_candidate_waits_for_a_promotion(cli: Cli, with_candidate: dict) -> None:
    err = cli("deploy", "--candidate", CHALLENGER, status=2)
    assert "already serves AllTraffic, Candidate: `deploy promote` one first" in err


def test_a_candidate_needs_a_serving_endpoint(cli: Cli) -> None:
    err = cli("deploy", "--candidate", CHALLENGER, status=2)
    assert err.strip() == f"error: no endpoint {ENDPOINT}: deploy a model first, then a candidate next to it"
    assert not cli.recorder.requests("CreateModel")


@pytest.mark.parametrize("share", ["0", "1", "1.5"])
def test_the_candidate_share_is_a_fraction(cli: Cli, share: str) -> None:
    err = cli("deploy", "--candidate", CHALLENGER, "--candidate-share", share, status=2)
    assert "candidate_share must be between 0 and 1 (exclusive)" in err
