"""Every export shape loads and answers under TF Serving's TensorFlow (2.19.1), the way TF Serving loads it.

SageMaker's `tensorflow-inference:2.20` image is built FROM `tensorflow/serving:2.19.1`: its model server
restores the `serve` meta graph into a TF1 graph session (`SavedModelBundle`) and runs a signature's
tensors by name. Small models of every shape the project exports (NeuMF exhaustive, NeuMF two-stage with
item features, MF and GMF dot products, the MLP tower, SASRec; the three similarity measures among them)
are exported by train.py; one process of `.venv-tf219/` (`make install`, target `tf-serving-venv`)
loads them all with `tf.compat.v1.saved_model.loader.load` in a graph session and calls every signature
their signature map lists (`tests/benchmarks/check_serving_tf.py`); this process (TF 2.21) answers the
same requests through `tf.saved_model.load`, and the answers must agree: the same ids, scores within
SCORE_ATOL. What this cannot prove: TF Serving's C++ server itself, its REST layer and request
batching (no `tensorflow_model_server` binary is installable here).

Without `.venv-tf219/` the tests skip with the reason; in CI (`CI` set) they fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from benchmarks import check_serving_tf
from conftest import REPO, TINY_NEUMF_FLAGS, TRAIN_SCRIPT, channel_args
from ncf.data.vocab import UserItemSets, Vocabulary
from ncf.models.ncf_models import ModelSpec, NcfModel
from ncf.serving.export import Recommender, save_recommender
from ncf.serving.retrieval import choose

pytestmark = pytest.mark.slow

CHECK_SCRIPT = Path(check_serving_tf.__file__)
SERVING_TF_PYTHON = check_serving_tf.SERVING_TF_PYTHON
REQUIREMENTS = REPO / "tests" / "tf-serving-requirements.txt"
SCORE_ATOL = 1e-5
# The signatures of the README's table: each export has at least these (more are checked when they exist).
README_SIGNATURES = {
    "serving_default",
    "recommend_excluding",
    "recommend_with_seen",
    "score",
    "similar_items",
    "similar_users",
    "recommend_from_history",
}


@dataclass(frozen=True)
class Export:
    """One exported SavedModel, the ids its requests use, and the top-k strategy it must record."""

    path: Path
    user: str
    item: str
    retrieval: str


def pinned_version() -> str:
    """The TensorFlow version tests/tf-serving-requirements.txt pins (what `make install` installs)."""
    match = re.search(r"^tensorflow-cpu==(\S+)", REQUIREMENTS.read_text(), re.MULTILINE)
    assert match, f"{REQUIREMENTS} pins no tensorflow-cpu version"
    return match.group(1)


@pytest.fixture(scope="session")  # session: set up before the session's trained models, to skip first
def serving_python() -> Path:
    """The Python of `.venv-tf219/`: a skip with the reason when it is missing, a failure in CI."""
    if not SERVING_TF_PYTHON.is_file():
        message = (
            f"{SERVING_TF_PYTHON} is missing: `make install` creates it (target tf-serving-venv,"
            f" tensorflow-cpu=={pinned_version()}, TF Serving 2.19.1's TensorFlow)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SERVING_TF_PYTHON


def item_features_file(folder: Path) -> Path:
    """Item features for the tiny data's 40 items (conftest.make_interactions): a genre list and a number."""
    rows = [f"item-{i},g{i % 4}|h{i % 3},{1990 + i}" for i in range(40)]
    path = folder / "items.csv"
    path.write_text("item_id,genres,year\n" + "\n".join(rows) + "\n")
    return path


def train_concurrently(runs: dict[str, list[str]], root: Path) -> dict[str, Path]:
    """train.py once per entry, all started at once (much of each run is importing TensorFlow): the
    SavedModel folder of each."""
    processes = {}
    for name, flags in runs.items():
        (root / name).mkdir()
        log = (root / name / "train.log").open("w")
        command = [sys.executable, str(TRAIN_SCRIPT), *flags, "--model-dir", str(root / name / "model")]
        processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
    for name, process in processes.items():
        assert process.wait(timeout=600) == 0, (root / name / "train.log").read_text()[-3000:]
    return {name: root / name / "model" / "1" for name in runs}


@pytest.fixture(scope="module")
def exports(
    serving_python: Path,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_channels: Path,
    trained_model: Path,
    sasrec_run: Path,
    filtered_model: tuple[Path, object],
) -> dict[str, Export]:
    """Every export shape, by name. The shared NeuMF (exhaustive, cosine, final fit) and SASRec come from
    conftest; the others are trained here for a few epochs without refit or final fit."""
    root = tmp_path_factory.mktemp("serving-tf219")
    base = [*channel_args(tiny_channels), *TINY_NEUMF_FLAGS, "--epochs", "3", "--package", "false"]
    base += ["--refit", "false", "--final-fit", "false", "--item-features", "none"]
    forced = ["--retrieval-min-items", "0", "--retrieval-candidates", "10"]
    runs = {
        "neumf-two-stage-item-features": [*base, *forced, "--item-features", str(item_features_file(root))],
        "mf-dot-product-pearson": [*base, *forced, "--model-type", "mf", "--similarity", "pearson"],
        "gmf-dot-product-jaccard": [*base, *forced, "--model-type", "gmf", "--similarity", "jaccard"],
        "mlp": [*base, *forced, "--model-type", "mlp"],  # no dot-product part: exhaustive all the same
    }
    paths = train_concurrently(runs, root)
    modes = {"neumf-two-stage-item-features": "two_stage", "mlp": "exhaustive"}
    built = {
        name: Export(path, "u1", "item-1", modes.get(name, "dot_product")) for name, path in paths.items()
    }
    return {
        "neumf-exhaustive": Export(trained_model / "1", "u1", "item-1", "exhaustive"),
        **built,
        **blocked_exports(root),
        "sasrec": Export(sasrec_run / "model" / "1", "u1", "item-1", "exhaustive"),
        # filters (recommend_filtered, similar_items_filtered, ..._from_history_filtered) and item_fields
        "neumf-filters-item-fields": Export(filtered_model[0] / "1", "u1", "item-1", "exhaustive"),
    }


def blocked_exports(root: Path) -> dict[str, Export]:
    """Exports whose every signature runs in blocks: a memory budget of 2 KB takes one user and a few
    items per block, so the graph loops (`tf.while_loop`, a TensorArray, `tf.cond`) of `ncf.serving.blocked`
    and the co-counts' loop over chunks of paths run under TF Serving's loader."""
    users = Vocabulary.from_values(pd.Series([f"u{i}" for i in range(8)]))
    items = Vocabulary.from_values(pd.Series([f"item-{j}" for j in range(30)]))
    rng = np.random.default_rng(0)
    seen = UserItemSets.build(np.repeat(np.arange(8), 5), rng.integers(0, 30, 40), 8)
    popularity = rng.dirichlet(np.ones(30)).astype(np.float32)
    model = NcfModel(ModelSpec("neumf", 8, 30, 4, (8, 4)), seed=1, init_stddev=0.5)
    exports = {}
    for name, candidates, similarity in (("exhaustive", 0, "jaccard"), ("two_stage", 5, "pearson")):
        choice = choose("neumf", 30, candidates, min_items=0)
        recommender = Recommender(
            model, users, items, seen, popularity, True, similarity, choice, memory_budget_bytes=2048
        )
        path = save_recommender(recommender, root / f"blocked-{name}")
        exports[f"neumf-{name}-blocked-{similarity}"] = Export(path, "u1", "item-1", name)
    return exports


class UntrackedKerasValues(tf.Module):
    """A Keras 3 layer inside a tf.Module that does not track its variables' values: TensorFlow 2's loader
    answers its signature, TF Serving's cannot find the variables ("Could not find variable ..."): the
    pitfall `ncf.serving.export` avoids by tracking the values, which an eager-only check would miss."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = keras.Sequential([keras.layers.Dense(2)])
        self.layer.build((None, 3))

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="k")])
    def serve(self, k: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": self.layer(tf.fill([1, 3], tf.cast(k, tf.float32)))}


@pytest.fixture(scope="module")
def untracked_export(serving_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Export:
    module, path = UntrackedKerasValues(), tmp_path_factory.mktemp("untracked") / "1"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Export(path, "u1", "item-1", "")


@pytest.fixture(scope="module")
def tf219_reports(
    serving_python: Path, exports: dict[str, Export], untracked_export: Export
) -> dict[str, dict[str, Any]]:
    """check_serving_tf.py's report of each export (and of `untracked_export`, as "untracked"), all loaded
    by one TF 2.19 process with TF Serving's loader (a TensorFlow import costs seconds)."""
    every = {**exports, "untracked": untracked_export}
    triples = [str(part) for e in every.values() for part in (e.path, e.user, e.item)]
    command = [str(serving_python), str(CHECK_SCRIPT), "--loader", "session", *triples]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == len(every), f"TF 2.19 process failed ({done.returncode}): {done.stderr[-3000:]}"
    assert done.returncode == 1 and "error: " in done.stderr  # "untracked" fails, and says so
    return dict(zip(every, reports, strict=True))


def same_ranking(ids_a: np.ndarray, ids_b: np.ndarray, scores: np.ndarray) -> bool:
    """Whether two ranked id lists agree: the same ids at the same places, except the order within a run
    of scores equal to SCORE_ATOL, and which items of the run that ends the list made it into the top k
    (floating-point noise between TensorFlow builds may reorder ties, nothing else)."""
    start = 0
    while start < len(scores):
        end = start + 1
        while end < len(scores) and abs(scores[end - 1] - scores[end]) <= SCORE_ATOL:
            end += 1
        if end < len(scores) and set(ids_a[start:end]) != set(ids_b[start:end]):
            return False
        start = end
    return True


def answer_differences(signature: str, tf219: dict[str, Any], tf221: dict[str, Any]) -> list[str]:
    """What differs between two answers of one signature: outputs, shapes, scores beyond SCORE_ATOL,
    rankings, flags. Empty when they agree."""
    if set(tf219) != set(tf221):
        return [f"{signature}: outputs {sorted(tf219)} (TF 2.19) vs {sorted(tf221)} (TF 2.21)"]
    scores = np.asarray(tf219.get("scores", []))
    problems = []
    for name in sorted(tf219):
        old, new = np.asarray(tf219[name]), np.asarray(tf221[name])
        where = f"{signature}.{name}"
        if old.shape != new.shape:
            problems.append(f"{where}: shape {old.shape} vs {new.shape}")
        elif old.dtype.kind == "f":
            if not np.allclose(old, new, rtol=0, atol=SCORE_ATOL):
                problems.append(f"{where}: scores differ by up to {np.max(np.abs(old - new)):.3g}")
        elif old.dtype.kind == "U" and old.shape == scores.shape:
            rows = [r for r in range(len(old)) if not same_ranking(old[r], new[r], scores[r])]
            problems += [f"{where} row {r}: {old[r].tolist()} vs {new[r].tolist()}" for r in rows]
        elif not np.array_equal(old, new):
            problems.append(f"{where}: {old.tolist()} vs {new.tolist()}")
    return problems


def test_the_environment_holds_tf_servings_tensorflow(tf219_reports: dict[str, dict[str, Any]]) -> None:
    assert {report["tensorflow"] for report in tf219_reports.values()} == {pinned_version()}
    assert {report["loader"] for report in tf219_reports.values()} == {"session"}


EXPORT_NAMES = [
    "neumf-exhaustive",
    "neumf-two-stage-item-features",
    "mf-dot-product-pearson",
    "gmf-dot-product-jaccard",
    "mlp",
    "sasrec",
    "neumf-exhaustive-blocked-jaccard",
    "neumf-two_stage-blocked-pearson",
]


@pytest.mark.parametrize("name", EXPORT_NAMES)
def test_every_signature_answers_under_tf_serving_as_under_tf_2_21(
    name: str, exports: dict[str, Export], tf219_reports: dict[str, dict[str, Any]]
) -> None:
    export, report = exports[name], tf219_reports[name]
    assert report["errors"] == {}, f"under TF {report['tensorflow']}'s TF1 loader: {report['errors']}"
    answers, errors, loaded = check_serving_tf.answers_eager(str(export.path), export.user, export.item)
    assert errors == {}
    assert json.loads(loaded.retrieval_metadata.numpy())["mode"] == export.retrieval
    assert set(report["answers"]) == set(answers) >= README_SIGNATURES
    problems = [
        problem
        for signature, answer in sorted(answers.items())
        for problem in answer_differences(
            signature,
            report["answers"][signature],
            {out: check_serving_tf.as_json_value(value) for out, value in answer.items()},
        )
    ]
    assert problems == []


def test_a_module_that_loads_in_tf2_but_not_in_tf_serving_fails_the_check(
    untracked_export: Export, tf219_reports: dict[str, dict[str, Any]]
) -> None:
    """Why the check uses TF Serving's loader: TensorFlow 2's answers this export, TF Serving's does not."""
    answers, errors, _loaded = check_serving_tf.answers_eager(str(untracked_export.path), "u1", "item-1")
    assert errors == {} and set(answers) == {"serving_default"}
    report = tf219_reports["untracked"]
    assert report["answers"] == {}
    assert "Could not find variable" in report["errors"]["serving_default"]


def test_saved_model_cli_of_tf_serving_lists_every_signature(
    serving_python: Path, exports: dict[str, Export], tf219_reports: dict[str, dict[str, Any]]
) -> None:
    """`saved_model_cli show --all` (TF 2.19's) reads the serve meta graph of the two-stage export."""
    cli, name = serving_python.parent / "saved_model_cli", "neumf-two-stage-item-features"
    path = exports[name].path
    done = subprocess.run(
        [str(cli), "show", "--all", "--dir", str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MetaGraphDef with tag-set: 'serve'" in done.stdout
    listed = set(re.findall(r"^signature_def\['(\w+)'\]", done.stdout, re.MULTILINE))
    assert listed - {"__saved_model_init_op"} == set(tf219_reports[name]["answers"])


def test_a_signature_input_without_a_request_value_is_named() -> None:
    with pytest.raises(ValueError, match=r"signature 'new_one': no request value for input 'query'"):
        check_serving_tf.request("new_one", {"k": (tf.int32, 0), "query": (tf.string, 1)}, "u1", "item-1")
    with pytest.raises(ValueError, match=r"input 'k' is int64 of rank 0, the request value is int32"):
        check_serving_tf.request("score_k", {"k": (tf.int64, 0)}, "u1", "item-1")
    with pytest.raises(ValueError, match=r"input 'history' is string of rank 1"):
        check_serving_tf.request("flat", {"history": (tf.string, 1)}, "u1", "item-1")


def test_rankings_may_differ_only_within_ties() -> None:
    ids, scores = np.array(["a", "b", "c", "d"]), np.array([0.9, 0.5, 0.5 + SCORE_ATOL / 2, 0.1])
    assert same_ranking(ids, np.array(["a", "c", "b", "d"]), scores)
    assert not same_ranking(ids, np.array(["b", "a", "c", "d"]), scores)
    assert not same_ranking(ids, np.array(["a", "b", "e", "d"]), scores)
    # the last run may be cut by k: a tie with an item beyond it
    assert same_ranking(ids, np.array(["a", "b", "c", "e"]), scores)


def test_answer_differences_name_the_signature_output_and_row() -> None:
    same = {"item_ids": [["a", "b"]], "scores": [[0.9, 0.1]], "fallback": [False]}
    assert answer_differences("s", same, same) == []
    assert answer_differences("s", same, {**same, "fallback": [True]}) == ["s.fallback: [False] vs [True]"]
    assert answer_differences("s", same, {**same, "item_ids": [["b", "a"]]}) == [
        "s.item_ids row 0: ['a', 'b'] vs ['b', 'a']"
    ]
    assert answer_differences("s", same, {**same, "scores": [[0.9, 0.2]]}) == [
        "s.scores: scores differ by up to 0.1"
    ]
    assert answer_differences("s", same, {"score": [0.5]}) == [
        "s: outputs ['fallback', 'item_ids', 'scores'] (TF 2.19) vs ['score'] (TF 2.21)"
    ]
