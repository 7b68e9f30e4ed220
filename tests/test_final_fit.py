"""The exported model is the production model: trained on every interaction, after the evaluation.

Issue: the export used to be the evaluated model (trained on train + validation), so each user's
latest interaction, the test item, was neither trained on nor excluded, and a third of users were
recommended the item they had just interacted with. These tests hold the bar on the real pipeline
(prepare.py's channels, train.py, the SavedModel's `serving_default`): no item of a user's in any
channel is recommended to them, the reported test metrics are still the evaluation phase's, and the
last objective value a tuning job reads is the selected epoch's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tensorflow as tf
from conftest import TINY_NEUMF_FLAGS, channel_args, run_train
from ncf.data.channels import read_channel
from ncf.reporting import metric_regex

pytestmark = pytest.mark.slow


def items_of_each_user(channels: Path) -> dict[str, set[str]]:
    """Every item of each user in any channel: training rows and the validation and test positives."""
    frames = [read_channel(channels / "train")]
    for split in ("validation", "test"):
        heldout = read_channel(channels / split)
        frames.append(heldout[heldout["label"] == 1])
    owned: dict[str, set[str]] = {}
    for frame in frames:
        for user, item in zip(frame["user_id"], frame["item_id"], strict=True):
            owned.setdefault(user, set()).add(item)
    return owned


def recommended(model_dir: Path, users: list[str], k: int) -> dict[str, list[str]]:
    """`serving_default`'s top-k of each user, as raw item ids."""
    loaded = tf.saved_model.load(str(model_dir / "1"))
    out = loaded.signatures["serving_default"](user_id=tf.constant(users), k=tf.constant(k))
    return {
        user: [item.decode() for item in row if item]
        for user, row in zip(users, out["item_ids"].numpy(), strict=True)
    }


def metrics_of(model_dir: Path) -> dict:
    return json.loads((model_dir.parent / "output" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def evaluated_export(tmp_path_factory: pytest.TempPathFactory, tiny_channels: Path) -> Path:
    """The shared tiny NeuMF's settings with `--final-fit false`: the evaluated model is exported."""
    model_dir = tmp_path_factory.mktemp("no-final-fit") / "model"
    result = run_train(
        [
            *channel_args(tiny_channels),
            "--model-dir",
            str(model_dir),
            *TINY_NEUMF_FLAGS,
            "--final-fit",
            "false",
        ]
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return model_dir


def test_no_user_is_recommended_an_item_of_theirs_from_any_channel(
    trained_model: Path, tiny_channels: Path
) -> None:
    owned = items_of_each_user(tiny_channels)
    catalog = set().union(*owned.values())
    k = 10
    top = recommended(trained_model, sorted(owned), k)
    for user, items in top.items():
        assert not set(items) & owned[user], user
        # Exclusion, not an empty answer: every user still gets k items while the catalog has them.
        assert len(items) == min(k, len(catalog - owned[user])), user


def test_the_final_fit_is_said_and_the_test_metrics_are_the_evaluation_phases(
    trained_model: Path, evaluated_export: Path
) -> None:
    final, evaluated = metrics_of(trained_model), metrics_of(evaluated_export)
    assert final["exported_model"]["final_fit"] is True
    assert final["exported_model"]["trained_on"] == "train+validation+test"
    assert "not evaluated" in final["exported_model"]["test_metrics_from"]
    assert evaluated["exported_model"] == {
        **evaluated["exported_model"],
        "final_fit": False,
        "trained_on": "train+validation",
    }
    # Same seed, same evaluation: the final fit changes what is exported, not what is reported.
    assert final["test"] == evaluated["test"]
    assert final["validation"] == evaluated["validation"]
    assert final["data"]["exported_interactions"] == (
        final["data"]["train_interactions"] + 2 * final["data"]["test_users"]
    )


def test_without_the_final_fit_the_export_does_not_know_the_test_items(
    evaluated_export: Path, tiny_channels: Path
) -> None:
    """What `--final-fit false` is for: the exported model never saw the test positives, so evaluators
    can score it on the test split (the test item is neither trained on nor excluded)."""
    test = read_channel(tiny_channels / "test")
    positives = test[test["label"] == 1]
    catalog = len(set(read_channel(tiny_channels / "train")["item_id"]) | set(test["item_id"]))
    top = recommended(evaluated_export, positives["user_id"].tolist(), catalog)
    for user, positive in zip(positives["user_id"], positives["item_id"], strict=True):
        assert positive in top[user], user  # not excluded as seen: the model never saw it


def test_the_last_objective_value_printed_is_the_selected_epochs(trained_model: Path) -> None:
    """SageMaker tuning ranks a trial by the last value of its objective metric in the log."""
    log = (trained_model.parent / "train.log").read_text()
    metrics = metrics_of(trained_model)
    for name, value in metrics["validation"].items():
        printed = [float(v) for v in re.findall(metric_regex(name), log)]
        assert len(printed) == metrics["epochs_run"] + 1, name  # every epoch, then the selected one
        assert printed[-1] == pytest.approx(value, rel=1e-5), name
        assert printed[-1] == printed[metrics["best_epoch"] - 1], name
