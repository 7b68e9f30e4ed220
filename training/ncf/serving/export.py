"""Export a trained model as a self-contained SavedModel that serves raw-id top-k.

The artifact is the contract between training and serving. Everything needed to answer a
request lives inside the SavedModel: the id vocabularies (as hash tables), each user's
training items (excluded from recommendations), and item popularity (the answer for users
the model has never seen). No pickles beside it, no Python needed at serving time.

Signatures (string ids in and out; `k` is an int32 scalar, clamped to the catalog size):

- `serving_default(user_id[B], k)` -> `item_ids[B,k]`, `scores[B,k]`, `fallback[B]`
- `recommend_excluding(user_id[B], k, exclude[B,N])`: also excludes a caller's list ("" pads)
- `recommend_with_seen(user_id[B], k, exclude[B,N])`: excludes only the caller's list
- `score(user_id[B], item_id[B])` -> `score[B]`, `fallback[B]`
- `similar_items(item_id[B], k)` -> `item_ids[B,k]`, `scores[B,k]`, `known[B]`: the most similar other
  items by the measure chosen at export (see `ncf.serving.similarity`); unknown ids give `known` false and an
  empty row (no fallback: serving refuses them)
- `similar_users(user_id[B], k)` -> `user_ids[B,k]`, `scores[B,k]`, `known[B]`: the same for users
- `recommend_from_history(user_id[B], history[B,N], k)` -> also `unknown_history[B,N]`: recommendations
  that react to the request's recent events: the sequence model reads them after the stored history,
  the NCF types fold them into the user's rows (see `ncf.serving.history`, `ncf.serving.foldin`)

- `item_fields(item_id[N], field[F])` -> `values[N,F]`: stored item columns (`ncf.serving.item_fields`),
  only in exports with an items channel
- `recommend_filtered`, `similar_items_filtered`, `recommend_from_history_filtered`: only in exports with
  filters, the same answers among the items that pass a declared filter (see `ncf.serving.filtered`)

When fewer than k items are eligible the tail of a row has item id "" and score 0.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from ncf.data.vocab import UserItemSets, Vocabulary
from ncf.errors import NcfError
from ncf.models.base import Model
from ncf.models.memory import DEFAULT_MEMORY_BUDGET_MB, CatalogCost, block_shape, budget_bytes
from ncf.serving.blocked import StateOfRows, blocked_top_k, map_row_blocks
from ncf.serving.filtered import filtered_signatures
from ncf.serving.filters import FilterSet
from ncf.serving.foldin import FoldInSettings
from ncf.serving.history import history_signatures
from ncf.serving.history_blend import BlendSettings
from ncf.serving.item_fields import ItemFieldTable, item_field_signatures
from ncf.serving.retrieval import EXHAUSTIVE, RetrievalChoice, TwoStageTopK, choose
from ncf.serving.similarity import SimilarityIndex, build_indexes
from ncf.serving.topk import ids_of
from ncf.train_settings import TrainConfig

SAVED_MODEL_VERSION = "1"
# Floats per (user, item) that ranking adds to the model's own scoring: the served score, the
# popularity fallback's choice, a filter's mask and the exclusions' copy.
SERVING_FLOATS_PER_PAIR = 4
_IDS = tf.TensorSpec([None], tf.string)
_K = tf.TensorSpec([], tf.int32)
_EXCLUDE = tf.TensorSpec([None, None], tf.string)


def _string_table(ids: np.ndarray) -> tf.lookup.StaticHashTable:
    keys = tf.constant(ids.astype(str))
    values = tf.range(len(ids), dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)


class Recommender(tf.Module):
    """The served module: raw ids in, top-k raw ids and scores out."""

    def __init__(
        self,
        model: Model,
        users: Vocabulary,
        items: Vocabulary,
        seen: UserItemSets,
        popularity: np.ndarray,
        implicit: bool,
        similarity: str = "cosine",
        retrieval: RetrievalChoice | None = None,
        foldin: FoldInSettings | None = None,
        filters: FilterSet | None = None,
        item_fields: ItemFieldTable | None = None,
        memory_budget_bytes: int = budget_bytes(DEFAULT_MEMORY_BUDGET_MB),
        history_blend: BlendSettings | None = None,
    ) -> None:
        """`retrieval`: the top-k strategy (`ncf.serving.retrieval.choose`); None: chosen with the defaults.
        `foldin`: the NCF types' history fold-in constants (`ncf.serving.foldin`); None: the defaults.
        `filters`: the declared filters and item attributes (`ncf.serving.filters`); None: no filters.
        `item_fields`: the item columns returned on request (`ncf.serving.item_fields`); None: none.
        `memory_budget_bytes`: what one block of a signature's work may hold (`ncf.serving.blocked`),
        fixed in the SavedModel (`TrainConfig.memory_budget_mb`).
        `history_blend`: a sequence model's short-history blend with item-to-item similarity learned from
        `seen` (`ncf.serving.history_blend`); None: no blend (train.py passes the configured one)."""
        super().__init__(name="recommender")
        self.model = model
        self.memory_budget_bytes = memory_budget_bytes
        self.implicit = implicit
        self.num_users = len(users)
        self.num_items = len(items)
        self.user_index = _string_table(users.ids)
        self.item_index = _string_table(items.ids)
        self.item_ids = tf.Variable(items.ids.astype(str), trainable=False, name="item_ids")
        self.popularity = tf.Variable(popularity.astype(np.float32), trainable=False, name="popularity")
        # One extra empty row at the end: the "seen" list of an unknown user.
        offsets = np.concatenate([seen.offsets, seen.offsets[-1:]]).astype(np.int64)
        self.seen_offsets = tf.Variable(offsets, trainable=False, name="seen_offsets")
        self.seen_items = tf.Variable(seen.items.astype(np.int64), trainable=False, name="seen_items")
        item_side = model.precomputed_item_side()  # the attribute keeps its name: the SavedModel's layout
        self.mlp_item_half = (
            None if item_side is None else tf.Variable(item_side, trainable=False, name="mlp_item_half")
        )
        self.user_ids = tf.Variable(users.ids.astype(str), trainable=False, name="user_ids")
        self.similar_item_index, self.similar_user_index = build_indexes(
            similarity, model, seen, len(items), memory_budget_bytes
        )
        if retrieval is None:
            defaults = TrainConfig.retrieval_candidates, TrainConfig.retrieval_min_items
            retrieval = choose(model.model_type, len(items), *defaults)
        self.retrieval_choice = retrieval
        # Readable from the loaded SavedModel: `json.loads(loaded.retrieval_metadata.numpy())`.
        self.retrieval_metadata = tf.Variable(retrieval.as_json(), trainable=False, name="retrieval_metadata")
        two_stage = retrieval.mode != EXHAUSTIVE
        self.retrieval = TwoStageTopK(model, retrieval, implicit, memory_budget_bytes) if two_stage else None
        self.foldin = model.fold_in(foldin)
        self.history_blend = model.history_blend(history_blend, seen)
        self.filters = filters
        self.item_fields = item_fields

    def lookup_users(self, user_id: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(known [B], index [B]) of raw user ids; unknown ids get index 0 and known false."""
        index = self.user_index.lookup(user_id)
        known = index >= 0
        return known, tf.cast(tf.where(known, index, 0), tf.int32)

    def scale(self, logits: tf.Tensor) -> tf.Tensor:
        """Served scores: probabilities for implicit feedback, predicted ratings for explicit."""
        return tf.sigmoid(logits) if self.implicit else logits

    def top_k(
        self,
        user_id: tf.Tensor,
        k: tf.Tensor,
        exclude: tf.Tensor | None,
        exclude_seen: bool | tf.Tensor,
        allowed: tf.Tensor | None = None,
    ) -> dict:
        """The signatures' answer: top-k ids, scores and fallback flags, among the items `allowed` keeps."""
        known, users = self.lookup_users(user_id)
        excluded = self.excluded(known, users, exclude, exclude_seen)
        if self.retrieval is not None:
            indices, top_scores = self.retrieval.top_k(users, known, self.popularity, excluded, k, allowed)
        else:  # every model type, the sequence model too, scores the catalog from user indices

            def state(start: tf.Tensor, stop: tf.Tensor) -> dict[str, tf.Tensor]:
                return self.model.catalog_state(users[start:stop])

            indices, top_scores = self.ranked(state, known, excluded, k, allowed)
        return {
            "item_ids": ids_of(indices, self.item_ids),
            "scores": top_scores,
            "fallback": tf.logical_not(known),
        }

    def ranked(
        self,
        state_of_rows: StateOfRows,
        personal: tf.Tensor,
        excluded: tf.Tensor | None,
        k: tf.Tensor,
        allowed: tf.Tensor | None = None,
        extra_per_user: int = 0,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The exhaustive top-k of every item's score for the users whose `Model.catalog_state` of rows
        [start, stop) is `state_of_rows(start, stop)`, in blocks within the memory budget; rows with
        `personal` false rank by popularity; items a filter's mask `allowed` drops are never ranked.
        `extra_per_user`: floats per user that computing the state adds (a fold-in's steps)."""
        model, item_side, popularity = self.model, self.mlp_item_half, self.popularity

        def state(start: tf.Tensor, stop: tf.Tensor) -> tuple:
            return state_of_rows(start, stop), personal[start:stop]

        def scores(rows: tuple, start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor:
            logits = model.catalog_block_logits(rows[0], start, stop, item_side)
            return tf.where(rows[1][:, None], self.scale(logits), popularity[None, start:stop])

        cost = model.catalog_cost().plus(per_user=extra_per_user, per_pair=SERVING_FLOATS_PER_PAIR)
        shape = block_shape(cost, self.num_items, self.memory_budget_bytes)
        return blocked_top_k(
            state, scores, tf.shape(personal)[0], self.num_items, shape, excluded, k, allowed
        )

    def excluded(
        self, known: tf.Tensor, users: tf.Tensor, exclude: tf.Tensor | None, exclude_seen: bool | tf.Tensor
    ) -> tf.Tensor | None:
        """(row, item) coordinates never to recommend: the user's seen items (when `exclude_seen`, a
        Python bool or a request's bool scalar) and the caller's list."""
        excluded = []
        if exclude_seen is not False:
            rows = tf.where(known, users, self.num_users)
            seen = tf.RaggedTensor.from_row_splits(self.seen_items, self.seen_offsets, validate=False)
            user_seen = tf.gather(seen, rows)
            coordinates = tf.stack([user_seen.value_rowids(), user_seen.flat_values], axis=1)
            if isinstance(exclude_seen, tf.Tensor):
                coordinates = coordinates[: tf.where(exclude_seen, tf.shape(coordinates)[0], 0)]
            excluded.append(coordinates)
        if exclude is not None:
            listed = self.item_index.lookup(exclude)
            where = tf.where(listed >= 0)
            excluded.append(tf.stack([where[:, 0], tf.gather_nd(listed, where)], axis=1))
        return tf.concat(excluded, axis=0) if excluded else None

    @tf.function(input_signature=[_IDS, _K])
    def recommend(self, user_id: tf.Tensor, k: tf.Tensor) -> dict:
        return self.top_k(user_id, k, None, exclude_seen=True)

    @tf.function(input_signature=[_IDS, _K, _EXCLUDE])
    def recommend_excluding(self, user_id: tf.Tensor, k: tf.Tensor, exclude: tf.Tensor) -> dict:
        return self.top_k(user_id, k, exclude, exclude_seen=True)

    @tf.function(input_signature=[_IDS, _K, _EXCLUDE])
    def recommend_with_seen(self, user_id: tf.Tensor, k: tf.Tensor, exclude: tf.Tensor) -> dict:
        return self.top_k(user_id, k, exclude, exclude_seen=False)

    @tf.function(input_signature=[_IDS, _IDS])
    def score(self, user_id: tf.Tensor, item_id: tf.Tensor) -> dict:
        known_user, users = self.lookup_users(user_id)
        item_index = self.item_index.lookup(item_id)
        known_item = item_index >= 0
        items = tf.cast(tf.where(known_item, item_index, 0), tf.int32)
        modelled = self.scale(self.pair_logits(users, items))
        fallback_score = tf.where(known_item, tf.gather(self.popularity, items), 0.0)
        both = tf.logical_and(known_user, known_item)
        return {"score": tf.where(both, modelled, fallback_score), "fallback": tf.logical_not(both)}

    def pair_logits(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        """`Model.logits` of aligned pairs, in blocks of pairs within the memory budget (a sequence model
        encodes each distinct user of a block)."""
        cost = self.model.catalog_cost()
        per_pair = CatalogCost(per_user=0, per_pair=cost.per_user + cost.per_pair)  # each pair's own user
        pairs = block_shape(per_pair, 1, self.memory_budget_bytes).rows
        (logits,) = map_row_blocks(
            lambda start, stop: (self.model.logits(users[start:stop], items[start:stop]),),
            tf.shape(users)[0],
            pairs,
            (tf.float32,),
            ranks=(1,),
        )
        return logits

    @tf.function(input_signature=[_IDS, _K])
    def similar_items(self, item_id: tf.Tensor, k: tf.Tensor) -> dict:
        return self.similar_items_among(item_id, k, None)

    def similar_items_among(self, item_id: tf.Tensor, k: tf.Tensor, allowed: tf.Tensor | None) -> dict:
        """`similar_items`' answer among the items a filter's mask `allowed` keeps (all when None)."""
        index = self.similar_item_index
        return _similar(self.item_index, index, self.item_ids, item_id, k, "item_ids", allowed)

    @tf.function(input_signature=[_IDS, _K])
    def similar_users(self, user_id: tf.Tensor, k: tf.Tensor) -> dict:
        return _similar(self.user_index, self.similar_user_index, self.user_ids, user_id, k, "user_ids")

    def signatures(self) -> dict:
        return {
            "serving_default": self.recommend,
            "recommend_excluding": self.recommend_excluding,
            "recommend_with_seen": self.recommend_with_seen,
            "score": self.score,
            "similar_items": self.similar_items,
            "similar_users": self.similar_users,
            **history_signatures(self),
            **filtered_signatures(self),
            **item_field_signatures(self),
        }


def _similar(
    table: tf.lookup.StaticHashTable,
    index: SimilarityIndex,
    ids: tf.Variable,
    query: tf.Tensor,
    k: tf.Tensor,
    output: str,
    allowed: tf.Tensor | None = None,
) -> dict:
    """Raw ids and scores of the rows most similar to each query id (among the rows `allowed` keeps);
    unknown ids get `known` false."""
    position = table.lookup(query)
    known = position >= 0
    rows, scores = index.top_k(tf.where(known, position, 0), k, allowed)
    found = tf.logical_and(known[:, None], rows >= 0)
    return {
        output: ids_of(tf.where(found, rows, -1), ids),
        "scores": tf.where(found, scores, 0.0),
        "known": known,
    }


def save_recommender(recommender: Recommender, model_dir: Path) -> Path:
    """Write the SavedModel to MODEL_DIR/1, the numbered layout TF Serving requires."""
    target = model_dir / SAVED_MODEL_VERSION
    if target.exists():
        shutil.rmtree(target)
    tf.saved_model.save(recommender, str(target), signatures=recommender.signatures())
    return target


def copy_inference_code(source: Path, model_dir: Path) -> Path:
    """Copy the serving handler into MODEL_DIR/code, where the TF Serving container looks for it."""
    if not (source / "inference.py").is_file():
        raise NcfError(
            f"{source}: no inference.py there; pass --inference-code pointing at the inference/ folder"
        )
    target = model_dir / "code"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"))
    return target


def write_model_archive(model_dir: Path, archive: Path) -> Path:
    """model.tar.gz with 1/ and code/ at its root, as SageMaker packs SM_MODEL_DIR; written atomically."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=archive.parent, suffix=".tmp", delete=False) as handle:
        partial = Path(handle.name)
    try:
        with tarfile.open(partial, "w:gz") as tar:
            for entry in sorted(model_dir.iterdir()):
                tar.add(entry, arcname=entry.name)
        partial.replace(archive)
    finally:
        partial.unlink(missing_ok=True)
    return archive
