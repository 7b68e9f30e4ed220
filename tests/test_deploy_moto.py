"""deploy/ against in-process moto: failure paths, ownership by tag, idempotent teardown, upload sync."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from conftest import make_interactions, prepare_channels
from deploy_helpers import BUCKET, PROJECT, REGION, ROLE_ARN, Recorder, sagemaker_backend, write_model_archive
from ncf.errors import NcfError

from deploy import inventory
from deploy.config import load_settings
from deploy.training import latest_training_job, started_job

pytest_plugins = ["deploy_fixtures"]

ENDPOINT = f"{PROJECT}-endpoint"
MODEL_URI = f"s3://{BUCKET}/ncf/models/job/output/model.tar.gz"


@pytest.fixture
def model_archive(moto_aws: None, tmp_path: Path) -> str:
    """A model.tar.gz with code/inference.py in the project's bucket."""
    path = write_model_archive(tmp_path / "model.tar.gz", with_code=True)
    boto3.client("s3", region_name=REGION).upload_file(
        str(path), BUCKET, MODEL_URI.removeprefix(f"s3://{BUCKET}/")
    )
    return MODEL_URI


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ")
    return lines[-1]


def test_failed_training_job_exits_1_with_its_failure_reason(
    cli, recorder: Recorder, tiny_channels: Path
) -> None:
    def fail(parsed: dict, **_: object) -> None:  # SageMaker would report this after the job ran
        job = sagemaker_backend().training_jobs[recorder.requests("CreateTrainingJob")[-1]["TrainingJobName"]]
        job.training_job_status = "Failed"
        job.failure_reason = "AlgorithmError: ExecuteUserScriptError: train.py exited with 2"

    recorder.hooks.append(("after-call.sagemaker.CreateTrainingJob", fail))
    assert cli("upload", "--prepared", str(tiny_channels))[0] == 0
    status, out, err = cli(
        "train", "--wait", "--instance-count", "2", "--instance-type", "ml.g5.xlarge", "--no-spot"
    )
    assert status == 1
    request = recorder.only("CreateTrainingJob")
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.g5.xlarge",
        "InstanceCount": 2,
        "VolumeSizeInGB": 30,
    }
    assert request["AlgorithmSpecification"]["TrainingImage"].endswith("tensorflow-training:2.21-gpu-py312")
    assert "EnableManagedSpotTraining" not in request or request["EnableManagedSpotTraining"] is False
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    job = request["TrainingJobName"]
    assert one_error_line(err) == (
        f"error: training job {job} failed: AlgorithmError: ExecuteUserScriptError: train.py exited with 2"
    )
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--set", "role_arn="], "error: no role_arn configured: set role_arn in the config file"),
        (["train", "--role-arn", "my-role"], "error: setting role_arn: must be between 20 and 2048"),
        (["train", "--bucket", "no-such-bucket"], "error: S3 bucket 'no-such-bucket' does not exist"),
        (["deploy", "--model-data", MODEL_URI, "--bucket", "no-such-bucket"], "does not exist"),
        (["train", "--set", "bucket="], "error: no bucket configured"),
        (["train"], "error: no data under s3://ncf-test-bucket/ncf/data/default/train/"),
        (["deploy", "--serverless", "--data-capture"], "serverless endpoints do not support data capture"),
        (["deploy", "--training-job", "nope"], "error: training job 'nope' does not exist"),
        (["batch", "--model-data", MODEL_URI], "error: no batch input: pass --input"),
        (
            ["deploy", "--instance-count", "0"],
            "error: setting deploy_instance_count: must be at least 1, got 0",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(cli, model_archive: str, argv: list[str], message: str) -> None:
    status, out, err = cli(*argv)
    assert status == 2, err
    assert message in one_error_line(err)
    assert out == ""


def test_endpoint_creation_failure_exits_1_and_teardown_cleans_up(
    cli, recorder: Recorder, model_archive: str
) -> None:
    def fail(parsed: dict, **_: object) -> None:
        endpoint = sagemaker_backend().endpoints[ENDPOINT]
        endpoint.endpoint_status = "Failed"
        endpoint.failure_reason = (
            "The primary container for production variant AllTraffic did not pass the ping health check."
        )

    recorder.hooks.append(("after-call.sagemaker.CreateEndpoint", fail))
    status, _, err = cli("deploy", "--model-data", model_archive)
    assert status == 1
    line = one_error_line(err)
    assert line.startswith(f"error: endpoint {ENDPOINT} failed: The primary container for production variant")
    assert "python -m deploy teardown" in line

    status, _, err = cli("deploy", "--model-data", model_archive)  # a Failed endpoint is not updated
    assert status == 2 and "is Failed" in one_error_line(err)

    status, out, _ = cli("teardown")
    assert status == 0
    assert f"endpoint {ENDPOINT}: deleted" in out and out.count(": deleted") == 3


def test_teardown_of_resources_already_deleted(cli, model_archive: str) -> None:
    assert cli("deploy", "--model-data", model_archive)[0] == 0
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    found = inventory.find(sagemaker, PROJECT, inventory.HOSTING)
    assert {r.kind for r in found} == {"endpoint", "endpoint-config", "model"}
    sagemaker.delete_endpoint(EndpointName=ENDPOINT)  # someone got there first
    sagemaker.delete_model(ModelName=next(r.name for r in found if r.kind == "model"))

    outcomes = inventory.delete(sagemaker, boto3.client("application-autoscaling", region_name=REGION), found)
    assert [(o.resource.kind, o.result) for o in outcomes] == [
        ("endpoint", "already gone"),
        ("endpoint-config", "deleted"),
        ("model", "already gone"),
    ]
    status, out, _ = cli("teardown")
    assert status == 0 and out.startswith("nothing to delete")


def test_teardown_removes_autoscaling_and_leaves_other_projects_alone(cli, model_archive: str) -> None:
    assert cli("deploy", "--model-data", model_archive, "--autoscaling")[0] == 0
    assert (
        cli("deploy", "--model-data", model_archive, "--project", "other", "--endpoint-name", "other-ep")[0]
        == 0
    )
    scaling = boto3.client("application-autoscaling", region_name=REGION)
    assert len(scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]) == 1

    status, out, _ = cli("teardown", "--dry-run")
    assert status == 0 and f"would delete endpoint {ENDPOINT}" in out and "other" not in out
    assert cli("teardown")[0] == 0
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]] == ["other-ep"]


def test_deploy_refuses_an_endpoint_it_did_not_create(cli, model_archive: str) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model(ModelName="theirs", ExecutionRoleArn=ROLE_ARN, PrimaryContainer={"Image": "image"})
    sagemaker.create_endpoint_config(
        EndpointConfigName="theirs",
        ProductionVariants=[{"VariantName": "v", "ModelName": "theirs", "InstanceType": "ml.m5.large"}],
    )
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="theirs")
    status, _, err = cli("deploy", "--model-data", model_archive)
    assert status == 2
    assert "was not created by project 'ncftest'" in one_error_line(err)
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == "theirs"


def test_serverless_endpoint_config(cli, recorder: Recorder, model_archive: str) -> None:
    assert cli("deploy", "--model-data", model_archive, "--serverless", "--memory-mb", "3072")[0] == 0
    variant = recorder.only("CreateEndpointConfig")["ProductionVariants"][0]
    assert variant == {
        "VariantName": "AllTraffic",
        "ModelName": recorder.only("CreateModel")["ModelName"],
        "ServerlessConfig": {"MemorySizeInMB": 3072, "MaxConcurrency": 5},
    }
    assert recorder.only("CreateModel")["PrimaryContainer"]["ModelDataUrl"] == model_archive  # has code/
    assert recorder.requests("RegisterScalableTarget") == []


def test_upload_syncs_changed_and_stale_files(cli, tiny_channels: Path, tmp_path: Path) -> None:
    prepared = tmp_path / "prepared"
    for channel in ("train", "validation", "test"):
        (prepared / channel).mkdir(parents=True)
        (prepared / channel / "part-00000.csv").write_bytes(
            (tiny_channels / channel / "part-00000.csv").read_bytes()
        )
    (prepared / "train" / "part-00001.csv").write_text("user_id,item_id\nu1,i1\n")
    assert "3 uploaded" not in cli("upload", "--prepared", str(prepared))[1]

    (prepared / "train" / "part-00001.csv").unlink()  # fewer shards now: the old one must not be trained on
    (prepared / "test" / "part-00000.csv").write_text("user_id,item_id,label\nu1,i1,1\n")
    status, out, _ = cli("upload", "--prepared", str(prepared))
    assert status == 0 and out.strip().endswith("1 uploaded, 2 unchanged, 1 removed")
    keys = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET, Prefix="ncf/data/")[
        "Contents"
    ]
    assert sorted(k["Key"].removeprefix("ncf/data/default/") for k in keys) == [
        "test/part-00000.csv",
        "train/part-00000.csv",
        "validation/part-00000.csv",
    ]

    status, _, err = cli("upload", "--prepared", str(tmp_path / "missing"))
    assert status == 2 and "does not exist" in one_error_line(err)


def test_latest_training_job_is_the_newest_tagged_train_job(moto_aws: None) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    tagged = [{"Key": "ncf-sagemaker:project", "Value": PROJECT}]
    for name, tags in (
        (f"{PROJECT}-train-old", tagged),
        (f"{PROJECT}-train-new", tagged),
        (f"{PROJECT}-train-newest-untagged", []),
    ):
        sagemaker.create_training_job(
            TrainingJobName=name,
            AlgorithmSpecification={"TrainingImage": "image", "TrainingInputMode": "File"},
            RoleArn=ROLE_ARN,
            OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/ncf/models"},
            ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            StoppingCondition={"MaxRuntimeInSeconds": 60},
            Tags=tags,
        )
    jobs, now = sagemaker_backend().training_jobs, datetime.now(UTC)
    jobs[f"{PROJECT}-train-old"].creation_time = now - timedelta(hours=2)
    jobs[f"{PROJECT}-train-new"].creation_time = now - timedelta(minutes=1)
    assert latest_training_job(load_settings(), sagemaker) == f"{PROJECT}-train-new"


def test_the_started_job_is_found_through_the_sdks_public_output_data(moto_aws: None) -> None:
    """ModelTrainer.train returns nothing: the job's name comes from its documented `output_data` URI."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_training_job(
        TrainingJobName=f"{PROJECT}-train-2026",
        AlgorithmSpecification={"TrainingImage": "image", "TrainingInputMode": "File"},
        RoleArn=ROLE_ARN,
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/ncf/models"},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )

    class Trainer:  # only the public property started_job may use
        output_data = f"s3://{BUCKET}/ncf/models/{PROJECT}-train-2026/output/output.tar.gz"

    session = boto3.Session(region_name=REGION)
    job = started_job(Trainer(), f"s3://{BUCKET}/ncf/models/", session)
    assert job.training_job_name == f"{PROJECT}-train-2026"
    Trainer.output_data = f"s3://{BUCKET}/elsewhere/{PROJECT}-train-2026/output/output.tar.gz"
    with pytest.raises(NcfError, match="cannot read the training job's name"):
        started_job(Trainer(), f"s3://{BUCKET}/ncf/models", session)


def test_uploaded_item_features_become_the_items_channel(
    cli, recorder: Recorder, tiny_channels: Path, tmp_path: Path
) -> None:
    """prepare.py writes items/ when the data has item features; the job must receive it as a channel."""
    prepared = tmp_path / "prepared"
    shutil.copytree(tiny_channels, prepared)
    (prepared / "items").mkdir(exist_ok=True)
    (prepared / "items" / "part-00000.csv").write_text("item_id,genres\nitem-0,a|b\n")
    assert cli("upload", "--prepared", str(prepared))[0] == 0
    assert cli("train", "--no-wait")[0] == 0
    channels = {c["ChannelName"] for c in recorder.only("CreateTrainingJob")["InputDataConfig"]}
    assert {"train", "validation", "test", "items"} <= channels


def test_no_items_channel_without_item_features(cli, recorder: Recorder, tiny_channels: Path) -> None:
    assert cli("upload", "--prepared", str(tiny_channels))[0] == 0
    assert cli("train", "--no-wait")[0] == 0
    channels = {c["ChannelName"] for c in recorder.only("CreateTrainingJob")["InputDataConfig"]}
    assert "items" not in channels


@pytest.mark.parametrize(
    ("command", "job_request"),
    [
        ("train", "CreateTrainingJob"),
        # Every trial of the tuning job, as its TrainingJobDefinition (the SDK tuner rebuilds plain
        # channel URIs as FullyReplicated).
        ("tune", "CreateHyperParameterTuningJob"),
    ],
)
def test_a_sharded_train_channel_gives_every_instance_its_own_files(
    cli, recorder: Recorder, tmp_path: Path, command: str, job_request: str
) -> None:
    prepared = prepare_channels(make_interactions(), tmp_path / "prepared", shards=2)
    assert cli("upload", "--prepared", str(prepared))[0] == 0

    status, _, err = cli(command, "--instance-count", "2", "--shard-train")
    assert status == 0, err
    request = recorder.only(job_request)
    job = request.get("TrainingJobDefinition", request)
    assert job["ResourceConfig"]["InstanceCount"] == 2
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in job["InputDataConfig"]}
    assert channels["train"]["S3DataDistributionType"] == "ShardedByS3Key"
    for name in ("validation", "test", "vocabulary"):
        assert channels[name]["S3DataDistributionType"] == "FullyReplicated", name
    for name in ("train", "validation", "test", "vocabulary"):
        assert channels[name]["S3Uri"].endswith(f"/data/default/{name}/"), name

    status, _, err = cli(command, "--instance-count", "3", "--shard-train")
    assert status == 2
    assert "has 2 file(s) for 3 instances" in one_error_line(err) and "--shards 3" in err
