"""TensorFlow image URIs from the SageMaker SDK's bundled image tables (offline, no credentials).

`framework_version`/`py_version` pick the training image, `inference_framework_version` the
TensorFlow Serving image (see deploy/config.py for why they differ). `training_image` and
`inference_image` replace the lookup, e.g. for a mirrored or customised image.
"""

from __future__ import annotations

import functools

from ncf.errors import NcfError

from deploy.config import Settings

#: Serverless endpoints have no instance type; any CPU type selects the CPU image.
_CPU_INSTANCE = "ml.m5.large"


def training_image(settings: Settings, region: str) -> str:
    """The TensorFlow training image for the training instance type (CPU or GPU build)."""
    if settings.training_image:
        return settings.training_image
    return _retrieve(
        region,
        settings.framework_version,
        "training",
        settings.train_instance_type,
        py_version=settings.py_version,
        setting="framework_version",
    )


def inference_image(settings: Settings, region: str, instance_type: str | None = None) -> str:
    """The TensorFlow Serving image for `instance_type` (default: the endpoint's, CPU when serverless)."""
    if settings.inference_image:
        return settings.inference_image
    if instance_type is None:
        instance_type = _CPU_INSTANCE if settings.serverless else settings.deploy_instance_type
    return _retrieve(
        region,
        settings.inference_framework_version,
        "inference",
        instance_type,
        setting="inference_framework_version",
    )


@functools.cache  # the SDK reads its image tables from disk at every call (~0.3 s); they are fixed
def _retrieve(region: str, version: str, scope: str, instance_type: str, setting: str, **extra: str) -> str:
    from sagemaker.core import image_uris

    try:
        return image_uris.retrieve(
            "tensorflow",
            region=region,
            version=version,
            instance_type=instance_type,
            image_scope=scope,
            **extra,
        )
    except ValueError as exc:
        raise NcfError(
            f"setting {setting}: no TensorFlow {scope} image for {version} in {region} ({exc})"
        ) from None
