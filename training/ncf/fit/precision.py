"""Mixed precision of a training step: which dtype the matmuls and activations are computed in.

Variables, the loss and the exported model stay float32; only the step's arithmetic changes. bfloat16
has float32's exponent range, so it needs no loss scaling (float16 would); it runs natively on GPUs of
compute capability 8.0 and later (A100, A10G, L4, H100/H200) and on CPUs with AVX-512 BF16 or AMX,
and is emulated (slowly) elsewhere. So `auto` turns it on where a GPU that has it is present, `on`
asks for it anyway (refused on an older GPU, where it would be emulated), `off` keeps float32.
"""

from __future__ import annotations

import tensorflow as tf

from ncf.choices import MIXED_PRECISION_MODES
from ncf.errors import NcfError

_BFLOAT16_CAPABILITY = (8, 0)


def choose_dtype(mode: str, gpu_capabilities: list[tuple[int, int]]) -> tf.DType:
    """The step's compute dtype for `mode` given the visible GPUs' compute capabilities ([] on a CPU)."""
    if mode not in MIXED_PRECISION_MODES:
        raise NcfError(f"hyperparameter mixed_precision: expected one of auto, on, off, got {mode!r}")
    if mode == "off":
        return tf.float32
    native = all(capability >= _BFLOAT16_CAPABILITY for capability in gpu_capabilities)
    if mode == "on":
        if not native:
            raise NcfError(
                "hyperparameter mixed_precision on: this GPU (compute capability"
                f" {min(gpu_capabilities)}) has no bfloat16 arithmetic; use auto or off"
            )
        return tf.bfloat16
    return tf.bfloat16 if gpu_capabilities and native else tf.float32


def gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capability of every GPU TensorFlow sees ([] without one)."""
    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        found.append(tuple(capability) if capability else (0, 0))
    return found


def compute_dtype(mode: str) -> tf.DType:
    """The step's compute dtype for `mode` on this machine."""
    return choose_dtype(mode, gpu_capabilities())
