"""The retraining pipeline's graph, built with the SDK's workflow API (`sagemaker.mlops.workflow`).

    Prepare (Processing: training/prepare.py on the raw interactions)
      -> Train (Training: train.py, the job `deploy train` sends)
      -> Evaluate (Processing: training/evaluate.py, candidate vs the approved model, evaluation.json)
      -> Gate (Condition: candidate test NDCG@k >= threshold, and the candidate answered a smoke request)
           passed: Register (ModelStep: a model package in <project>-models, with ModelMetrics)
           refused: Refused (Fail: both scores)

Both Processing steps run in the training image (no new image) on the same content-addressed source
bundle the training job runs: a short Python bootstrap (no shell, so no `$` for local mode's compose file)
unpacks the bundle and runs the named script from it. Where the artifacts go (`artifacts`: S3 for
SageMaker, a `file://` folder in local mode) and the session (a `PipelineSession`, or the SDK's local
one) are the caller's; everything else comes from the settings. The local pipeline session cannot run a
model registration, so `register=False` leaves the Register step out (deploy/localmode/pipeline.py).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from deploy.aws import project_tags
from deploy.config import Settings
from deploy.training import SourceBundle, project_trainer

PROCESSING = "/opt/ml/processing"
#: Unpacks the source bundle (mounted at input/code) and runs argv[1] from it with the remaining arguments.
BOOTSTRAP = (
    "import runpy, sys, tarfile; "
    f"d = '{PROCESSING}/source'; "
    f"tarfile.open('{PROCESSING}/input/code/sourcedir.tar.gz').extractall(d); "
    "sys.argv = [d + '/' + sys.argv[1]] + sys.argv[2:]; sys.path.insert(0, d); "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)
#: The channels the Train step reads from the Prepare step's output (prepare.py writes them all).
TRAIN_CHANNELS = ("train", "validation", "test", "vocabulary")
CHANNELS_FOLDER = "channels"
REPORT_NAME = "EvaluationReport"
REPORT_FILE = "evaluation.json"


def import_workflow_sdk(region: str) -> None:
    """Import `sagemaker.mlops` (the workflow API) where only the CLI's settings name the region.

    SDK 3.27 gap: importing it imports `sagemaker.ai_registry.air_hub`, whose class body creates boto3
    clients with the default region, so the import fails with NoRegionError when the region comes from
    this CLI's settings rather than AWS_REGION / AWS_DEFAULT_REGION / a profile. The session's region
    becomes the process's default first (only when none is set): the import then succeeds, and nothing
    here uses those clients.
    """
    if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        os.environ["AWS_DEFAULT_REGION"] = region
    import sagemaker.mlops  # noqa: F401


@dataclass(frozen=True)
class Parameters:
    """The pipeline's parameters: what `pipeline start` may change per execution."""

    input_data: Any
    model_type: Any
    epochs: Any
    gate_margin: Any
    approval_status: Any
    current_model: Any

    def all(self) -> list[Any]:
        """Every parameter, in the order the pipeline declares them."""
        return [getattr(self, name) for name in self.__dataclass_fields__]


def default_hyperparameter(settings: Settings, name: str) -> str:
    """A hyperparameter as the string a pipeline parameter holds: the configured value, else train.py's."""
    from ncf.train_settings import TrainConfig

    if name in settings.hyperparameters:
        return str(settings.hyperparameters[name])
    return str(next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name))


def parameters(settings: Settings, no_current_model: str) -> Parameters:
    """The parameters with the configured defaults (`no_current_model`: CurrentModel while none is)."""
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterString

    return Parameters(
        input_data=ParameterString("InputData", default_value=settings.raw_data),
        model_type=ParameterString("ModelType", default_value=default_hyperparameter(settings, "model_type")),
        epochs=ParameterString("Epochs", default_value=default_hyperparameter(settings, "epochs")),
        gate_margin=ParameterFloat("GateMargin", default_value=settings.gate_margin),
        approval_status=ParameterString(
            "ApprovalStatus",
            default_value=settings.approval_status,
            enum_values=["Approved", "PendingManualApproval"],
        ),
        current_model=ParameterString("CurrentModel", default_value=no_current_model),
    )


def processing_input(name: str, source: Any, destination: str) -> Any:
    """A Processing input copied from `source` (an S3 prefix or object, or a pipeline variable)."""
    from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input

    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(
            s3_uri=source, local_path=destination, s3_data_type="S3Prefix", s3_input_mode="File"
        ),
    )


def processing_output(name: str, source: str, destination: Any) -> Any:
    """A Processing output uploaded from `source` when the job ends."""
    from sagemaker.core.shapes import ProcessingOutput, ProcessingS3Output

    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(s3_uri=destination, local_path=source, s3_upload_mode="EndOfJob"),
    )


def execution_path(artifacts: str, *parts: str) -> Any:
    """`<artifacts>/<execution id>/<parts>`: each execution's own outputs."""
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join

    return Join(on="/", values=[artifacts.rstrip("/"), ExecutionVariables.PIPELINE_EXECUTION_ID, *parts])


@dataclass(frozen=True)
class Context:
    """What every step is built from: settings, session, images, source bundle and artifact location."""

    settings: Settings
    session: Any
    training_image: str
    inference_image: str
    bundle: SourceBundle
    artifacts: str
    parameters: Parameters


def script_step(
    context: Context,
    name: str,
    script: str,
    arguments: list[Any],
    inputs: list[Any],
    outputs: list[Any],
    property_files: list[Any] | None = None,
) -> Any:
    """A ProcessingStep running `script` from the source bundle in the training image."""
    from sagemaker.core.processing import Processor
    from sagemaker.mlops.workflow.steps import ProcessingStep

    settings = context.settings
    processor = Processor(
        role=settings.role_arn,
        image_uri=context.training_image,
        instance_count=1,
        instance_type=settings.processing_instance_type,
        entrypoint=["python3", "-c", BOOTSTRAP, script],
        max_runtime_in_seconds=settings.max_run_seconds,
        base_job_name=f"{settings.project}-{name.lower()}",
        sagemaker_session=context.session,
        tags=project_tags(settings),
    )
    code = processing_input("code", context.bundle.uri, f"{PROCESSING}/input/code")
    step_args = processor.run(inputs=[code, *inputs], outputs=outputs, arguments=arguments)
    return ProcessingStep(name=name, step_args=step_args, property_files=property_files)


def prepare_step(context: Context) -> Any:
    """Prepare: prepare.py splits the raw interactions into the channels (no item features: see README)."""
    prepared = f"{PROCESSING}/prepared"
    # prepare.py renames its finished folder into place, which a mount point refuses: write a folder inside.
    channels = f"{prepared}/{CHANNELS_FOLDER}"
    arguments = ["--input", f"{PROCESSING}/input/raw", "--output", channels, "--item-features", "none"]
    return script_step(
        context,
        "Prepare",
        "prepare.py",
        arguments,
        [processing_input("raw", context.parameters.input_data, f"{PROCESSING}/input/raw")],
        [processing_output("prepared", prepared, execution_path(context.artifacts, "prepared"))],
    )


def channel_uri(prepare: Any, channel: str) -> Any:
    """A channel folder of the Prepare step's output."""
    from sagemaker.core.workflow.functions import Join

    output = prepare.properties.ProcessingOutputConfig.Outputs["prepared"].S3Output.S3Uri
    return Join(on="/", values=[output, CHANNELS_FOLDER, channel])


def train_step(context: Context, prepare: Any) -> Any:
    """Train: the `deploy train` job on the prepared channels, with the pipeline's hyperparameters."""
    from sagemaker.core.shapes import S3DataSource
    from sagemaker.core.training.configs import InputData
    from sagemaker.mlops.workflow.steps import TrainingStep

    settings, p = context.settings, context.parameters
    channels = [
        InputData(
            channel_name=c,
            data_source=S3DataSource(
                s3_data_type="S3Prefix",
                s3_uri=channel_uri(prepare, c),
                s3_data_distribution_type="FullyReplicated",
            ),
        )
        for c in TRAIN_CHANNELS
    ]
    hyperparameters = {
        **{k: str(v) for k, v in settings.hyperparameters.items()},
        "model_type": p.model_type,
        "epochs": p.epochs,
        # Export the model that was scored on test, not one refitted on test too: the gate compares exports
        # on the new test split, which a final fit would have trained on.
        "final_fit": "false",
    }
    trainer = project_trainer(
        settings,
        context.session,
        context.training_image,
        context.bundle,
        channels,
        checkpoints=settings.checkpoints,
        hyperparameters=hyperparameters,
        checkpoint_uri=execution_path(context.artifacts, "checkpoints"),
    )
    return TrainingStep(name="Train", step_args=trainer.train())


def report_property_file() -> Any:
    """evaluation.json of the Evaluate step's `evaluation` output, as the Gate reads it."""
    from sagemaker.core.workflow.functions import PropertyFile

    return PropertyFile(name=REPORT_NAME, output_name="evaluation", path=REPORT_FILE)


def evaluate_step(context: Context, prepare: Any, train: Any) -> Any:
    """Evaluate: evaluate.py scores the candidate and the approved model on the new test channel."""
    from sagemaker.core.workflow.functions import Join

    p = context.parameters
    arguments = ["--top-k", str(context.settings.top_k), "--margin", Join(on="", values=[p.gate_margin])]
    return script_step(
        context,
        "Evaluate",
        "evaluate.py",
        arguments,
        [
            processing_input(
                "candidate", train.properties.ModelArtifacts.S3ModelArtifacts, f"{PROCESSING}/candidate"
            ),
            processing_input("current", p.current_model, f"{PROCESSING}/current"),
            processing_input("test", channel_uri(prepare, "test"), f"{PROCESSING}/test"),
        ],
        [
            processing_output(
                "evaluation", f"{PROCESSING}/evaluation", execution_path(context.artifacts, "evaluation")
            )
        ],
        [report_property_file()],
    )


def report_value(evaluate: Any, path: str) -> Any:
    """One field of the Evaluate step's report (a JsonGet the Gate and the Fail step resolve at run time)."""
    from sagemaker.core.workflow.functions import JsonGet

    return JsonGet(step_name=evaluate.name, property_file=report_property_file(), json_path=path)


def register_step(context: Context, train: Any, evaluate: Any) -> Any:
    """Register: the candidate as a model package of the group, its report as the ModelMetrics."""
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.workflow.functions import Join
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.serve.model_builder import ModelBuilder

    settings = context.settings
    report = evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri
    builder = ModelBuilder(
        image_uri=context.inference_image,
        s3_model_data_url=train.properties.ModelArtifacts.S3ModelArtifacts,
        role_arn=settings.role_arn,
        sagemaker_session=context.session,
    )
    step_args = builder.register(
        model_package_group_name=settings.package_group,
        content_types=["application/json"],
        response_types=["application/json"],
        inference_instances=[settings.deploy_instance_type],
        transform_instances=[settings.batch_instance_type],
        model_metrics=ModelMetrics(
            model_statistics=MetricsSource(
                content_type="application/json", s3_uri=Join(on="/", values=[report, REPORT_FILE])
            )
        ),
        approval_status=context.parameters.approval_status,
        description=f"{settings.project}: trained and gated by the {settings.pipeline} pipeline",
    )
    return ModelStep(name="Register", step_args=step_args)


def gate_step(context: Context, evaluate: Any, passed: list[Any]) -> Any:
    """Gate: candidate NDCG@k >= threshold (current - margin) and the smoke request answered."""
    from sagemaker.core.workflow.conditions import ConditionEquals, ConditionGreaterThanOrEqualTo
    from sagemaker.core.workflow.functions import Join
    from sagemaker.mlops.workflow.condition_step import ConditionStep
    from sagemaker.mlops.workflow.fail_step import FailStep

    refused = FailStep(
        name="Refused",
        error_message=Join(
            on="", values=["the gate refused the candidate: ", report_value(evaluate, "gate.summary")]
        ),
    )
    conditions = [
        ConditionGreaterThanOrEqualTo(
            left=report_value(evaluate, "gate.candidate"), right=report_value(evaluate, "gate.threshold")
        ),
        ConditionEquals(left=report_value(evaluate, "gate.smoke_ok"), right=True),
    ]
    return ConditionStep(name="Gate", conditions=conditions, if_steps=passed, else_steps=[refused])


def build_pipeline(context: Context, *, register: bool = True) -> Any:
    """The whole pipeline (without the Register step when `register` is False: local mode)."""
    from sagemaker.mlops.workflow.pipeline import Pipeline

    prepare = prepare_step(context)
    train = train_step(context, prepare)
    evaluate = evaluate_step(context, prepare, train)
    passed = [register_step(context, train, evaluate)] if register else []
    return Pipeline(
        name=context.settings.pipeline,
        parameters=context.parameters.all(),
        steps=[prepare, train, evaluate, gate_step(context, evaluate, passed)],
        sagemaker_session=context.session,
        pipeline_experiment_config=None,  # no SageMaker Experiments: nothing reads them, the role need not
    )
