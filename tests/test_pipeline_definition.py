"""`pipeline upsert|start|status|describe` against moto: the definition it sends, field by field."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from deploy_helpers import BUCKET, PROJECT, REGION, ROLE_ARN, Recorder

from deploy.config import load_settings
from deploy.signals import FORWARDER, FORWARDER_NAME
from deploy.training import metric_definitions

pytest_plugins = ["deploy_fixtures"]

PIPELINE = f"{PROJECT}-retrain"
GROUP = f"{PROJECT}-models"
PROJECT_TAG = {"Key": "ncf-sagemaker:project", "Value": PROJECT}
EXECUTION = {"Get": "Execution.PipelineExecutionId"}
PREPARED = {"Get": "Steps.Prepare.ProcessingOutputConfig.Outputs['prepared'].S3Output.S3Uri"}
REPORT = {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"}


def join(*values: Any, on: str = "/") -> dict[str, Any]:
    return {"Std:Join": {"On": on, "Values": list(values)}}


def report_value(path: str) -> dict[str, Any]:
    return {"Std:JsonGet": {"PropertyFile": REPORT, "Path": path}}


def steps_by_name(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    steps = {s["Name"]: s for s in definition["Steps"]}
    gate = steps["Gate"]["Arguments"]
    for branch in ("IfSteps", "ElseSteps"):
        steps.update({s["Name"]: s for s in gate[branch]})
    return steps


@pytest.fixture
def upserted(cli, recorder: Recorder) -> dict[str, Any]:
    status, out, err = cli("pipeline", "upsert")
    assert status == 0, err
    assert f"pipeline {PIPELINE}: arn:aws:sagemaker:{REGION}:" in out
    return recorder.only("CreatePipeline")


def check_upsert_creates_the_pipeline_with_the_role_tags_and_parameters(upserted: dict[str, Any]) -> None:
    assert upserted["PipelineName"] == PIPELINE
    assert upserted["RoleArn"] == ROLE_ARN
    assert PROJECT_TAG in upserted["Tags"] and {"Key": "team", "Value": "recsys"} in upserted["Tags"]
    definition = json.loads(upserted["PipelineDefinition"])
    assert definition["PipelineExperimentConfig"] is None
    assert {p["Name"]: (p["Type"], p.get("DefaultValue")) for p in definition["Parameters"]} == {
        "InputData": ("String", f"s3://{BUCKET}/ncf/raw/default/"),
        "ModelType": ("String", "neumf"),
        "Epochs": ("String", "3"),
        "GateMargin": ("Float", 0.0),
        "ApprovalStatus": ("String", "PendingManualApproval"),
        # a run nobody resolves CurrentModel for (a schedule's) compares with the newest Approved version
        "CurrentModel": ("String", f"s3://{BUCKET}/ncf/pipeline/latest-approved/"),
    }
    assert [s["Name"] for s in definition["Steps"]] == ["Prepare", "Train", "Evaluate", "Gate"]


def check_the_prepare_step_runs_prepare_py_from_the_source_bundle_in_the_training_image(
    upserted: dict[str, Any],
) -> None:
    prepare = steps_by_name(json.loads(upserted["PipelineDefinition"]))["Prepare"]
    arguments = prepare["Arguments"]
    app = arguments["AppSpecification"]
    assert app["ImageUri"].endswith("tensorflow-training:2.21-cpu-py312")
    assert (
        app["ContainerEntrypoint"][:2] == ["python3", "-c"] and app["ContainerEntrypoint"][3] == "prepare.py"
    )
    assert "$" not in app["ContainerEntrypoint"][2]
    assert app["ContainerArguments"] == [
        "--input",
        "/opt/ml/processing/input/raw",
        "--output",
        "/opt/ml/processing/prepared/channels",
        "--item-features",
        "none",
    ]
    inputs = {i["InputName"]: i["S3Input"] for i in arguments["ProcessingInputs"]}
    assert inputs["raw"]["S3Uri"] == {"Get": "Parameters.InputData"}
    assert inputs["code"]["S3Uri"].startswith(f"s3://{BUCKET}/ncf/code/")
    assert inputs["code"]["S3Uri"].endswith("/sourcedir.tar.gz")
    [output] = arguments["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["S3Uri"] == join(f"s3://{BUCKET}/ncf/pipeline", EXECUTION, "prepared")
    assert arguments["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert PROJECT_TAG in arguments["Tags"]


def check_the_train_step_is_the_job_deploy_train_sends(upserted: dict[str, Any]) -> None:
    steps = steps_by_name(json.loads(upserted["PipelineDefinition"]))
    arguments = steps["Train"]["Arguments"]
    spec = arguments["AlgorithmSpecification"]
    assert spec["ContainerEntrypoint"] == ["/bin/bash", "-c", FORWARDER, FORWARDER_NAME]
    assert spec["MetricDefinitions"] == metric_definitions(load_settings())
    assert arguments["HyperParameters"] == {
        "epochs": {"Get": "Parameters.Epochs"},
        "model_type": {"Get": "Parameters.ModelType"},
        "mlp_layers": "64,32,16,8",
        "learning_rate": "0.002",
        "final_fit": "false",
    }
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in arguments["InputDataConfig"]
    }
    for channel in ("train", "validation", "test", "vocabulary"):
        assert channels[channel] == join(PREPARED, "channels", channel)
    code = steps["Prepare"]["Arguments"]["ProcessingInputs"][0]["S3Input"]["S3Uri"]
    assert channels["code"] == code  # the same bundle as the processing steps
    assert arguments["EnableManagedSpotTraining"] is True
    assert arguments["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert arguments["CheckpointConfig"]["S3Uri"] == join(
        f"s3://{BUCKET}/ncf/pipeline", EXECUTION, "checkpoints"
    )
    assert arguments["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/ncf/models"
    assert PROJECT_TAG in arguments["Tags"]


def check_the_evaluate_step_scores_the_candidate_and_the_current_model_into_a_property_file(
    upserted: dict[str, Any],
) -> None:
    evaluate = steps_by_name(json.loads(upserted["PipelineDefinition"]))["Evaluate"]
    app = evaluate["Arguments"]["AppSpecification"]
    assert app["ContainerEntrypoint"][3] == "evaluate.py"
    assert app["ContainerArguments"] == [
        "--top-k",
        "10",
        "--margin",
        join({"Get": "Parameters.GateMargin"}, on=""),
    ]
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in evaluate["Arguments"]["ProcessingInputs"]}
    assert inputs["candidate"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert inputs["current"] == {"Get": "Parameters.CurrentModel"}
    assert inputs["test"] == join(PREPARED, "channels", "test")
    assert evaluate["PropertyFiles"] == [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    ]


def check_the_gate_registers_a_passing_candidate_and_fails_with_both_scores(upserted: dict[str, Any]) -> None:
    steps = steps_by_name(json.loads(upserted["PipelineDefinition"]))
    gate = steps["Gate"]["Arguments"]
    assert gate["Conditions"] == [
        {
            "Type": "GreaterThanOrEqualTo",
            "LeftValue": report_value("gate.candidate"),
            "RightValue": report_value("gate.threshold"),
        },
        {"Type": "Equals", "LeftValue": report_value("gate.smoke_ok"), "RightValue": True},
    ]
    assert [s["Name"] for s in gate["IfSteps"]] == ["Register"]
    assert steps["Refused"]["Type"] == "Fail"
    assert steps["Refused"]["Arguments"]["ErrorMessage"] == join(
        "the gate refused the candidate: ", report_value("gate.summary"), on=""
    )
    register = steps["Register"]["Arguments"]
    assert steps["Register"]["Type"] == "RegisterModel"
    assert register["ModelPackageGroupName"] == GROUP
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ApprovalStatus"}
    [container] = register["InferenceSpecification"]["Containers"]
    assert container["Image"].endswith("tensorflow-inference:2.20-cpu-py312")
    assert container["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    statistics = register["ModelMetrics"]["ModelQuality"]["Statistics"]
    evaluation = "Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"
    assert statistics == {
        "ContentType": "application/json",
        "S3Uri": join({"Get": evaluation}, "evaluation.json"),
    }


def test_upsert_sends_the_definition_field_by_field(upserted: dict[str, Any], recorder: Recorder) -> None:
    """One upsert (the SDK import and the bundle upload are the slow part), every step checked."""
    check_upsert_creates_the_pipeline_with_the_role_tags_and_parameters(upserted)
    check_the_prepare_step_runs_prepare_py_from_the_source_bundle_in_the_training_image(upserted)
    check_the_train_step_is_the_job_deploy_train_sends(upserted)
    check_the_evaluate_step_scores_the_candidate_and_the_current_model_into_a_property_file(upserted)
    check_the_gate_registers_a_passing_candidate_and_fails_with_both_scores(upserted)
    check_the_drawn_graph_follows_the_definitions_references(upserted)
    check_upsert_creates_the_tagged_group_and_the_no_model_stand_in(recorder)


def check_the_drawn_graph_follows_the_definitions_references(upserted: dict[str, Any]) -> None:
    """tests/tools/pipeline_graph.py draws what the definition says, not a fixed picture."""
    spec = importlib.util.spec_from_file_location(
        "pipeline_graph", Path(__file__).parent / "tools" / "pipeline_graph.py"
    )
    graph = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(graph)
    types, links = graph.edges(json.loads(upserted["PipelineDefinition"])["Steps"])
    assert types == {
        "Prepare": "Processing",
        "Train": "Training",
        "Evaluate": "Processing",
        "Gate": "Condition",
        "Register": "RegisterModel",
        "Refused": "Fail",
    }
    assert set(links) == {
        ("Prepare", "Train", ""),
        ("Prepare", "Evaluate", ""),
        ("Train", "Evaluate", ""),
        ("Evaluate", "Gate", ""),
        ("Gate", "Register", "passed"),
        ("Gate", "Refused", "refused"),
        ("Train", "Register", ""),
        ("Evaluate", "Register", ""),
        ("Evaluate", "Refused", ""),
    }


def check_upsert_creates_the_tagged_group_and_the_no_model_stand_in(recorder: Recorder) -> None:
    group = recorder.only("CreateModelPackageGroup")
    assert group["ModelPackageGroupName"] == GROUP and PROJECT_TAG in group["Tags"]
    s3 = boto3.client("s3", region_name=REGION)
    marker = s3.get_object(Bucket=BUCKET, Key="ncf/pipeline/no-approved-model/NO_APPROVED_MODEL")
    assert marker["ContentLength"] > 0
    latest = s3.get_object(Bucket=BUCKET, Key="ncf/pipeline/latest-approved/LATEST_APPROVED.json")
    assert json.loads(latest["Body"].read()) == {"group": GROUP, "region": REGION}


def test_a_second_upsert_updates_the_pipeline(cli, recorder: Recorder, upserted: dict) -> None:
    status, _, err = cli("pipeline", "upsert", "--set", "gate_margin=0.02")
    assert status == 0, err
    update = recorder.only("UpdatePipeline")
    parameters = {
        p["Name"]: p.get("DefaultValue") for p in json.loads(update["PipelineDefinition"])["Parameters"]
    }
    assert parameters["GateMargin"] == 0.02
    assert len(recorder.requests("CreateModelPackageGroup")) == 1


def test_start_passes_the_parameters_and_the_latest_approved_model(
    cli, recorder: Recorder, upserted: dict
) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    approved = f"s3://{BUCKET}/ncf/models/job-2/output/model.tar.gz"
    for model, status in (
        (f"s3://{BUCKET}/ncf/models/job-1/output/model.tar.gz", "Rejected"),
        (approved, "Approved"),
    ):
        sagemaker.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus=status,
            InferenceSpecification={
                "Containers": [{"Image": "image", "ModelDataUrl": model}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
    status, out, err = cli("pipeline", "start", "--epochs", "1", "--gate-margin", "0.01")
    assert status == 0, err
    request = recorder.only("StartPipelineExecution")
    assert request["PipelineName"] == PIPELINE
    assert {p["Name"]: p["Value"] for p in request["PipelineParameters"]} == {
        "CurrentModel": approved,
        "Epochs": "1",
        "GateMargin": "0.01",
    }
    assert out.startswith(f"pipeline execution arn:aws:sagemaker:{REGION}:")


def test_start_without_an_approved_model_compares_with_the_stand_in(
    cli, recorder: Recorder, upserted: dict
) -> None:
    assert cli("pipeline", "start")[0] == 0
    parameters = recorder.only("StartPipelineExecution")["PipelineParameters"]
    assert parameters == [{"Name": "CurrentModel", "Value": f"s3://{BUCKET}/ncf/pipeline/no-approved-model/"}]


def test_status_and_describe(cli, upserted: dict) -> None:
    assert cli("pipeline", "start")[0] == 0
    status, out, err = cli("pipeline", "status", "--json")
    assert status == 0, err
    executions = json.loads(out)["executions"]
    assert len(executions) == 1 and executions[0]["execution"].startswith("arn:aws:sagemaker:")
    status, out, err = cli("pipeline", "describe", "--json")
    assert status == 0, err
    described = json.loads(out)
    assert described["pipeline"] == PIPELINE
    assert described["steps"] == [
        "Prepare (Processing)",
        "Train (Training)",
        "Evaluate (Processing)",
        "Gate (Condition)",
        "Register (RegisterModel)",
        "Refused (Fail)",
    ]


def test_start_before_upsert_says_to_upsert(cli) -> None:
    status, _, err = cli("pipeline", "start")
    assert status == 2
    assert (
        err.strip().splitlines()[-1]
        == f"error: pipeline {PIPELINE} does not exist: run `python -m deploy pipeline upsert`"
    )


def test_a_negative_gate_margin_is_refused(cli) -> None:
    status, _, err = cli("pipeline", "start", "--gate-margin", "-0.1")
    assert status == 2
    assert err.strip() == (
        "error: setting gate_margin must be >= 0 (how much worse than the approved model a candidate may be)"
    )


def test_parameters_default_to_train_pys_own_defaults() -> None:
    """Without configured hyperparameters the pipeline trains as train.py would by default."""
    from deploy.config import Settings
    from deploy.pipeline_steps import parameters

    defaults = parameters(Settings(bucket="bkt"), "s3://bkt/none/")
    assert (defaults.model_type.default_value, defaults.epochs.default_value) == ("neumf", "30")
    configured = parameters(Settings(bucket="bkt", hyperparameters={"epochs": 7}), "s3://bkt/none/")
    assert configured.epochs.default_value == "7"


def test_local_only_options_and_a_missing_input_folder_are_one_line_errors(cli, tmp_path: Path) -> None:
    status, _, err = cli("pipeline", "start", "--current-model", str(tmp_path / "model.tar.gz"))
    assert (status, err.strip()) == (
        2,
        "error: --current-model goes with --local (on SageMaker it is the latest Approved package)",
    )
    missing = tmp_path / "no-such-folder"
    status, _, err = cli("pipeline", "start", "--local", "--input-data", str(missing))
    assert (status, err.strip()) == (
        2,
        f"error: --input-data {missing}: not a folder (pass a folder of raw interactions)",
    )
