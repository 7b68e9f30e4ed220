"""Checkpoint every epoch and resume from the newest checkpoint that reads back.

This is what makes spot training safe: SageMaker syncs `/opt/ml/checkpoints` to S3 and
restores it on the next attempt. A checkpoint holds the model, the optimizer moments, the
best weights so far and the loop's bookkeeping (epochs done, best score, history). Nothing
random needs saving, because each epoch derives its random stream from (seed, epoch).

TensorFlow writes a checkpoint's data files first and its index last, atomically, so a
crash mid-save leaves the previous checkpoint current. A checkpoint whose files were
damaged afterwards (truncated upload, full disk) fails to restore and the previous one
is used instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tensorflow as tf

from ncf.errors import NcfError

#: How a damaged checkpoint fails to restore: TensorFlow's read errors (DataLossError, NotFoundError,
#: OutOfRangeError, InvalidArgumentError, ...), a truncated data file (IndexError "Read less bytes than
#: requested" from the checkpoint reader), a missing object (AssertionError from
#: assert_existing_objects_matched) or a shape that does not fit (ValueError). Anything else is a bug or an
#: exhausted machine, and must not pass as "try an older checkpoint".
UNREADABLE = (tf.errors.OpError, IndexError, AssertionError, ValueError)


class LoopState(tf.Module):
    """The training loop's bookkeeping, stored as variables so it checkpoints with the model."""

    def __init__(self, fingerprint: str) -> None:
        super().__init__(name="loop_state")
        self.epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.fingerprint = tf.Variable(fingerprint, dtype=tf.string, trainable=False)
        self.summary = tf.Variable("{}", dtype=tf.string, trainable=False)

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary.numpy().decode())

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.summary.assign(json.dumps(summary))


class Checkpointer:
    """Saves and restores one training stage's state in its own folder."""

    def __init__(self, directory: Path, state: LoopState, keep: int = 3, **objects: tf.Module) -> None:
        self.directory = directory
        self.state = state
        self.checkpoint = tf.train.Checkpoint(state=state, **objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(directory), max_to_keep=keep)

    def save(self) -> str:
        return self.manager.save(checkpoint_number=int(self.state.epochs_done.numpy()))

    def restore_latest(self, log: Any) -> bool:
        """Restore the newest readable checkpoint; False when there is none to resume."""
        expected = self.state.fingerprint.numpy()
        for path in reversed(self.manager.checkpoints):
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except UNREADABLE as exc:
                log(f"warning: checkpoint {path} is unreadable ({type(exc).__name__}); trying an older one")
                continue
            if self.state.fingerprint.numpy() != expected:
                raise NcfError(
                    f"checkpoint folder {self.directory} holds a run with other settings or data; "
                    "use a new --checkpoint-dir or delete the old checkpoints"
                )
            log(f"resumed from {path} after epoch {int(self.state.epochs_done.numpy())}")
            return True
        if self.manager.checkpoints:
            raise NcfError(
                f"no checkpoint in {self.directory} could be restored (damaged, or written by a run with "
                "other settings or data); use a new --checkpoint-dir or delete the old checkpoints"
            )
        return False
