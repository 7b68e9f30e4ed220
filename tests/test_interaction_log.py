"""The interactions the export stores for interaction filters, and the recent-window popularity
(`ncf.data.interaction_log`, `TrainingData.interaction_log` / `popularity_within`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import channel_args, event_interactions, run_train
from ncf.data.interaction_log import SECONDS_PER_DAY, InteractionLog, recent_popularity
from ncf.data.training_data import load_training_data
from ncf.errors import NcfError


def test_the_log_is_csr_with_compact_types_and_times_before_the_last() -> None:
    users = np.array([2, 0, 2, 0])
    items = np.array([5, 1, 7, 3])
    times = np.array([100, 40, 90, 10]) * 1_000_000_000  # 1e11 s apart: older than int32 seconds allow
    log = InteractionLog.build(users, items, times, np.array([1, 0, 1, 0]), 3, ("purchase", "view"))
    assert log.offsets.tolist() == [0, 2, 2, 4] and log.offsets.dtype == np.int64
    assert log.items.tolist() == [1, 3, 5, 7] and log.items.dtype == np.int32
    assert log.events.tolist() == [0, 0, 1, 1] and log.events.dtype == np.int16
    assert log.reference == 100_000_000_000 and log.seconds.dtype == np.int32
    floor = np.iinfo(np.int32).min  # more than 68 years before the last interaction: stored as 68 years
    assert log.seconds.tolist() == [floor, floor, 0, floor]
    plain = InteractionLog.build(users, items, None, None, 3, ())
    assert plain.seconds is None and plain.events is None and not plain.has_times


def test_recent_popularity_counts_the_last_days_only() -> None:
    day = SECONDS_PER_DAY
    items = np.array([0, 0, 0, 1, 1, 2])
    times = np.array([0, 1, 2, 9, 10, 10]) * day
    np.testing.assert_allclose(recent_popularity(items, times, 4, 2), [0.0, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(recent_popularity(items, times, 4, 20), [1.0, 2 / 3, 1 / 3, 0.0])
    with pytest.raises(NcfError, match="popularity_window_days 7: the training data has no timestamps"):
        recent_popularity(items, None, 4, 7)


def test_training_data_keeps_times_and_event_types_through_the_final_fit(event_channels: Path) -> None:
    """The held-out positives (each user's latest) join the stored interactions with their time and type."""
    data = load_training_data(*(str(event_channels / c) for c in ("train", "validation", "test")), True)
    assert data.event_types == ("purchase", "view")
    everything = data.with_heldout_positives("validation", True).with_heldout_positives("test", True)
    log = everything.interaction_log()
    frame = event_interactions()
    assert len(log.items) == len(frame) == len(everything.train_users)
    assert log.reference == frame["timestamp"].max()
    stored = {
        (
            data.users.ids[u],
            data.items.ids[log.items[p]],
            data.event_types[log.events[p]],
            log.reference + log.seconds[p],
        )
        for u in range(len(data.users))
        for p in range(log.offsets[u], log.offsets[u + 1])
    }
    assert stored == set(
        frame[["user_id", "item_id", "event_type", "timestamp"]].itertuples(index=False, name=None)
    )
    np.testing.assert_allclose(everything.popularity_within(0), everything.popularity)


def test_interaction_filters_over_missing_columns_stop_training_before_it_starts(
    tmp_path: Path, tiny_channels: Path
) -> None:
    """tiny_channels have timestamps but no event types."""
    (tmp_path / "filters.json").write_text(
        '{"f": "EXCLUDE ItemID WHERE Interactions.event_type = \\"buy\\""}'
    )
    args = [*channel_args(tiny_channels), "--filters", str(tmp_path / "filters.json")]
    result = run_train([*args, "--model-dir", str(tmp_path / "model")])
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: filter 'f': Interactions.event_type at position 21: the training data has no event types"
    )
    assert "epoch" not in result.stdout
