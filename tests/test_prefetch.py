"""Prefetched epochs: the source's own arrays, built one epoch ahead in another thread, never past the
stage's last epoch or above the memory limit, and a build's failure reaches the training loop."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from ncf.data.vocab import UserItemSets
from ncf.errors import NcfError
from ncf.fit import prefetch
from ncf.fit.pair_sampling import EpochBatches, build_epoch, epoch_rng
from ncf.fit.prefetch import PrefetchedEpochs, batches_bytes

USERS = np.repeat(np.arange(20, dtype=np.int32), 5)
ITEMS = np.tile(np.arange(5, dtype=np.int32), 20)
SEEN = UserItemSets.build(USERS, ITEMS, num_users=20)


class RecordingSource:
    """Builds real NCF epochs and records which epoch each build was for, and on which thread."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.builds: list[tuple[int, str]] = []
        self.fail_at = fail_at

    def batches(self, epoch: int) -> EpochBatches:
        self.builds.append((epoch, threading.current_thread().name))
        if epoch == self.fail_at:
            raise NcfError(f"epoch {epoch} could not be built")
        ones = np.ones(len(USERS), np.float32)
        return build_epoch(
            USERS,
            ITEMS,
            ones,
            ones,
            num_neg=2,
            positives=SEEN,
            num_items=30,
            batch_size=16,
            rng=epoch_rng(7, epoch),
        )


def same_arrays(left: EpochBatches, right: EpochBatches) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(left.step_inputs(), right.step_inputs(), strict=True))


def test_each_epoch_is_the_one_the_source_builds_and_the_next_is_built_in_the_background() -> None:
    source, direct = RecordingSource(), RecordingSource()
    with PrefetchedEpochs(source, epochs=3) as epochs:
        for epoch in range(3):
            assert same_arrays(epochs.batches(epoch), direct.batches(epoch))
    assert [epoch for epoch, _ in source.builds] == [0, 1, 2]  # nothing past the last epoch
    caller = threading.current_thread().name
    assert source.builds[0][1] == caller
    assert all(thread != caller for _, thread in source.builds[1:])


def test_an_epoch_other_than_the_expected_one_is_built_on_demand() -> None:
    source = RecordingSource()
    with PrefetchedEpochs(source, epochs=10) as epochs:
        epochs.batches(2)
        assert same_arrays(epochs.batches(5), RecordingSource().batches(5))
    assert [epoch for epoch, _ in source.builds][:3] == [2, 3, 5]


def test_epochs_above_the_memory_limit_are_not_built_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    source = RecordingSource()
    monkeypatch.setattr(prefetch, "PREFETCH_MAX_BYTES", batches_bytes(source.batches(0)) - 1)
    source.builds.clear()
    with PrefetchedEpochs(source, epochs=3) as epochs:
        epochs.batches(0)
        epochs.batches(1)
    assert [epoch for epoch, _ in source.builds] == [0, 1]
    assert {thread for _, thread in source.builds} == {threading.current_thread().name}


def test_a_failed_background_build_is_raised_when_its_epoch_is_asked_for() -> None:
    with PrefetchedEpochs(RecordingSource(fail_at=1), epochs=3) as epochs:
        epochs.batches(0)
        with pytest.raises(NcfError, match="epoch 1 could not be built"):
            epochs.batches(1)
