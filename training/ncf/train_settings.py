"""Every setting of a training run, in one dataclass (`TrainConfig`), and how it is resolved.

`load_config` layers the defaults, the SageMaker environment (`SM_*` paths, `SM_HPS`) and the command
line, in that order; the parser is generated from the fields by `ncf.settings_cli`. Unknown flags are
errors, except SageMaker's own `sagemaker_*` / `_tuning_*` bookkeeping. The settings and their
precedence are documented in the README's *Settings* table.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ncf import sagemaker_env
from ncf.choices import (
    FEEDBACK_MODES,
    MIXED_PRECISION_MODES,
    MODEL_TYPES,
    SELECTION_METRICS,
    SEQUENCE_LOSSES,
    SIMILARITY_MEASURES,
)
from ncf.errors import NcfError
from ncf.models import registry
from ncf.models.memory import DEFAULT_MEMORY_BUDGET_MB
from ncf.settings_cli import build_parser as build_settings_parser
from ncf.settings_cli import parse_value
from ncf.settings_cli import setting as _setting


@dataclass(frozen=True)
class TrainConfig:
    """A training run: where data and outputs live, the model, and how it is trained."""

    # Paths; in SageMaker from SM_CHANNEL_*, SM_MODEL_DIR, SM_OUTPUT_DATA_DIR and /opt/ml/checkpoints
    train: str | None = _setting(None, "folder of the train channel (CSV/Parquet files)")
    validation: str | None = _setting(None, "folder of the validation channel")
    test: str | None = _setting(None, "folder of the test channel")
    items: str | None = _setting(
        None, "folder of the optional items channel: item features (prepare.py --item-features)"
    )
    vocabulary: str | None = _setting(
        None, "folder of the vocabulary channel (prepare.py writes it): every id, and item training counts"
    )
    train_sharded: bool | None = _setting(
        None,
        "each worker's train channel holds only its own files (SageMaker ShardedByS3Key); needs the"
        " vocabulary channel (default: what SM_INPUT_DATA_CONFIG says, else no)",
    )
    model_dir: str | None = _setting(None, "where the exported model goes (1/ SavedModel and code/)")
    output_data_dir: str | None = _setting(
        None, "metrics.json, history and the training curve (default: MODEL_DIR/../output)"
    )
    checkpoint_dir: str | None = _setting(
        None, "checkpoint every epoch here and resume from it (default: none locally)"
    )
    inference_code: str | None = _setting(
        None, "folder copied to MODEL_DIR/code (default: the inference/ found next to train.py)"
    )
    package: bool | None = _setting(
        None, "also write model.tar.gz next to MODEL_DIR (default: yes outside SageMaker)"
    )

    # Model
    model_type: str = _setting("neumf", f"one of {', '.join(MODEL_TYPES)}", choices=MODEL_TYPES)
    factors: int = _setting(32, "predictive factors of the GMF/MF embeddings; sasrec: the embedding width")
    mlp_layers: tuple[int, ...] = _setting(
        (64, 32, 16, 8), "MLP layer widths, comma-separated; the first is split between user and item"
    )
    max_len: int = _setting(
        200,
        "sasrec: the most recent items of a user the model reads (and stores per user); long enough to"
        " hold most users' whole history, which matters where order carries little signal",
    )
    attention_blocks: int = _setting(2, "sasrec: causal self-attention blocks")
    attention_heads: int = _setting(
        2, "sasrec: attention heads per block (must divide factors); each learns its own distance bias"
    )
    dropout: float = _setting(0.2, "sasrec: dropout rate of embeddings, attention and feed-forward layers")
    user_embedding: bool = _setting(
        False, "sasrec: add a learned user embedding to the sequence representation (data with weak order)"
    )
    shuffle_ties: bool = _setting(
        True,
        "sasrec: a user's interactions with the same timestamp are a set, trained in an order drawn"
        " afresh every epoch (false: in file order)",
    )
    sequence_loss: str = _setting(
        "auto",
        "sasrec objective: softmax (full-catalog cross-entropy), sampled_softmax (num_neg shared"
        " negatives per step, drawn by popularity, logQ-corrected), bce (the original SASRec loss, num_neg"
        " uniform negatives) or auto (softmax up to softmax_max_items items, sampled_softmax above)",
        choices=SEQUENCE_LOSSES,
    )
    softmax_max_items: int = _setting(
        10_000, "sasrec, sequence_loss auto: the largest catalog trained with the full softmax"
    )
    max_len_quantile: float = _setting(
        0.99,
        "sasrec: the model reads as many items as this share of the users have (rounded up to a multiple"
        " of 8), at most max_len; 1: the longest history",
    )
    mixed_precision: str = _setting(
        "auto",
        "sasrec: compute the training step in bfloat16 (variables, loss and export stay float32): auto (on"
        " a GPU of compute capability 8.0 or later), on, off",
        choices=MIXED_PRECISION_MODES,
    )
    pretrain: bool = _setting(False, "NeuMF only: initialise from a GMF and an MLP trained first (NCF paper)")
    pretrain_epochs: int = _setting(10, "epochs of each pretraining model when --pretrain is on")
    item_features: str = _setting(
        "auto",
        "item features feeding a feature tower on the item side (hybrid NCF; items with features but no"
        " interactions become recommendable cold-start items): auto (the items channel when there is"
        " one), none, or a CSV/Parquet file or folder with an item_id column",
    )
    item_feature_columns: str = _setting(
        "",
        "item feature columns and kinds, NAME:KIND,... with KIND categorical, multi (values separated"
        " by |) or numeric, e.g. genres:multi,year:numeric; empty: every column, kinds inferred",
    )

    # Training
    feedback: str = _setting(
        "implicit",
        "implicit (ranking, BCE with sampled negatives) or explicit (rating regression, MSE)",
        choices=FEEDBACK_MODES,
    )
    epochs: int = _setting(30, "maximum number of epochs (sasrec's default: 200, see SEQUENCE_DEFAULTS)")
    batch_size: int = _setting(2048, "samples per step")
    learning_rate: float = _setting(0.002, "Adam learning rate")
    num_neg: int = _setting(8, "negatives sampled per positive, re-drawn every epoch (implicit only)")
    recency_boost: float = _setting(
        8.0,
        "extra weight of recent interactions: a user's n-th most recent training interaction (n = 0, 1, ...)"
        " weighs 1 + boost * 0.5 ** (n / recency_half_life); 0 weighs all interactions equally",
    )
    recency_half_life: float = _setting(5.0, "interactions after which the extra recency weight halves")
    l2: float = _setting(1e-4, "L2 penalty on the embedding rows of each batch")
    jit_compile: bool = _setting(
        True,
        "compile the training steps with XLA where the model supports it, on one device, for epochs of at"
        " least 1,000 steps (NCF types without item features); false: TensorFlow's graph executor",
    )
    intra_op_threads: int = _setting(
        0,
        "threads that split one TensorFlow op; 0: one per physical core this process may use, capped by"
        " its CPU quota (ncf.fit.threads)",
    )
    inter_op_threads: int = _setting(
        0, "TensorFlow ops run side by side; 0: one per CPU socket this process may use (ncf.fit.threads)"
    )
    seed: int = _setting(42, "seed of initialisation, sampling and shuffling")
    patience: int = _setting(
        5, "stop after this many epochs without a better validation score (0: never; sasrec's default: 10)"
    )
    selection_metric: str = _setting(
        "ndcg",
        "validation metric for early stopping and the best epoch: ndcg, hr, ndcg_full, recall_full"
        " (implicit) or rmse (explicit)",
        choices=SELECTION_METRICS,
    )
    top_k: int = _setting(10, "cut-off of the reported ranking metrics")
    eval_max_users: int = _setting(
        10000,
        "full-catalog metrics (recall/ndcg _full) on at most this many held-out users, a fixed seeded"
        " sample (scoring every item for 138k users takes minutes); sampled metrics use every user;"
        " 0: every user",
    )
    refit: bool = _setting(
        True,
        "after choosing the epoch count on validation, retrain on train + validation for that many"
        " epochs and export that model (the test split is never used for any choice)",
    )
    final_fit: bool = _setting(
        True,
        "after evaluating on test, train the exported model on every interaction (train + validation +"
        " test) for the selected epoch count, so that it knows and excludes each user's latest items;"
        " false exports the evaluated model itself (research runs, scoring the export on the test split)",
    )
    similarity: str = _setting(
        "cosine",
        "measure of the exported similar_items/similar_users signatures: cosine (learned embeddings),"
        " jaccard or pearson (interaction vectors, computed per query from the sparse interactions)",
        choices=SIMILARITY_MEASURES,
    )
    history_blend_weight: float = _setting(
        # Chosen on 150 validation users held out of a SASRec's training, outside every test draw
        # (`bench_newusers.py --parts tuning`, results/newusers.json "blend_tuning"): mean NDCG@10 over
        # 1..20 events 0.184 against 0.172 for the model alone; the weights 0.1..0.9 were tried.
        0.7,
        "sasrec: weight of item-to-item similarity in a short history's next-item distribution"
        " (`ncf.serving.history_blend`, served by recommend_from_history); 0: the model alone",
    )
    history_blend_max_events: int = _setting(
        # Chosen with the weight: the blend helped at every event count tried (1..20), so the threshold
        # is the grid's edge; MovieLens 100K users have 20 events or more, so known users are hardly touched.
        21,
        "sasrec: histories (stored + request) with fewer items than this are blended; 0: none",
    )
    history_blend_neighbours: int = _setting(
        100,  # not tuned (MovieLens 100K: 100 of 1,682 items); the anchor item-kNN sums over all of them
        "sasrec: most similar items kept per item for the blend (8 bytes each in the export); 0: no blend",
    )
    retrieval_candidates: int = _setting(
        20,  # measured: bench_retrieval.py, the smallest N with top-10 overlap >= 0.95 (README)
        "candidates of the exported two-stage top-k on large catalogs: a dot product over precomputed"
        " item vectors retrieves this many, the full model ranks them (NeuMF; MF and GMF are exact dot"
        " products); 0: score every item with the full model (exhaustive)",
    )
    retrieval_min_items: int = _setting(
        20_000,
        "catalogs with fewer items keep exhaustive scoring (fast and exact there); 0: always retrieve",
    )
    popularity_window_days: int = _setting(
        0,
        "the popularity fallback (unknown users, and `score` for them) counts only the interactions of the"
        " last N days of the data, up to its last timestamp (needs timestamps); 0: all of the data",
    )
    memory_budget_mb: int = _setting(
        DEFAULT_MEMORY_BUDGET_MB,
        "MiB that one scoring call may hold, in evaluation and inside the exported model (fixed at export):"
        " users and items are scored in blocks that fit it, attention and MLP activations included, with a"
        " running top-k (README: Memory). The default keeps every call well below what TensorFlow and the"
        " model already hold, with blocks of ~1M (user, item) pairs or more",
    )
    item_fields: str = _setting(
        "auto",
        "columns of the items channel stored in the model and returned with each item on request"
        ' ("item_fields": [...]): auto (all of them when there is an items channel), none, or NAME,NAME',
    )
    filters: str = _setting(
        "auto",
        "named serving filters, a JSON file {name: 'INCLUDE ItemID WHERE Items.col IN ($PARAM)', ...} over"
        " the items channel's columns, exported into the model (README: Filters and promotions): auto"
        " (filters.json in the items channel when there is one), none, or a file",
    )

    @property
    def is_implicit(self) -> bool:
        return self.feedback == "implicit"

    @property
    def item_features_path(self) -> str | None:
        """The item features to train with, resolved from `item_features` and the items channel."""
        if self.item_features == "auto":
            return self.items
        return None if self.item_features == "none" else self.item_features

    @property
    def selection_key(self) -> str:
        """The metric name (as logged) that selects the best epoch."""
        names = {
            "ndcg": f"validation_ndcg_at_{self.top_k}",
            "hr": f"validation_hr_at_{self.top_k}",
            "ndcg_full": f"validation_ndcg_at_{self.top_k}_full",
            "recall_full": f"validation_recall_at_{self.top_k}_full",
            "rmse": "validation_rmse",
        }
        return names[self.selection_metric]

    @property
    def filters_path(self) -> str | None:
        """The filters file to export, resolved from `filters` and the items channel."""
        if self.filters == "none":
            return None
        if self.filters != "auto":
            return self.filters
        found = Path(self.items) / "filters.json" if self.items else None
        return str(found) if found is not None and found.is_file() else None

    @property
    def resolved_output_dir(self) -> Path:
        assert self.model_dir is not None
        return Path(self.output_data_dir) if self.output_data_dir else Path(self.model_dir).parent / "output"

    def training_identity(self) -> dict[str, Any]:
        """The settings a checkpoint must share to be resumed: all but run length, stopping and export."""
        resumable = {"epochs", "pretrain_epochs", "patience", "refit", "final_fit", "similarity"}
        resumable |= {"retrieval_candidates", "retrieval_min_items", "item_fields", "popularity_window_days"}
        resumable |= {
            "memory_budget_mb",
            "jit_compile",
            "intra_op_threads",
            "inter_op_threads",
        }  # not what is trained
        resumable |= {"history_blend_weight", "history_blend_max_events", "history_blend_neighbours"}
        return {k: v for k, v in self.hyperparameters().items() if k not in resumable}

    def hyperparameters(self) -> dict[str, Any]:
        """The settings that define the model and its training (no paths), for logs and metrics.json."""
        return {name: getattr(self, name) for name in HYPERPARAMETERS}


#: Where data, model and outputs live: in SageMaker the job's channels and folders decide them.
PATH_SETTINGS = frozenset(
    {
        "train",
        "validation",
        "test",
        "items",
        "vocabulary",
        "train_sharded",
        "model_dir",
        "output_data_dir",
        "checkpoint_dir",
        "inference_code",
        "package",
        "filters",
    }
)
#: Every other setting: what a job's hyperparameters (and a tuning range) may set, in declaration order.
HYPERPARAMETERS = tuple(f.name for f in fields(TrainConfig) if f.name not in PATH_SETTINGS)


# -- parsing --------------------------------------------------------------------------------------


def _parse_value(name: str, kind: Any, raw: Any) -> Any:
    """Turn a CLI string or SM_HPS value into the setting's type, or say what is wrong with it."""
    return parse_value(f"hyperparameter {name}", str(kind), raw)


def _validate(config: TrainConfig) -> None:
    """Refuse settings that cannot train, naming the setting."""
    for f in fields(config):
        choices = f.metadata.get("choices")
        if choices and getattr(config, f.name) not in choices:
            value = getattr(config, f.name)
            raise NcfError(f"hyperparameter {f.name}: expected one of {', '.join(choices)}, got {value!r}")
    positive = ("epochs", "batch_size", "factors", "top_k", "pretrain_epochs", "memory_budget_mb")
    for name in positive:
        if getattr(config, name) < 1:
            raise NcfError(f"hyperparameter {name}: must be at least 1, got {getattr(config, name)}")
    for name in ("learning_rate", "recency_half_life"):
        if not getattr(config, name) > 0:
            raise NcfError(f"hyperparameter {name}: must be positive, got {getattr(config, name)}")
    non_negative = ("l2", "patience", "num_neg", "recency_boost", "eval_max_users")
    non_negative += ("retrieval_candidates", "retrieval_min_items", "popularity_window_days")
    non_negative += ("intra_op_threads", "inter_op_threads")
    if any(getattr(config, n) < 0 for n in non_negative):
        bad = next(n for n in non_negative if getattr(config, n) < 0)
        raise NcfError(f"hyperparameter {bad}: must not be negative, got {getattr(config, bad)}")
    if config.is_implicit and config.num_neg < 1:
        raise NcfError("hyperparameter num_neg: implicit feedback needs at least 1 negative per positive")
    layers = config.mlp_layers
    if len(layers) < 2 or any(w < 1 for w in layers) or layers[0] % 2:
        shown = ",".join(map(str, layers))
        raise NcfError(
            f"hyperparameter mlp_layers: need at least two positive widths, the first even, got {shown}"
        )
    _validate_sequence_settings(config)
    registered = registry.model_type(config.model_type)
    if registered.check is not None:
        registered.check(config)
    if config.pretrain and not registered.pretrainable:
        raise NcfError(
            f"hyperparameter pretrain: only NeuMF can be pretrained, model_type is {config.model_type}"
        )
    if (config.selection_metric == "rmse") == config.is_implicit:
        hint = "" if config.is_implicit else " (use rmse)"
        raise NcfError(
            f"hyperparameter selection_metric: {config.selection_metric} does not apply to "
            f"{config.feedback} feedback{hint}"
        )
    if config.train_sharded and not config.vocabulary:
        raise NcfError(
            "train_sharded: each worker reads only its own files of the train channel, so every id must come"
            " from the vocabulary channel: pass --vocabulary (SM_CHANNEL_VOCABULARY; `deploy upload` sends"
            " the vocabulary/ folder that prepare.py writes)"
        )
    for name in ("train", "validation", "test", "model_dir"):
        if not getattr(config, name):
            flag = name.replace("_", "-")
            raise NcfError(f"missing --{flag} (or the SageMaker variable {sagemaker_env.variable_for(name)})")


def _validate_sequence_settings(config: TrainConfig) -> None:
    """The ranges of the sequence model's settings (its own rules: `ncf.models.sasrec_settings`)."""
    if config.max_len < 1 or config.attention_blocks < 1 or config.attention_heads < 1:
        raise NcfError("hyperparameters max_len, attention_blocks and attention_heads: must be at least 1")
    if not 0.0 <= config.dropout < 1.0:
        raise NcfError(f"hyperparameter dropout: must be in [0, 1), got {config.dropout}")
    if not 0.0 < config.max_len_quantile <= 1.0:
        raise NcfError(f"hyperparameter max_len_quantile: must be in (0, 1], got {config.max_len_quantile}")
    if config.softmax_max_items < 0:
        raise NcfError(
            f"hyperparameter softmax_max_items: must not be negative, got {config.softmax_max_items}"
        )
    if not 0.0 <= config.history_blend_weight < 1.0:
        weight = config.history_blend_weight
        raise NcfError(f"hyperparameter history_blend_weight: must be in [0, 1), got {weight}")
    for name in ("history_blend_max_events", "history_blend_neighbours"):
        if getattr(config, name) < 0:
            raise NcfError(f"hyperparameter {name}: must not be negative, got {getattr(config, name)}")


def build_parser() -> argparse.ArgumentParser:
    """The command line of train.py, generated from TrainConfig so the two never drift apart."""
    return build_settings_parser(
        TrainConfig,
        prog="train.py",
        description="Train an NCF model, evaluate it, and export a SavedModel serving top-k recommendations.",
    )


def load_config(
    argv: Sequence[str], environ: Mapping[str, str], report: Callable[[str], None] | None = None
) -> TrainConfig:
    """Resolve defaults, SageMaker environment and command line into a validated TrainConfig.

    `report` receives the lines worth logging about how a setting was resolved (the model folder:
    see `sagemaker_env.model_dir`).
    """
    parser = build_parser()
    known, unknown = parser.parse_known_args(list(argv))
    unexpected = [
        a for a in unknown if a.startswith("--") and not a.lstrip("-").startswith(("sagemaker_", "_tuning"))
    ]
    if unexpected:
        raise NcfError(f"unknown option {unexpected[0]} (see train.py --help)")
    names = {f.name for f in fields(TrainConfig)}
    from_env = {k: v for k, v in sagemaker_env.hyperparameters(environ).items() if k in names}
    from_input_config = {"train_sharded": sagemaker_env.train_channel_sharded(environ)}
    values: dict[str, Any] = {
        **sagemaker_env.path_settings(environ),
        **{k: v for k, v in from_input_config.items() if v is not None},
        **from_env,
        **vars(known),
    }
    requested = values.get("model_dir")
    values["model_dir"], note = sagemaker_env.model_dir(
        None if requested is None else str(requested), environ
    )
    if note and report:
        report(note)
    kinds = {f.name: f.type for f in fields(TrainConfig)}
    parsed = {}
    for name, raw in values.items():
        kind = kinds[name]
        parsed[name] = raw if kind in ("str", "str | None") else _parse_value(name, kind, raw)
    if "package" not in parsed:
        parsed["package"] = not sagemaker_env.running_on_sagemaker(environ)
    config = dataclasses.replace(TrainConfig(), **parsed)
    registered = registry.find(config.model_type)  # an unknown type is refused by `_validate`
    if registered is not None:
        unset = {name: value for name, value in registered.defaults.items() if name not in parsed}
        config = dataclasses.replace(config, **unset)
    _validate(config)
    return config
