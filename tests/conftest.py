"""Shared fixtures: tiny prepared channels and one tiny trained model for the whole session.

The data is synthetic and made here (tests never need the network or MovieLens): users
belong to taste groups and interact with their group's items, so a model that learns
anything beats chance. The channels come from the real prepare.py pipeline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO / "training" / "train.py"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def local_images():
    """The Docker images of SDK local mode (`deploy.localmode.build.LocalImages`), built when missing; a
    test that needs them is skipped, with the reason, where Docker cannot run."""
    from deploy.localmode import build, docker

    problem = docker.docker_problem()
    if problem:
        pytest.skip(f"SDK local mode needs Docker: {problem}")
    return build.ensure_images(log=lambda line: print(line, file=sys.stderr))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The Docker modules first, then the other modules with `slow` tests, each module's tests in order.

    `make test` hands work units to two pytest-xdist workers in collection order (see
    `pytest_xdist_make_scheduler`); starting the long units first keeps one worker from being left with a
    long one at the end.
    """
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    grouped = {item.path for item in items if item.get_closest_marker("xdist_group")}
    items.sort(key=lambda item: (item.path not in grouped, item.path not in slow_modules))


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """With `--dist loadgroup`: the modules marked `xdist_group("docker")` as one work unit, every other
    module as a unit of its own.

    xdist's own loadgroup splits unmarked modules test by test, so both workers would build each
    module's fixtures; its loadfile would let two modules start containers at once, and the SDK's
    local mode shares one compose network (`sagemaker-local`) and the tests look for containers left
    behind by image. Only called when pytest-xdist runs the suite.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModulesAndGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            group = super()._split_scope(nodeid)
            return group if group != nodeid else nodeid.split("::", 1)[0]

    return ModulesAndGroups(config, log)


def make_interactions(num_users: int = 60, num_items: int = 40, seed: int = 0) -> pd.DataFrame:
    """Grouped-taste interactions with string ids and increasing timestamps."""
    rng = np.random.default_rng(seed)
    groups = 4
    rows = []
    for user in range(num_users):
        group = user % groups
        own = [i for i in range(num_items) if i % groups == group]
        count = int(rng.integers(6, 10))
        chosen = rng.choice(own, size=min(count, len(own)), replace=False)
        for step, item in enumerate(chosen):
            rows.append(
                (f"u{user}", f"item-{item}", float(rng.integers(1, 6)), 1_000_000 + 100 * step + user)
            )
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def prepare_channels(frame: pd.DataFrame, out: Path, eval_negatives: int = 15, shards: int = 1) -> Path:
    """Split interactions into channels with the real prepare.py pipeline (in-process); a column
    `event_type` of `frame` is read as the event types."""
    import prepare

    source = out.with_name(out.name + "-interactions.csv")
    frame.to_csv(source, index=False)
    options = {"--input": source, "--output": out, "--eval-negatives": eval_negatives, "--shards": shards}
    if "event_type" in frame.columns:
        options["--event-type-col"] = "event_type"
    code = prepare.main([str(part) for pair in options.items() for part in pair])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def tiny_channels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prepared train/validation/test channels of a tiny synthetic dataset."""
    return prepare_channels(make_interactions(), tmp_path_factory.mktemp("channels") / "prepared")


def run_train(
    args: list[str], env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run training/train.py as a subprocess, the way users and the container do."""
    return subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        check=False,
    )


def channel_args(channels: Path) -> list[str]:
    return [
        "--train",
        str(channels / "train"),
        "--validation",
        str(channels / "validation"),
        "--test",
        str(channels / "test"),
    ]


# The settings of the session's shared tiny NeuMF (`trained_model`).
TINY_NEUMF_FLAGS = [
    "--epochs",
    "8",
    "--batch-size",
    "256",
    "--factors",
    "8",
    "--mlp-layers",
    "16,8",
    "--learning-rate",
    "0.01",
    "--patience",
    "0",
]


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory, tiny_channels: Path) -> Path:
    """A NeuMF trained on the tiny data with the default final fit and exported: MODEL_DIR (1/ and code/),
    model.tar.gz and output/ (metrics.json) beside it.

    Serving tests share it, so it is trained once per session.
    """
    run_dir = tmp_path_factory.mktemp("trained")
    result = run_train(
        [*channel_args(tiny_channels), "--model-dir", str(run_dir / "model"), *TINY_NEUMF_FLAGS]
    )
    assert result.returncode == 0, result.stderr + result.stdout
    (run_dir / "train.log").write_text(result.stdout)
    return run_dir / "model"


# Small but real settings for comparing distributed runs with one process on one device.
DISTRIBUTED_SETTINGS = {
    "epochs": "14",
    "batch_size": "256",
    "factors": "8",
    "mlp_layers": "16,8",
    "learning_rate": "0.01",
    "patience": "0",
}


@pytest.fixture(scope="session")
def single_device_metrics(tmp_path_factory: pytest.TempPathFactory, tiny_channels: Path) -> dict:
    """metrics.json of one plain process trained with DISTRIBUTED_SETTINGS (distributed runs match it)."""
    run_dir = tmp_path_factory.mktemp("single-device")
    flags = [f"--{name}={value}" for name, value in DISTRIBUTED_SETTINGS.items()]
    result = run_train(
        [*channel_args(tiny_channels), f"--model-dir={run_dir / 'model'}", "--package=false", *flags]
    )
    assert result.returncode == 0, result.stderr + result.stdout
    import json

    return json.loads((run_dir / "output" / "metrics.json").read_text())


# -- the sequence model (model_type sasrec): data with strong order, and one trained model -------------

WALK_ITEMS = 24
SASREC_TEST_FLAGS = [
    "--model-type",
    "sasrec",
    "--epochs",
    "25",
    "--factors",
    "16",
    "--max-len",
    "6",
    "--batch-size",
    "120",
    "--learning-rate",
    "0.01",
    "--dropout",
    "0.1",
    "--patience",
    "0",
    # the sampled metric reaches 1.0 within a few epochs and would pick one of them for the refit;
    # the full-catalog one keeps rising while the model sharpens
    "--selection-metric",
    "ndcg_full",
]


def walk_interactions(num_users: int = 80, seed: int = 3) -> pd.DataFrame:
    """Each user interacts with consecutive items (mod WALK_ITEMS) from a random start, in time order."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        start, length = int(rng.integers(WALK_ITEMS)), int(rng.integers(7, 11))
        for step in range(length):
            rows.append((f"u{user}", f"item-{(start + step) % WALK_ITEMS}", 1.0, 1_000 + 10 * step))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


@pytest.fixture(scope="session")
def walk_channels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_channels(walk_interactions(), tmp_path_factory.mktemp("walk") / "prepared")


@pytest.fixture(scope="session")
def sasrec_run(tmp_path_factory: pytest.TempPathFactory, walk_channels: Path) -> Path:
    """A sasrec trained and exported by train.py without the final fit: the export is the evaluated model."""
    run_dir = tmp_path_factory.mktemp("sasrec")
    args = [*channel_args(walk_channels), "--model-dir", str(run_dir / "model"), "--package", "false"]
    result = run_train([*args, *SASREC_TEST_FLAGS, "--final-fit", "false"])
    assert result.returncode == 0, result.stderr + result.stdout
    (run_dir / "train.log").write_text(result.stdout)
    return run_dir


# The filters of `filtered_model`, over `filter_fixtures.item_table`'s columns and the interactions'
# event types (`event_channels`).
FILTERS = {
    "by_genre": "INCLUDE ItemID WHERE Items.genres IN ($GENRES)",
    "recent_on_sale": "INCLUDE ItemID WHERE Items.year >= $MIN_YEAR"
    " | EXCLUDE ItemID WHERE Items.on_sale = false",
    "no_acme": 'EXCLUDE ItemID WHERE Items.brand = "acme"',
    "not_bought_lately": "EXCLUDE ItemID WHERE Interactions.event_type IN ($EVENTS)"
    " AND Interactions.age_days < $DAYS",
}


POPULARITY_WINDOW_DAYS = 5  # `filtered_model`'s popularity fallback: the last 5 of the data's 13 days


def event_interactions() -> pd.DataFrame:
    """`make_interactions` with an event type (every third row a purchase, the others views) and its
    times spread over 13 days (same order), so that a few days are a window of it."""
    frame = make_interactions()
    frame["timestamp"] = 1_000_000 + (frame["timestamp"] - 1_000_000) * 1200
    frame["event_type"] = ["purchase" if step % 3 == 0 else "view" for step in range(len(frame))]
    return frame


@pytest.fixture(scope="session")
def event_channels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_channels`' data with event types (prepare.py --event-type-col)."""
    return prepare_channels(event_interactions(), tmp_path_factory.mktemp("events") / "prepared")


@pytest.fixture(scope="session")
def filtered_model(
    tmp_path_factory: pytest.TempPathFactory, event_channels: Path
) -> tuple[Path, pd.DataFrame]:
    """(MODEL_DIR, its items table) of a tiny NeuMF exported with FILTERS (so with `recommend_filtered`,
    `similar_items_filtered` and the users' interactions) over a synthetic items channel holding
    `filters.json`, trained on `event_channels`."""
    import json

    from filter_fixtures import item_table

    root = tmp_path_factory.mktemp("filtered")
    items = item_table([f"item-{i}" for i in range(40)], seed=2)
    (root / "items").mkdir()
    items.to_csv(root / "items" / "items.csv", index=False)
    (root / "items" / "filters.json").write_text(json.dumps(FILTERS))
    args = [*channel_args(event_channels), "--items", str(root / "items"), "--item-features", "none"]
    window = ["--popularity-window-days", str(POPULARITY_WINDOW_DAYS)]
    model_dir = str(root / "model")
    result = run_train([*args, "--model-dir", model_dir, *TINY_NEUMF_FLAGS, *window, "--package", "false"])
    assert result.returncode == 0, result.stderr + result.stdout
    assert "filters: by_genre, no_acme, not_bought_lately, recent_on_sale" in result.stdout
    return root / "model", items
