"""One model interface (`ncf.models.base.Model`): a new model type is one class plus one registry line,
and nothing outside `ncf.models` asks which kind a model is.

The toy type here (a learned bias per item, the same for every user) is registered by the test itself,
then trained, evaluated and exported by train.py's own `run`, and its SavedModel answers `serving_default`.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import train
from conftest import channel_args
from ncf.data.training_data import TrainingData
from ncf.fit.distribute import Workers
from ncf.fit.pair_epochs import EpochSource
from ncf.fit.step_loop import EpochRunner
from ncf.models import registry
from ncf.models.base import Model
from ncf.train_settings import TrainConfig, load_config

TRAINING = Path(__file__).resolve().parents[1] / "training"
MODELS = TRAINING / "ncf" / "models"


@dataclasses.dataclass(frozen=True)
class ItemBiasSpec:
    num_users: int
    num_items: int


class ItemBiasModel(Model):
    """A learned popularity: each item's bias, the same score for every user."""

    def __init__(self, spec: ItemBiasSpec) -> None:
        super().__init__(name="item_bias")
        self.spec = spec
        self.embeddings = {"item_bias": tf.Variable(tf.zeros((spec.num_items, 1)), name="item_bias")}
        self.dense = {"bias": tf.Variable(0.0, name="bias")}

    @classmethod
    def build(cls, model_type: str, config: TrainConfig, data: TrainingData, workers: Workers) -> Model:
        return cls(ItemBiasSpec(len(data.users), len(data.items)))

    @property
    def model_type(self) -> str:
        return "item_bias"

    def epoch_source(self, data: TrainingData, config: TrainConfig, workers: Workers) -> EpochSource:
        return EpochSource(data, config, workers)

    def step_loop(self, config: TrainConfig, workers: Workers) -> EpochRunner:
        return EpochRunner(self, config.learning_rate, config.l2, config.is_implicit, workers)

    def logits(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        return tf.gather(self.embeddings["item_bias"][:, 0], items) + self.dense["bias"]

    def logits_all_items(self, users: tf.Tensor, item_side: tf.Tensor | None = None) -> tf.Tensor:
        row = self.embeddings["item_bias"][:, 0] + self.dense["bias"]
        return tf.tile(row[None, :], [tf.shape(users)[0], 1])

    def similarity_vectors(self, side: str) -> tf.Tensor:
        count = self.num_items if side == "item" else self.num_users
        return tf.ones((count, 1))


@pytest.fixture
def item_bias_type() -> Iterator[str]:
    registry.register(registry.ModelType("item_bias", f"{__name__}:ItemBiasModel"))
    yield "item_bias"
    registry.unregister("item_bias")


def test_a_registered_model_type_trains_exports_and_serves(
    item_bias_type: str, tiny_channels: Path, tmp_path: Path
) -> None:
    flags = [*channel_args(tiny_channels), "--model-dir", str(tmp_path / "model"), "--package", "false"]
    config = load_config([*flags, "--epochs", "3", "--patience", "0", "--learning-rate", "0.05"], {})
    summary = train.run(dataclasses.replace(config, model_type=item_bias_type))

    assert summary["model_type"] == "item_bias" and summary["epochs_run"] == 3
    assert (
        summary["exported_model"]["retrieval"]["reason"]
        == "item_bias has no dot-product part to retrieve with"
    )
    assert 0.0 < summary["test"]["test_hr_at_10"] <= 1.0
    loaded = tf.saved_model.load(str(tmp_path / "model" / "1"))
    # It cannot read a request's events, so the export has no recommend_from_history.
    assert set(loaded.signatures) == {
        "serving_default",
        "recommend_excluding",
        "recommend_with_seen",
        "score",
        "similar_items",
        "similar_users",
    }
    answer = loaded.signatures["serving_default"](user_id=tf.constant(["u0", "u1"]), k=tf.constant(5))
    items, scores = answer["item_ids"].numpy().astype(str), answer["scores"].numpy()
    assert items.shape == (2, 5) and not answer["fallback"].numpy().any()
    assert np.all(np.diff(scores, axis=1) <= 0)  # ranked
    # One score per item whoever asks: an item both users may get scores the same for both.
    common = set(items[0]) & set(items[1])
    assert common, "two users of a popularity model share top items"
    for item in common:
        first, second = scores[0][list(items[0]).index(item)], scores[1][list(items[1]).index(item)]
        assert first == pytest.approx(second)


def test_the_registry_refuses_a_name_twice_and_names_the_registered_types(item_bias_type: str) -> None:
    with pytest.raises(ValueError, match="registered already"):
        registry.register(registry.ModelType(item_bias_type, f"{__name__}:ItemBiasModel"))
    assert registry.model_class(item_bias_type) is ItemBiasModel
    assert registry.names()[:5] == ("neumf", "gmf", "mlp", "mf", "sasrec")


# -- nothing outside ncf/models asks which kind a model is -------------------------------------------


def kind_questions(source: str, filename: str, model_names: set[str]) -> Iterator[str]:
    """`file:line: code` of each `hasattr`/`isinstance` on a model object and of each comparison with
    a registered model type's name."""
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if _asks_a_model(node) or _compares_a_model_name(node, model_names):
            yield f"{filename}:{node.lineno}: {ast.get_source_segment(source, node)}"


def _asks_a_model(node: ast.AST) -> bool:
    """`hasattr(model, ...)`, `isinstance(recommender.model, ...)`, `isinstance(x, SomeModel)`."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 2):
        return False
    if node.func.id not in ("hasattr", "isinstance"):
        return False
    subject, kind = ast.unparse(node.args[0]), ast.unparse(node.args[1])
    return "model" in subject.lower() or kind.endswith("Model")


def _compares_a_model_name(node: ast.AST, model_names: set[str]) -> bool:
    """`x == "sasrec"`, `x != "neumf"`, `x in ("mf", "gmf")`: a string constant that names a type."""
    if not isinstance(node, ast.Compare):
        return False
    for operand in [node.left, *node.comparators]:
        values = operand.elts if isinstance(operand, ast.Tuple | ast.List | ast.Set) else [operand]
        if any(isinstance(v, ast.Constant) and v.value in model_names for v in values):
            return True
    return False


def test_nothing_outside_the_models_package_asks_which_kind_a_model_is() -> None:
    names = set(registry.names())
    found = []
    for path in sorted(TRAINING.rglob("*.py")):
        if MODELS not in path.parents:
            found += kind_questions(path.read_text(), str(path.relative_to(TRAINING)), names)
    assert not found, "branches on the model kind outside ncf/models:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        'if hasattr(model, "remember"): pass',
        'if hasattr(recommender.model, "represent"): pass',
        "foldin = FoldIn(model) if isinstance(model, NcfModel) else None",
        'if model.spec.model_type == "sasrec": pass',
        'if config.model_type != "neumf": pass',
        'if model_type in ("mf", "gmf"): pass',
    ],
)
def test_the_scan_finds_each_way_of_asking(line: str) -> None:
    assert list(kind_questions(line, "x.py", set(registry.names()))) != []


def test_the_scan_leaves_other_comparisons_alone() -> None:
    source = 'if name == "user_bias" or kind == "numeric" or isinstance(value, dict): pass'
    assert list(kind_questions(source, "x.py", set(registry.names()))) == []
