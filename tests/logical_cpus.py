"""Run training/train.py with the CPU split into logical devices: MirroredStrategy without GPUs.

    python tests/logical_cpus.py COUNT [train.py flags...]

TensorFlow fixes its devices when it starts, so the split happens here, before train.py
runs in the same process; train.py then sees COUNT devices, and NCF_DEVICES names them.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import tensorflow as tf

TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "training" / "train.py"

if __name__ == "__main__":
    count = int(sys.argv[1])
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    sys.argv = [str(TRAIN_SCRIPT), *sys.argv[2:]]
    runpy.run_path(str(TRAIN_SCRIPT), run_name="__main__")
