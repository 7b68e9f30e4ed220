"""The CLI end to end against a moto_server: upload -> train --wait -> deploy -> invoke -> deploy again
(blue/green) -> batch -> tune -> status -> teardown.

Each step asserts the requests the CLI and the SageMaker SDK really sent (recorded from botocore's
events), not only that nothing raised. moto gaps are shimmed in tests/deploy_fixtures.py: moto has
no UpdateEndpoint (stubbed for that one call), writes no model artifact (the test puts one where
the training job's ModelArtifacts say), and names a tuning job's best trial "FakeTrainingJobName"
(the test creates that trial job).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from deploy_helpers import BUCKET, PROJECT, REGION, ROLE_ARN, Recorder, write_model_archive
from ncf.reporting import metric_definitions

from deploy.aws import PROJECT_TAG
from deploy.cli import main
from deploy.packaging import INFERENCE_DIR, TRAINING_DIR

pytest_plugins = ["deploy_fixtures"]

TRAINING_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.21-cpu-py312"
SERVING_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.20-cpu-py312"
ENDPOINT = f"{PROJECT}-endpoint"
TAGS = [{"Key": PROJECT_TAG, "Value": PROJECT}, {"Key": "team", "Value": "recsys"}]


class Cli:
    """Runs `python -m deploy ...` in-process with the recording session factory."""

    def __init__(self, recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
        self.recorder, self.capsys = recorder, capsys

    def __call__(self, *argv: str, expect: int = 0) -> str:
        with self.recorder.recording():
            status = main(list(argv), session_factory=self.recorder)
        out, err = self.capsys.readouterr()
        assert status == expect, f"exit {status}\nstdout: {out}\nstderr: {err}"
        return out


def s3_read(uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()


def archive_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


@dataclass
class Flow:
    """The state the steps of one flow hand on: clients, and what earlier steps created."""

    cli: Cli
    recorder: Recorder
    moto_server: str
    tmp_path: Path
    s3: Any = field(default_factory=lambda: boto3.client("s3", region_name=REGION))
    sagemaker: Any = field(default_factory=lambda: boto3.client("sagemaker", region_name=REGION))
    job: str = ""
    code_uri: str = ""
    model_data: str = ""
    first: tuple[str, str] = ("", "")
    endpoint_config: str = ""
    transform_job: str = ""
    tuning_job: str = ""


def test_full_flow(moto_server: str, recorder: Recorder, capsys, tiny_channels: Path, tmp_path: Path) -> None:
    """One account, every command in the order a user runs them; each step asserts the requests sent."""
    flow = Flow(Cli(recorder, capsys), recorder, moto_server, tmp_path)
    upload_step(flow, tiny_channels)
    train_step(flow)
    deploy_step(flow)
    invoke_step(flow)
    update_step(flow)
    batch_step(flow)
    tune_step(flow)
    status_step(flow)
    teardown_step(flow)


def upload_step(flow: Flow, tiny_channels: Path) -> None:
    """Every file with its checksum; a second upload changes nothing."""
    files = {p.relative_to(tiny_channels).as_posix(): p for p in tiny_channels.rglob("*") if p.is_file()}
    assert {"train/part-00000.csv", "validation/part-00000.csv", "test/part-00000.csv"} <= set(files)
    out = flow.cli("upload", "--prepared", str(tiny_channels))
    assert out.strip() == f"s3://{BUCKET}/ncf/data/default/: {len(files)} uploaded, 0 unchanged, 0 removed"
    for relative, local in files.items():
        head = flow.s3.head_object(Bucket=BUCKET, Key=f"ncf/data/default/{relative}")
        assert head["Metadata"]["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
    again = flow.cli("upload", "--prepared", str(tiny_channels))
    assert f"0 uploaded, {len(files)} unchanged, 0 removed" in again
    assert len(flow.recorder.requests("PutObject")) == len(files)  # small files: one PutObject each


def train_step(flow: Flow) -> None:
    """A spot job with checkpoints running the uploaded bundle. SageMaker would then upload the
    artifact (moto does not): an old one without code/ stands in."""
    out = flow.cli("train", "--wait")
    request = flow.recorder.only("CreateTrainingJob")
    job = request["TrainingJobName"]
    assert job.startswith(f"{PROJECT}-train-")
    algorithm = request["AlgorithmSpecification"]
    assert algorithm["TrainingImage"] == TRAINING_IMAGE
    assert algorithm["MetricDefinitions"] == metric_definitions(10)
    assert request["HyperParameters"] == {"epochs": "3", "mlp_layers": "64,32,16,8", "learning_rate": "0.002"}
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
    }
    for channel in ("train", "validation", "test"):
        assert channels[channel] == f"s3://{BUCKET}/ncf/data/default/{channel}/"
    assert channels["code"].startswith(f"s3://{BUCKET}/ncf/code/")
    bundle = archive_members(s3_read(channels["code"]))
    assert {"train.py", "ncf/reporting.py", "inference/inference.py"} <= set(bundle)
    assert bundle["inference/inference.py"] == (INFERENCE_DIR / "inference.py").read_bytes()
    drivers = channels["sm_drivers"].rstrip("/")
    source_code = json.loads(s3_read(f"{drivers}/sourcecode.json"))
    assert source_code["entry_script"] == "train.py"
    assert source_code["source_dir"] == channels["code"]
    assert source_code["requirements"] == "requirements.txt"  # the driver pip-installs it first
    assert bundle["requirements.txt"] == (TRAINING_DIR / "requirements.txt").read_bytes()
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert request["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/ncf/{PROJECT}-train/{job}/checkpoints",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.m5.xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 30,
    }
    assert request["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/ncf/models"
    assert request["RoleArn"] == ROLE_ARN
    assert request["Tags"] == TAGS
    model_uri = f"s3://{BUCKET}/ncf/models/{job}/output/model.tar.gz"
    assert f"model: {model_uri}" in out and "status: Completed" in out

    model_key = model_uri.removeprefix(f"s3://{BUCKET}/")
    archive = write_model_archive(flow.tmp_path / "model.tar.gz", with_code=False)
    flow.s3.upload_file(str(archive), BUCKET, model_key)
    flow.job, flow.code_uri = job, channels["code"]


def deploy_step(flow: Flow) -> None:
    """A repackaged model, data capture and autoscaling."""
    flow.cli("deploy", "--autoscaling", "--data-capture", "--max-instances", "3")
    model = flow.recorder.only("CreateModel")
    container = model["PrimaryContainer"]
    assert container["Image"] == SERVING_IMAGE
    assert container["ModelDataUrl"].startswith(f"s3://{BUCKET}/ncf/models/repackaged/")
    served = archive_members(s3_read(container["ModelDataUrl"]))
    assert served["code/inference.py"] == (INFERENCE_DIR / "inference.py").read_bytes()
    assert "1/saved_model.pb" in served
    assert model["ExecutionRoleArn"] == ROLE_ARN and model["Tags"] == TAGS
    config = flow.recorder.only("CreateEndpointConfig")
    assert config["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": model["ModelName"],
            "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large",
            "InitialVariantWeight": 1.0,
        }
    ]
    assert config["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 20,
        "DestinationS3Uri": f"s3://{BUCKET}/ncf/data-capture/{ENDPOINT}",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json", "application/jsonlines"]},
    }
    endpoint = flow.recorder.only("CreateEndpoint")
    assert endpoint == {
        "EndpointName": ENDPOINT,
        "EndpointConfigName": config["EndpointConfigName"],
        "Tags": TAGS,
    }
    target = flow.recorder.only("RegisterScalableTarget")
    assert target == {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{ENDPOINT}/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": 1,
        "MaxCapacity": 3,
    }
    policy = flow.recorder.only("PutScalingPolicy")["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert policy["TargetValue"] == 300.0
    flow.model_data = container["ModelDataUrl"]
    flow.first = (config["EndpointConfigName"], model["ModelName"])


def invoke_step(flow: Flow) -> None:
    """deploy/invoke.py through the CLI; moto answers what is queued."""
    answer = {
        "predictions": [{"user_id": "u1", "items": [{"item_id": "item-3", "score": 0.9}], "fallback": False}]
    }
    queued = json.dumps(
        {"results": [{"Body": json.dumps(answer), "ContentType": "application/json"}]}
    ).encode()
    urllib.request.urlopen(
        urllib.request.Request(
            f"{flow.moto_server}/moto-api/static/sagemaker/endpoint-results",
            data=queued,
            headers={"Content-Type": "application/json"},
        )
    ).close()
    out = flow.cli("invoke", "--user", "u1", "--k", "1", "--format", "json")
    assert json.loads(out) == answer


def update_step(flow: Flow) -> None:
    """A second deploy is a blue/green update of the live endpoint."""
    first_config, first_model = flow.first
    flow.recorder.calls.clear()
    out = flow.cli("deploy", "--model-data", flow.model_data)
    operations = [c.operation for c in flow.recorder.calls]
    update = flow.recorder.only("UpdateEndpoint")  # answered by the UpdateEndpoint stub (moto lacks it)
    assert update["EndpointName"] == ENDPOINT
    assert update["DeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 1},
            "TerminationWaitInSeconds": 60,
        }
    }
    # a model-only update: the blue fleet keeps its autoscaling until the green fleet serves
    assert operations.index("UpdateEndpoint") < operations.index("DeregisterScalableTarget")
    assert "CreateEndpoint" not in operations and "DeleteEndpoint" not in operations
    assert "RegisterScalableTarget" not in operations  # autoscaling is off in this deploy
    new_config = flow.recorder.only("CreateEndpointConfig")["EndpointConfigName"]
    assert flow.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == new_config
    assert f"removed the previous {first_config}, {first_model}" in out
    for gone in (
        lambda: flow.sagemaker.describe_endpoint_config(EndpointConfigName=first_config),
        lambda: flow.sagemaker.describe_model(ModelName=first_model),
    ):
        with pytest.raises(flow.sagemaker.exceptions.ClientError):
            gone()
    flow.endpoint_config = new_config


def batch_step(flow: Flow) -> None:
    """Batch Transform over a local JSON Lines file."""
    users = flow.tmp_path / "users.jsonl"
    users.write_text('{"user_id": "u1", "k": 5}\n{"user_id": "u2"}\n')
    out = flow.cli("batch", "--input", str(users), "--model-data", flow.model_data, "--wait")
    transform = flow.recorder.only("CreateTransformJob")
    name = transform["TransformJobName"]
    assert transform["TransformInput"] == {
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": f"s3://{BUCKET}/ncf/batch/input/{name}/users.jsonl",
            }
        },
        "ContentType": "application/jsonlines",
        "SplitType": "Line",
    }
    assert transform["TransformOutput"] == {
        "S3OutputPath": f"s3://{BUCKET}/ncf/batch/output/{name}/",
        "Accept": "application/jsonlines",
        "AssembleWith": "Line",
    }
    assert transform["BatchStrategy"] == "MultiRecord" and transform["MaxPayloadInMB"] == 6
    # A 6 MB request holds ~200k short lines: the container must accept it and have time to answer it.
    assert transform["Environment"] == {
        "NCF_MAX_BODY_BYTES": str(6 * 1024 * 1024),
        "SAGEMAKER_NGINX_PROXY_READ_TIMEOUT_SECONDS": "3600",
    }
    assert transform["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 3600}
    assert transform["ModelName"] == flow.recorder.requests("CreateModel")[-1]["ModelName"]
    assert transform["Tags"] == TAGS
    assert s3_read(f"s3://{BUCKET}/ncf/batch/input/{name}/users.jsonl") == users.read_bytes()
    assert f"output: s3://{BUCKET}/ncf/batch/output/{name}/" in out
    flow.transform_job = name


def tune_step(flow: Flow) -> None:
    """A tuning job; moto names its best trial FakeTrainingJobName, created here."""
    flow.sagemaker.create_training_job(  # the trial moto reports as best (it invents the name)
        TrainingJobName="FakeTrainingJobName",
        AlgorithmSpecification={"TrainingImage": TRAINING_IMAGE, "TrainingInputMode": "File"},
        RoleArn=ROLE_ARN,
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/ncf/models"},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    out = flow.cli("tune", "--wait")
    tuning = flow.recorder.only("CreateHyperParameterTuningJob")
    settings = tuning["HyperParameterTuningJobConfig"]
    assert settings["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": "validation_ndcg_at_10",
    }
    assert settings["Strategy"] == "Bayesian"
    assert settings["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 12, "MaxParallelTrainingJobs": 2}
    ranges = settings["ParameterRanges"]
    assert {r["Name"] for r in ranges["CategoricalParameterRanges"]} == {
        "factors",
        "mlp_layers",
        "batch_size",
    }
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "learning_rate", "MinValue": "0.0003", "MaxValue": "0.01", "ScalingType": "Logarithmic"}
    ]
    assert ranges["IntegerParameterRanges"] == [
        {"Name": "num_neg", "MinValue": "2", "MaxValue": "10", "ScalingType": "Auto"}
    ]
    definition = tuning["TrainingJobDefinition"]
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions(10)
    assert definition["StaticHyperParameters"] == {
        "epochs": "3",
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": flow.code_uri,
    }
    assert "CheckpointConfig" not in definition  # trials must not share checkpoints
    assert definition["EnableManagedSpotTraining"] is True
    assert {c["ChannelName"] for c in definition["InputDataConfig"]} >= {"train", "validation", "test"}
    assert tuning["Tags"] == TAGS
    assert "best training job: FakeTrainingJobName" in out
    flow.tuning_job = tuning["HyperParameterTuningJobName"]


def status_step(flow: Flow) -> None:
    """status lists what the project made, and nothing untagged."""
    listed = json.loads(flow.cli("status", "--json"))["resources"]
    kinds = {(r["kind"], r["name"]) for r in listed}
    assert ("endpoint", ENDPOINT) in kinds and ("endpoint-config", flow.endpoint_config) in kinds
    assert ("training-job", flow.job) in kinds and ("transform-job", flow.transform_job) in kinds
    assert ("tuning-job", flow.tuning_job) in kinds
    assert ("training-job", "FakeTrainingJobName") not in kinds  # untagged: not ours


def teardown_step(flow: Flow) -> None:
    """Only tagged resources are deleted, and a second teardown finds nothing."""
    flow.sagemaker.create_model(  # someone else's model in the same account
        ModelName=f"{PROJECT}-model-foreign",
        ExecutionRoleArn=ROLE_ARN,
        PrimaryContainer={"Image": SERVING_IMAGE},
    )
    out = flow.cli("teardown")
    assert f"endpoint {ENDPOINT}: deleted" in out
    assert f"endpoint-config {flow.endpoint_config}: deleted" in out
    assert "failed" not in out
    assert flow.sagemaker.list_endpoints()["Endpoints"] == []
    assert [m["ModelName"] for m in flow.sagemaker.list_models()["Models"]] == [f"{PROJECT}-model-foreign"]
    assert "nothing to delete" in flow.cli("teardown")
    remaining = {r["kind"] for r in json.loads(flow.cli("status", "--json"))["resources"]}
    assert remaining == {"training-job", "tuning-job", "transform-job"}
