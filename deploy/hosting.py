"""`deploy`: model + endpoint config + endpoint (sagemaker.core resources), autoscaling, blue/green updates.

- The model is the TensorFlow Serving image with the training job's model.tar.gz. Its `code/` must
  hold `inference.py`; an artifact without one (or any, with --repackage) is repackaged with the
  current `inference/` and uploaded under s3://<bucket>/<prefix>/models/repackaged/<sha>/.
- A first deploy creates the endpoint. A later one creates a new model and endpoint config and calls
  UpdateEndpoint with a blue/green policy: SageMaker brings up the new fleet, shifts all traffic,
  and keeps the old fleet `bluegreen_wait_seconds` for a rollback before removing it. Only when the
  endpoint is InService on the new config are the old config and its models deleted.
- Autoscaling is Application Auto Scaling target tracking on invocations per instance. AWS refuses
  an update that changes the instance type of a scaled variant (or removes it) but allows one that
  changes only the model ("Update endpoints that use auto scaling" in the SageMaker guide). So the
  blue fleet's scaling is read first and taken off only when the update would be refused; if the
  update then fails, rolls back or outlasts `deploy_timeout_seconds`, it is registered again exactly
  as it was. Once the new config serves, autoscaling is set as this deploy asks (or removed).
- With autoscaling, the new (green) fleet starts with as many instances as the blue one serves with
  now when it has scaled out beyond `deploy_instance_count` (at most `autoscaling_max_instances`), so
  the traffic shift does not land on fewer instances. A fixed-size fleet keeps the configured count.
- Resources are named `<project>-model-...`/`<project>-config-...` and tagged with the project tag.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import boto3
from botocore.exceptions import ClientError
from ncf.checksums import sha256_file
from ncf.errors import NcfError

from deploy import autoscaling, images, inventory
from deploy.aws import (
    RemoteFailure,
    describe_client_error,
    ensure_bucket,
    is_not_found,
    is_project_resource,
    resource_tags,
    s3_object_exists,
    sdk_tags,
    split_s3_uri,
    text_or,
    unique_name,
)
from deploy.capture import JSON_CONTENT_TYPES
from deploy.config import Settings
from deploy.packaging import has_empty_requirements, has_handler, repackage_model
from deploy.training import completed_model_data, latest_training_job

LOG = logging.getLogger("deploy")
VARIANT = "AllTraffic"
CAPTURE_CONTENT_TYPES = list(JSON_CONTENT_TYPES)  # captured as text, as ab-report reads them


@dataclass(frozen=True)
class DeployReport:
    """What `deploy` did."""

    endpoint: str
    action: str  # "created" or "updated"
    endpoint_config: str
    model: str
    model_data: str
    removed: tuple[str, ...]


def resolve_model_data(
    settings: Settings, session: boto3.Session, *, training_job: str | None, model_data: str | None
) -> str:
    """The model.tar.gz to serve: --model-data, else --training-job's, else the latest `train` job's."""
    if model_data:
        split_s3_uri(model_data)
        return model_data
    sagemaker_client = session.client("sagemaker")
    if not training_job:
        training_job = latest_training_job(settings, sagemaker_client)
        LOG.info("using the model of training job %s", training_job)
    return completed_model_data(sagemaker_client, training_job)


def ensure_serving_code(settings: Settings, s3_client: Any, model_data: str, *, force: bool) -> str:
    """`model_data` itself when it carries code/inference.py (and no empty code/requirements.txt),
    else (or when forced) a repackaged copy."""
    ensure_bucket(s3_client, settings)
    if not s3_object_exists(s3_client, model_data):
        raise NcfError(f"model artifact {model_data} does not exist")
    with TemporaryDirectory(prefix="ncf-model-") as tmp:
        original = Path(tmp) / "model.tar.gz"
        bucket, key = split_s3_uri(model_data)
        s3_client.download_file(bucket, key, str(original))
        stalls = has_empty_requirements(original)  # trained before inference/requirements.txt went
        if not force and has_handler(original) and not stalls:
            return model_data
        why = ": its code/requirements.txt lists nothing, yet the container would run pip" if stalls else ""
        LOG.info("repackaging %s with the current inference/ as code/%s", model_data, why)
        repacked = repackage_model(original, Path(tmp) / "repacked.tar.gz")
        target = settings.s3_uri("models", "repackaged", sha256_file(repacked)[:16], "model.tar.gz")
        if not s3_object_exists(s3_client, target):
            target_bucket, target_key = split_s3_uri(target)
            s3_client.upload_file(str(repacked), target_bucket, target_key)
    return target


def create_model(
    settings: Settings, session: boto3.Session, model_data: str, instance_type: str | None
) -> str:
    """A SageMaker model: TF Serving image + `model_data` + the role. Returns its name."""
    from sagemaker.core.resources import Model
    from sagemaker.core.shapes import ContainerDefinition

    name = unique_name(settings, "model")
    Model.create(
        model_name=name,
        primary_container=ContainerDefinition(
            image=images.inference_image(settings, session.region_name, instance_type),
            model_data_url=model_data,
            environment=dict(settings.serving_env),
        ),
        execution_role_arn=settings.role_arn,
        tags=sdk_tags(settings),
        session=session,
        region=session.region_name,
    )
    return name


@dataclass(frozen=True)
class Variant:
    """One production variant of an endpoint config (instances; a serverless one takes the settings')."""

    name: str
    model: str
    weight: float = 1.0
    instance_type: str = ""  # empty: deploy_instance_type
    instance_count: int = 0  # 0: deploy_instance_count


def create_endpoint_config(settings: Settings, session: boto3.Session, model_name: str) -> str:
    """One production variant (instances or serverless), optional data capture. Returns its name."""
    return create_variants_config(settings, session, [Variant(VARIANT, model_name)])


def create_variants_config(settings: Settings, session: boto3.Session, variants: list[Variant]) -> str:
    """An endpoint config with `variants` (their weights split the traffic), optional data capture."""
    from sagemaker.core.resources import EndpointConfig
    from sagemaker.core.shapes import CaptureContentTypeHeader, CaptureOption, DataCaptureConfig

    capture = {}
    if settings.data_capture:
        _keep_zero_sampling_percentage(session)
        capture["data_capture_config"] = DataCaptureConfig(
            enable_capture=True,
            initial_sampling_percentage=settings.data_capture_percent,
            destination_s3_uri=settings.s3_uri("data-capture", settings.endpoint),
            capture_options=[CaptureOption(capture_mode="Input"), CaptureOption(capture_mode="Output")],
            capture_content_type_header=CaptureContentTypeHeader(json_content_types=CAPTURE_CONTENT_TYPES),
        )
    name = unique_name(settings, "config")
    EndpointConfig.create(
        endpoint_config_name=name,
        production_variants=[_production_variant(settings, v) for v in variants],
        tags=sdk_tags(settings),
        session=session,
        region=session.region_name,
        **capture,
    )
    return name


def _production_variant(settings: Settings, variant: Variant) -> Any:
    from sagemaker.core.shapes import ProductionVariant, ProductionVariantServerlessConfig

    if settings.serverless:
        _fix_serverless_field_name()
        return ProductionVariant(
            variant_name=variant.name,
            model_name=variant.model,
            serverless_config=ProductionVariantServerlessConfig(
                memory_size_in_mb=settings.serverless_memory_mb,
                max_concurrency=settings.serverless_max_concurrency,
            ),
        )
    return ProductionVariant(
        variant_name=variant.name,
        model_name=variant.model,
        instance_type=variant.instance_type or settings.deploy_instance_type,
        initial_instance_count=variant.instance_count or settings.deploy_instance_count,
        initial_variant_weight=variant.weight,
    )


def _keep_zero_sampling_percentage(session: boto3.Session) -> None:
    """sagemaker-core 3.27 drops zeros inside nested shapes when it serializes a request, so a
    `data_capture_percent` of 0 (a legal InitialSamplingPercentage, 0-100) would leave the required
    member out and botocore would refuse the request. On the SDK's own client for `session`, put a
    missing InitialSamplingPercentage back as 0: nothing else goes missing (every other value
    survives the serializer), and a request that carries it is left alone."""
    from sagemaker.core.resources import Base

    client = Base.get_sagemaker_client(session=session, region_name=session.region_name)
    client.meta.events.register(
        "before-parameter-build.sagemaker.CreateEndpointConfig",
        _restore_sampling_percentage,
        unique_id="ncf-restore-sampling-percentage",
    )


def _restore_sampling_percentage(params: dict[str, Any], **_: Any) -> None:
    capture = params.get("DataCaptureConfig")
    if capture is not None:
        capture.setdefault("InitialSamplingPercentage", 0)


def _fix_serverless_field_name() -> None:
    """sagemaker-core 3.27 sends `MemorySizeInMb`, which CreateEndpointConfig rejects (it wants
    `MemorySizeInMB`; aws/sagemaker-core#225). Teach its name table the one spelling; `setdefault`
    leaves a future upstream fix alone."""
    from sagemaker.core.utils import utils

    utils.SPECIAL_SNAKE_TO_PASCAL_MAPPINGS.setdefault("memory_size_in_mb", "MemorySizeInMB")


def deploy(settings: Settings, session: boto3.Session, model_data: str) -> DeployReport:
    """Create the endpoint, or move an existing one to a new model with a blue/green update."""
    sagemaker_client = session.client("sagemaker")
    current = describe_endpoint(sagemaker_client, settings.endpoint)
    if current is not None:
        _check_updatable(settings, sagemaker_client, current)
    instance_type = None if settings.serverless else settings.deploy_instance_type
    model_name = create_model(settings, session, model_data, instance_type)
    green = _green_fleet(settings, current)
    config_name = create_endpoint_config(green, session, model_name)
    if current is None:
        _create_endpoint(settings, session, config_name)
        removed: tuple[str, ...] = ()
    else:
        _update_endpoint(green, session, current, config_name)
        removed = _delete_previous(settings, sagemaker_client, current["EndpointConfigName"])
    _set_autoscaling(settings, session.client("application-autoscaling"), current)
    action = "created" if current is None else "updated"
    return DeployReport(settings.endpoint, action, config_name, model_name, model_data, removed)


def describe_endpoint(sagemaker_client: Any, name: str) -> dict[str, Any] | None:
    """DescribeEndpoint, or None when there is no such endpoint."""
    try:
        return sagemaker_client.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def _check_updatable(settings: Settings, sagemaker_client: Any, current: dict[str, Any]) -> None:
    name = current["EndpointName"]
    if not is_project_resource(
        resource_tags(sagemaker_client, current["EndpointArn"]) or [], settings.project
    ):
        raise NcfError(
            f"endpoint {name} exists but was not created by project {settings.project!r} (no project tag): "
            "choose another endpoint_name"
        )
    status = current["EndpointStatus"]
    if status == "Failed":
        reason = current.get("FailureReason", "no reason given")
        raise NcfError(
            f"endpoint {name} is Failed ({reason}): run `python -m deploy teardown`, then deploy again"
        )
    if status != "InService":
        raise NcfError(f"endpoint {name} is {status}: wait until it is InService, then deploy again")


def _create_endpoint(settings: Settings, session: boto3.Session, config_name: str) -> None:
    from sagemaker.core.resources import Endpoint

    LOG.info("creating endpoint %s", settings.endpoint)
    endpoint = Endpoint.create(
        endpoint_name=settings.endpoint,
        endpoint_config_name=config_name,
        tags=sdk_tags(settings),
        session=session,
        region=session.region_name,
    )
    _wait_in_service(settings, endpoint)


def _green_fleet(settings: Settings, current: dict[str, Any] | None) -> Settings:
    """The settings of the new endpoint config. With autoscaling, its fleet starts as large as the
    one serving now when that has scaled out beyond `deploy_instance_count` (but at most
    `autoscaling_max_instances`): the blue/green shift moves all traffic at once, and autoscaling
    cannot add instances before the green fleet takes it. A fixed-size fleet keeps its configured
    count: that is the size it will have for good."""
    if current is None or settings.serverless or not settings.autoscaling:
        return settings
    serving = min(_serving_instances(current), settings.autoscaling_max_instances)
    return dataclasses.replace(settings, deploy_instance_count=max(settings.deploy_instance_count, serving))


def _serving_instances(endpoint: dict[str, Any]) -> int:
    """The instances the endpoint's variant runs now (0 when serverless), from DescribeEndpoint."""
    return sum(
        v.get("CurrentInstanceCount", 0)
        for v in endpoint.get("ProductionVariants", [])
        if v["VariantName"] == VARIANT
    )


def _update_endpoint(
    settings: Settings, session: boto3.Session, current: dict[str, Any], config_name: str
) -> None:
    """Blue/green update to `config_name`. The blue fleet's autoscaling is taken off first only where
    AWS would refuse the update otherwise, and registered again as it was when the update does not
    end InService on the new config (rolled back, failed, refused or still running at the timeout)."""
    scaling_client = session.client("application-autoscaling")
    in_the_way = _scaling_in_the_way(
        settings, session.client("sagemaker"), current, autoscaling.read(scaling_client, current)
    )
    autoscaling.deregister(scaling_client, in_the_way)
    try:
        _blue_green_update(settings, session, current, config_name)
    except (RemoteFailure, ClientError) as exc:
        if not in_the_way:
            raise
        failure = describe_client_error(exc) if isinstance(exc, ClientError) else str(exc)
        raise RemoteFailure(f"{failure}; {_restore_scaling(scaling_client, in_the_way)}") from None


def _scaling_in_the_way(
    settings: Settings,
    sagemaker_client: Any,
    current: dict[str, Any],
    scaled: tuple[autoscaling.VariantScaling, ...],
) -> tuple[autoscaling.VariantScaling, ...]:
    """The scaled variants AWS refuses to update while they autoscale: those whose instance type the
    new config changes (a serverless variant has none) and those it drops. A new model is allowed."""
    if not scaled:
        return ()
    blue = sagemaker_client.describe_endpoint_config(EndpointConfigName=current["EndpointConfigName"])
    blue_types = {v["VariantName"]: v.get("InstanceType") for v in blue["ProductionVariants"]}
    green_type = None if settings.serverless else settings.deploy_instance_type
    return tuple(s for s in scaled if s.variant != VARIANT or blue_types.get(s.variant) != green_type)


def _restore_scaling(scaling_client: Any, scaled: tuple[autoscaling.VariantScaling, ...]) -> str:
    """Register the blue fleet's autoscaling again; says how that went, for the error message."""
    described = "; ".join(s.summary() for s in scaled)
    try:
        autoscaling.restore(scaling_client, scaled)
    except ClientError as exc:
        return f"its autoscaling could NOT be restored ({describe_client_error(exc)}): it was {described}"
    return f"autoscaling restored as it was: {described}"


def _blue_green_update(
    settings: Settings, session: boto3.Session, current: dict[str, Any], config_name: str
) -> None:
    """UpdateEndpoint to `config_name`; `RemoteFailure` unless it ends InService on that config."""
    from sagemaker.core.resources import Endpoint

    fleet = (
        "serverless"
        if settings.serverless
        else f"blue/green, the new fleet starts with {settings.deploy_instance_count} instances, "
        f"{_serving_instances(current)} serve now"
    )
    LOG.info("updating endpoint %s to %s (%s)", settings.endpoint, config_name, fleet)
    endpoint = Endpoint.get(endpoint_name=settings.endpoint, session=session, region=session.region_name)
    endpoint.endpoint_config_name = config_name
    endpoint.update(**_deployment_config(settings))
    _wait_in_service(settings, endpoint)
    if endpoint.endpoint_config_name != config_name:
        reason = text_or(endpoint.failure_reason, "no reason given")
        raise RemoteFailure(
            f"endpoint {settings.endpoint} rolled back to {endpoint.endpoint_config_name}: {reason}"
        )


def _deployment_config(settings: Settings) -> dict[str, Any]:
    """Blue/green, all traffic at once, old fleet kept `bluegreen_wait_seconds` (instance endpoints only)."""
    if settings.serverless:
        return {}
    from sagemaker.core.shapes import BlueGreenUpdatePolicy, DeploymentConfig, TrafficRoutingConfig

    # WaitIntervalInSeconds is required but unused by ALL_AT_ONCE; sagemaker-core's serializer drops
    # zeros inside nested shapes (3.27), so 0 would vanish from the request and fail validation.
    policy = BlueGreenUpdatePolicy(
        traffic_routing_configuration=TrafficRoutingConfig(type="ALL_AT_ONCE", wait_interval_in_seconds=1),
        termination_wait_in_seconds=settings.bluegreen_wait_seconds,
    )
    return {"deployment_config": DeploymentConfig(blue_green_update_policy=policy)}


def _wait_in_service(settings: Settings, endpoint: Any) -> None:
    from sagemaker.core.utils.exceptions import FailedStatusError, TimeoutExceededError

    try:
        endpoint.wait_for_status(
            "InService", poll=settings.poll_seconds, timeout=settings.deploy_timeout_seconds
        )
    except FailedStatusError:
        reason = text_or(endpoint.failure_reason, "no reason given")
        raise RemoteFailure(
            f"endpoint {endpoint.endpoint_name} failed: {reason} "
            "(model and endpoint config kept for inspection; `python -m deploy teardown` removes them)"
        ) from None
    except TimeoutExceededError:
        raise RemoteFailure(
            f"endpoint {endpoint.endpoint_name} is still {endpoint.endpoint_status} after "
            f"{settings.deploy_timeout_seconds} s (deploy_timeout_seconds)"
        ) from None


def _set_autoscaling(settings: Settings, scaling_client: Any, current: dict[str, Any] | None) -> None:
    """Once the endpoint serves the new config: autoscaling with this deploy's range and policy, or
    none when this deploy does not autoscale (whatever the previous fleet had is removed)."""
    if settings.autoscaling:
        resource_id = autoscaling.enable(settings, scaling_client, VARIANT)
        LOG.info(
            "autoscaling %s between %d and %d instances",
            resource_id,
            settings.autoscaling_min_instances,
            settings.autoscaling_max_instances,
        )
    elif current is not None and (removed := autoscaling.remove(scaling_client, current)):
        LOG.info("autoscaling off: removed the %s", ", ".join(removed))


def _delete_previous(
    settings: Settings, sagemaker_client: Any, config_name: str, keep: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """After an update: delete the old endpoint config and its models (only those with the project tag),
    except the models in `keep` (still served by the new config)."""
    try:
        config = sagemaker_client.describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError as exc:
        if is_not_found(exc):
            return ()
        raise
    candidates = [("endpoint-config", config_name)] + [
        ("model", v["ModelName"]) for v in config["ProductionVariants"] if v["ModelName"] not in keep
    ]
    return tuple(
        name
        for kind, name in candidates
        if inventory.delete_if_tagged(sagemaker_client, kind, name, settings.project)
    )


# --- A/B tests: a candidate variant next to the serving one, and promoting the winner -------------

CANDIDATE = "Candidate"


@dataclass(frozen=True)
class PromoteReport:
    """What `promote` did."""

    endpoint: str
    variant: str  # the winner, now served as the endpoint's only variant (named VARIANT)
    endpoint_config: str
    model: str
    removed: tuple[str, ...]


def deploy_candidate(settings: Settings, session: boto3.Session, model_data: str) -> DeployReport:
    """Serve `model_data` as the variant CANDIDATE with `candidate_share` of the traffic, next to the
    endpoint's one serving variant (same model, instances and the rest of the traffic), through the
    blue/green update; data capture is on, so ab-report can compare the two."""
    if settings.serverless:
        raise NcfError("an A/B test needs data capture, which serverless endpoints lack: deploy on instances")
    sagemaker_client = session.client("sagemaker")
    current = _ab_endpoint(settings, sagemaker_client)
    blue = sagemaker_client.describe_endpoint_config(EndpointConfigName=current["EndpointConfigName"])
    serving = blue["ProductionVariants"]
    if len(serving) != 1:
        names = ", ".join(v["VariantName"] for v in serving)
        raise NcfError(f"endpoint {settings.endpoint} already serves {names}: `deploy promote` one first")
    incumbent = serving[0]
    model_name = create_model(settings, session, model_data, settings.deploy_instance_type)
    variants = [
        Variant(
            incumbent["VariantName"],
            incumbent["ModelName"],
            1.0 - settings.candidate_share,
            incumbent["InstanceType"],
            incumbent["InitialInstanceCount"],
        ),
        Variant(CANDIDATE, model_name, settings.candidate_share),
    ]
    capturing = dataclasses.replace(settings, data_capture=True)
    config_name = create_variants_config(capturing, session, variants)
    _update_endpoint(settings, session, current, config_name)
    keep = frozenset({incumbent["ModelName"]})
    removed = _delete_previous(settings, sagemaker_client, current["EndpointConfigName"], keep)
    return DeployReport(settings.endpoint, "candidate added", config_name, model_name, model_data, removed)


def _ab_endpoint(settings: Settings, sagemaker_client: Any) -> dict[str, Any]:
    """The project's InService endpoint (an A/B test changes a serving endpoint only)."""
    current = describe_endpoint(sagemaker_client, settings.endpoint)
    if current is None:
        raise NcfError(f"no endpoint {settings.endpoint}: deploy a model first, then a candidate next to it")
    _check_updatable(settings, sagemaker_client, current)
    return current


def promote(settings: Settings, session: boto3.Session, winner: str) -> PromoteReport:
    """All traffic to `winner` at once (UpdateEndpointWeightsAndCapacities), then a blue/green update to
    a config holding only the winner's model (as VARIANT, on the winner's instances); the other
    variant's model and the old config are deleted."""
    sagemaker_client = session.client("sagemaker")
    current = _ab_endpoint(settings, sagemaker_client)
    blue = sagemaker_client.describe_endpoint_config(EndpointConfigName=current["EndpointConfigName"])
    variants = {v["VariantName"]: v for v in blue["ProductionVariants"]}
    if winner not in variants or len(variants) < 2:
        raise NcfError(
            f"endpoint {settings.endpoint} serves {', '.join(variants)}: "
            f"--variant must name one of two or more variants, got {winner!r}"
        )
    _shift_all_traffic(settings, session, winner, variants)
    chosen = variants[winner]
    green = dataclasses.replace(
        settings,
        deploy_instance_type=chosen["InstanceType"],
        deploy_instance_count=chosen["InitialInstanceCount"],
    )
    config_name = create_endpoint_config(green, session, chosen["ModelName"])
    _update_endpoint(green, session, current, config_name)
    keep = frozenset({chosen["ModelName"]})
    removed = _delete_previous(settings, sagemaker_client, current["EndpointConfigName"], keep)
    _set_autoscaling(green, session.client("application-autoscaling"), current)
    return PromoteReport(settings.endpoint, winner, config_name, chosen["ModelName"], removed)


def _shift_all_traffic(
    settings: Settings, session: boto3.Session, winner: str, variants: dict[str, Any]
) -> None:
    """Weight 1 to the winner and 0 to the others, in place (no new fleet), and wait until InService."""
    from sagemaker.core.resources import Endpoint

    LOG.info("endpoint %s: all traffic to %s", settings.endpoint, winner)
    session.client("sagemaker").update_endpoint_weights_and_capacities(
        EndpointName=settings.endpoint,
        DesiredWeightsAndCapacities=[
            {"VariantName": name, "DesiredWeight": 1.0 if name == winner else 0.0} for name in variants
        ],
    )
    endpoint = Endpoint.get(endpoint_name=settings.endpoint, session=session, region=session.region_name)
    _wait_in_service(settings, endpoint)
