"""Filters at serving time (`ncf.serving.filter_grammar`, `ncf.serving.filters`, `ncf.serving.filtered`)."""

from __future__ import annotations

import functools
import json
import re
import time

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from filter_fixtures import (
    BRANDS,
    EVENT_TYPES,
    Interacted,
    item_features,
    item_table,
    passes,
    random_filters,
    random_interaction_filters,
)
from ncf.data.interaction_log import SECONDS_PER_DAY, InteractionLog
from ncf.data.vocab import UserItemSets, Vocabulary
from ncf.errors import NcfError
from ncf.models.ncf_models import ModelSpec, NcfModel
from ncf.serving.export import Recommender, save_recommender
from ncf.serving.filter_checks import InteractionColumns, ItemAttributes, check_filters, read_filter_file
from ncf.serving.filter_grammar import Comparison, FilterSyntaxError, Junction, Literal, Param, parse_filter
from ncf.serving.filters import FilterSet
from ncf.serving.interaction_store import InteractionStore, Requesters
from ncf.serving.retrieval import choose

NUM_USERS, NUM_ITEMS = 40, 300
USERS = Vocabulary.from_values(pd.Series([f"u{i}" for i in range(NUM_USERS)]))
ITEMS = Vocabulary.from_values(pd.Series([f"i{j}" for j in range(NUM_ITEMS)]))
RNG = np.random.default_rng(11)
SEEN = UserItemSets.build(
    np.repeat(np.arange(NUM_USERS), 10), RNG.integers(0, NUM_ITEMS, NUM_USERS * 10), NUM_USERS
)
POPULARITY = RNG.dirichlet(np.ones(NUM_ITEMS)).astype(np.float32)
# The features file lists items in another order than the vocabulary, and one item the model lacks.
FEATURE_IDS = [*reversed(ITEMS.ids.astype(str)), "not-in-catalog"]
TABLE = item_table(FEATURE_IDS, seed=5)
ATTRIBUTES = ItemAttributes.from_features(item_features(FEATURE_IDS, seed=5), ITEMS.ids)
NOW = tf.constant(0.0, tf.float64)  # `now` of a request: the serving clock
# Each seen (user, item) pair is an interaction: an event type and a time up to 100 days before the last.
REFERENCE = 1_700_000_000
TIMES = REFERENCE - RNG.integers(0, 100 * SECONDS_PER_DAY, len(SEEN.items))
TIMES[0] = REFERENCE
EVENTS = RNG.integers(0, len(EVENT_TYPES), len(SEEN.items)).astype(np.int16)
LOG = InteractionLog.build(SEEN.row_ids(), SEEN.items, TIMES, EVENTS, NUM_USERS, EVENT_TYPES)
COLUMNS = InteractionColumns(EVENT_TYPES, has_times=True)
LATER = REFERENCE + 3 * SECONDS_PER_DAY  # the `now` of the interaction filter tests
ALIGNED = TABLE.set_index("item_id").loc[ITEMS.ids.astype(str)].reset_index()  # the vocabulary's order


# -- grammar -------------------------------------------------------------------------------------------


def test_parses_the_grammar_into_a_typed_tree() -> None:
    (first, second) = parse_filter(
        'include itemid where Items.genres IN ($GENRES, "Drama") AND (Items.year < 1990 OR Items.ok = true)'
        " | EXCLUDE ItemID WHERE Items.price NOT IN (1.5, -2)"
    )
    assert first.include and not second.include
    assert isinstance(first.condition, Junction) and first.condition.conjunction
    genres, either = first.condition.parts
    assert genres == Comparison("genres", "IN", (Param("GENRES"), Literal("Drama")), 21)
    assert isinstance(either, Junction) and not either.conjunction
    assert either.parts[1] == Comparison("ok", "=", (Literal(True),), 82)
    assert second.condition == Comparison("price", "NOT IN", (Literal(1.5), Literal(-2.0)), 122)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected INCLUDE or EXCLUDE, found 'the end of the filter' at position 0"),
        ("INCLUDE ItemID Items.a = 1", "expected 'WHERE', found 'Items.a' at position 15"),
        ("INCLUDE ItemID WHERE Items.a ~ 1", "unexpected character '~' at position 29"),
        ("INCLUDE ItemID WHERE Items.a LIKE 1", "expected an operator"),
        ("INCLUDE ItemID WHERE Items.a IN 1", "expected '(', found '1' at position 32"),
        ("INCLUDE ItemID WHERE Items.a = $lower", "unexpected character '$' at position 31"),
        ("INCLUDE ItemID WHERE (Items.a = 1", "expected ')', found 'the end of the filter' at position 33"),
        ("INCLUDE ItemID WHERE Items.a = 1 EXCLUDE", "expected '|', 'AND', 'OR' or the end"),
        (
            "INCLUDE ItemID WHERE a = 1",
            "expected Items.<column>, Interactions.<column> or '(', found 'A' at position 21",
        ),
    ],
)
def test_syntax_errors_name_the_position(text: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError, match=re.escape(message)):
        parse_filter(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("INCLUDE ItemID WHERE Items.colour = 1", "Items.colour at position 21: no such item column"),
        ("INCLUDE ItemID WHERE Items.genres < 3", "< does not apply to a multi column"),
        ("INCLUDE ItemID WHERE Items.on_sale IN (true)", "IN does not apply to a boolean column"),
        ('INCLUDE ItemID WHERE Items.year = "new"', '"new" is not a numeric value'),
        ('INCLUDE ItemID WHERE Items.brand = "nope"', "'nope' is not a value of the column"),
        ("INCLUDE ItemID WHERE Items.brand = $X AND Items.year > $X", r"\$X is used twice"),
        ("INCLUDE ItemID WHERE", "filter 'f': expected Items.<column>"),
    ],
)
def test_filters_are_checked_against_the_item_columns(text: str, message: str) -> None:
    with pytest.raises(NcfError, match=message):
        check_filters({"f": text}, ATTRIBUTES)


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        (
            'INCLUDE ItemID WHERE Interactions.event_type = "purchase"',
            InteractionColumns(None, True),
            "Interactions.event_type at position 21: the training data has no event types (prepare.py"
            " reads them with --event-type-col NAME)",
        ),
        (
            "EXCLUDE ItemID WHERE Interactions.age_days < 30",
            InteractionColumns(EVENT_TYPES, False),
            "no timestamps",
        ),
        ("EXCLUDE ItemID WHERE Interactions.colour = 1", COLUMNS, "no such interaction column"),
        (
            'EXCLUDE ItemID WHERE Interactions.event_type = "refund"',
            COLUMNS,
            "'refund' is not a value of the column",
        ),
        (
            'EXCLUDE ItemID WHERE Interactions.event_type < "view"',
            COLUMNS,
            "< does not apply to a categorical",
        ),
        ('EXCLUDE ItemID WHERE Interactions.age_days = "old"', COLUMNS, '"old" is not a numeric value'),
    ],
)
def test_interaction_filters_are_checked_against_the_data(
    text: str, columns: InteractionColumns, message: str
) -> None:
    check_filters({"f": text}, ATTRIBUTES)  # before the data is loaded: Interactions are not checked yet
    with pytest.raises(NcfError, match=re.escape(message)):
        check_filters({"f": text}, ATTRIBUTES, columns)


def test_interaction_filter_requests_are_checked_and_refused_without_a_user() -> None:
    filters = filter_set({"bought": "EXCLUDE ItemID WHERE Interactions.event_type IN ($EVENTS)"})
    names, rows = params({"EVENTS": ["purchase", "refund"]})
    one_user = Requesters(tf.constant([True]), tf.constant([0]), tf.constant(0.0, tf.float64))
    allowed, error = filters.evaluate(tf.constant("bought"), names, rows, one_user)
    assert error.numpy().decode() == "'refund' is not a value of Interactions.event_type ($EVENTS)"
    assert not allowed.numpy().any()
    allowed, error = evaluate(filters, "bought", {"EVENTS": ["purchase"]})  # similar_items: no user
    assert "filter 'bought' compares the user's interactions" in error and not allowed.any()


def test_filter_file_must_be_an_object_of_texts(tmp_path) -> None:
    path = tmp_path / "filters.json"
    path.write_text('["INCLUDE ItemID WHERE Items.year > 1"]')
    with pytest.raises(NcfError, match="expected a JSON object"):
        read_filter_file(path)
    path.write_text('{"old": "INCLUDE ItemID WHERE Items.year < 1990"}')
    assert read_filter_file(path) == {"old": "INCLUDE ItemID WHERE Items.year < 1990"}


# -- compact storage ---------------------------------------------------------------------------------


def test_attributes_are_stored_compactly_in_vocabulary_order() -> None:
    assert ATTRIBUTES.kinds == {
        "genres": "multi",
        "year": "numeric",
        "brand": "categorical",
        "on_sale": "boolean",
    }
    assert ATTRIBUTES.arrays["genres"].dtype == np.int32 and ATTRIBUTES.arrays["genres"].shape == (
        NUM_ITEMS,
        2,
    )
    assert ATTRIBUTES.arrays["brand"].dtype == np.int32 and ATTRIBUTES.arrays["on_sale"].dtype == np.uint8
    assert ATTRIBUTES.arrays["year"].dtype == np.float32
    brands = np.array(ATTRIBUTES.vocabularies["brand"])[ATTRIBUTES.arrays["brand"]]
    np.testing.assert_array_equal(brands, ALIGNED["brand"])
    assert set(ATTRIBUTES.vocabularies["brand"]) == set(BRANDS)


# -- masks -------------------------------------------------------------------------------------------


def filter_set(texts: dict[str, str]) -> FilterSet:
    store = InteractionStore(LOG, NUM_ITEMS)
    return FilterSet(check_filters(texts, ATTRIBUTES, COLUMNS), ATTRIBUTES, store, EVENT_TYPES)


def interacted(user: int, now: float = LATER) -> Interacted:
    """The reference's view of a user's stored interactions at `now`."""
    found: Interacted = {}
    for position in range(SEEN.offsets[user], SEEN.offsets[user + 1]):
        age = (now - TIMES[position]) / SECONDS_PER_DAY
        found.setdefault(int(SEEN.items[position]), []).append((EVENT_TYPES[EVENTS[position]], age))
    return found


def expected_masks(text: str, values: dict[str, list[str]]) -> np.ndarray:
    """[users, items]: the reference's verdict for every user."""
    return np.stack([passes(text, values, ALIGNED, interacted(u)) for u in range(NUM_USERS)])


def evaluate(filters: FilterSet, name: str, values: dict[str, list[str]]) -> tuple[np.ndarray, str]:
    names, rows = params(values)
    allowed, error = filters.evaluate(tf.constant(name), names, rows)
    return allowed.numpy(), error.numpy().decode()


def params(values: dict[str, list[str]]) -> tuple[tf.Tensor, tf.Tensor]:
    """The request's parameters as the signatures take them: names [P], values [P, V] ("" pads)."""
    width = max([1, *(len(v) for v in values.values())])
    rows = [v + [""] * (width - len(v)) for v in values.values()]
    return tf.constant(list(values), tf.string), tf.constant(rows or np.zeros((0, 1), str), tf.string)


def test_masks_equal_the_reference_for_random_filters() -> None:
    rng = np.random.default_rng(3)
    for trial in range(3):
        cases = random_filters(rng)
        filters = filter_set({f"f{i}": text for i, (text, _) in enumerate(cases)})
        for i, (text, values) in enumerate(cases):
            allowed, error = evaluate(filters, f"f{i}", values)
            assert error == "", (text, values)
            np.testing.assert_array_equal(allowed, passes(text, values, ALIGNED), err_msg=f"{trial}: {text}")


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("nope", {}, re.escape("unknown filter 'nope' (this model's filters: by_genre, by_year, on_sale)")),
        ("by_genre", {}, r"filter 'by_genre' needs a value for \$GENRES"),
        ("by_genre", {"GENRES": ["g1"], "X": ["1"]}, r"filter 'by_genre' has no parameter \$X"),
        ("by_genre", {"GENRES": ["g1", "Comdy"]}, r"'Comdy' is not a value of Items.genres \(\$GENRES\)"),
        ("by_year", {"MAX_YEAR": ["soon"]}, r"\$MAX_YEAR must be a number, got 'soon'"),
        ("by_year", {"MAX_YEAR": ["1990", "2000"]}, r"\$MAX_YEAR takes one value, got 2"),
        ("on_sale", {"SALE": ["yes"]}, r"\$SALE must be true or false, got 'yes'"),
    ],
)
def test_bad_parameters_give_an_error_and_an_empty_mask(name: str, values: dict, message: str) -> None:
    filters = filter_set(
        {
            "by_genre": "INCLUDE ItemID WHERE Items.genres IN ($GENRES)",
            "by_year": "INCLUDE ItemID WHERE Items.year <= $MAX_YEAR",
            "on_sale": "INCLUDE ItemID WHERE Items.on_sale = $SALE",
        }
    )
    allowed, error = evaluate(filters, name, values)
    assert not allowed.any()
    assert re.search(message, error), error


# -- signatures --------------------------------------------------------------------------------------


def model_of(model_type: str) -> NcfModel:
    return NcfModel(ModelSpec(model_type, NUM_USERS, NUM_ITEMS, 4, (8, 4)), seed=3, init_stddev=0.5)


def recommender(model: NcfModel, candidates: int, texts: dict[str, str]) -> Recommender:
    choice = choose(model.spec.model_type, NUM_ITEMS, candidates, min_items=0)
    return Recommender(
        model, USERS, ITEMS, SEEN, POPULARITY, True, retrieval=choice, filters=filter_set(texts)
    )


def expected_top_k(
    model: NcfModel, allowed: np.ndarray, k: int, exclude_seen: bool = True
) -> list[list[str]]:
    """Each user's exhaustive top-k over (unseen) items that pass (`allowed`: [items] or [users, items]),
    computed from the scores in numpy."""
    scores = tf.sigmoid(model.logits_all_items(tf.range(NUM_USERS))).numpy()
    scores[~np.broadcast_to(allowed, scores.shape)] = -np.inf
    for user in range(NUM_USERS if exclude_seen else 0):
        scores[user, SEEN.items[SEEN.offsets[user] : SEEN.offsets[user + 1]]] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[ITEMS.ids[i] for i in row if np.isfinite(scores[u, i])] for u, row in enumerate(order)]


@functools.cache
def signatures_of(rec: Recommender) -> dict:
    """`rec.signatures()` once per recommender: each call makes new tf.functions, traced again when called."""
    return rec.signatures()


def filtered_answer(rec: Recommender, name: str, values: dict, k: int, exclude_seen: bool = True, now=NOW):
    names, rows = params(values)
    users = tf.constant(USERS.ids.astype(str))
    return signatures_of(rec)["recommend_filtered"](
        user_id=users,
        k=tf.constant(k),
        exclude=tf.constant([[""]] * NUM_USERS),
        exclude_seen=tf.constant(exclude_seen),
        filter=tf.constant(name),
        filter_names=names,
        filter_values=rows,
        now=tf.constant(now, tf.float64),
    )


@pytest.mark.parametrize(("model_type", "candidates"), [("neumf", 0), ("mf", 10), ("neumf", NUM_ITEMS)])
def test_filtered_top_10_is_the_exhaustive_top_10_of_the_items_that_pass(
    model_type: str, candidates: int
) -> None:
    """Exhaustive scoring, MF's exact dot product through retrieval, and NeuMF's two stages with N covering
    the catalog: the answer is the top-10 computed from the scores over the passing items."""
    rng = np.random.default_rng(8)
    cases = random_filters(rng)
    model = model_of(model_type)
    rec = recommender(model, candidates, {f"f{i}": text for i, (text, _) in enumerate(cases)})
    for i, (text, values) in enumerate(cases):
        out = filtered_answer(rec, f"f{i}", values, 10)
        assert set(out["filter_error"].numpy()) == {b""}
        got = [[x.decode() for x in row if x] for row in out["item_ids"].numpy()]
        assert got == expected_top_k(model, passes(text, values, ALIGNED), 10), text


@pytest.mark.parametrize(("model_type", "candidates"), [("neumf", 0), ("mf", 10), ("neumf", NUM_ITEMS)])
def test_interaction_filters_give_the_exhaustive_top_10_of_what_passes_for_each_user(
    model_type: str, candidates: int
) -> None:
    """Interaction filters (alone, ANDed and ORed with item conditions, with parameters), seen items
    allowed (they are the items interaction filters decide on), ages at `now` 3 days after the data."""
    cases = random_interaction_filters(np.random.default_rng(21))
    model = model_of(model_type)
    rec = recommender(model, candidates, {f"f{i}": text for i, (text, _) in enumerate(cases)})
    for i, (text, values) in enumerate(cases):
        out = filtered_answer(rec, f"f{i}", values, 10, exclude_seen=False, now=float(LATER))
        assert set(out["filter_error"].numpy()) == {b""}
        got = [[x.decode() for x in row if x] for row in out["item_ids"].numpy()]
        allowed = expected_masks(text, values)
        assert 0 < allowed.mean() < 1, text  # a filter that decides something
        assert got == expected_top_k(model, allowed, 10, exclude_seen=False), text


def test_interaction_masks_follow_the_stored_interactions() -> None:
    """Per user: the masks equal the reference's, ages counted from `now`; unknown users have no
    interactions (EXCLUDE keeps every item, INCLUDE on interactions alone keeps none)."""
    cases = random_interaction_filters(np.random.default_rng(5))
    cases.append(('INCLUDE ItemID WHERE Interactions.event_type != "view"', {}))
    filters = filter_set({f"f{i}": text for i, (text, _) in enumerate(cases)})
    ids = np.array([*range(NUM_USERS), 0])
    requesters = Requesters(
        tf.constant([True] * NUM_USERS + [False]),
        tf.constant(ids, tf.int32),
        tf.constant(float(LATER), tf.float64),
    )
    for i, (text, values) in enumerate(cases):
        names, rows = params(values)
        allowed, error = filters.evaluate(tf.constant(f"f{i}"), names, rows, requesters)
        assert error.numpy() == b""
        np.testing.assert_array_equal(allowed.numpy()[:NUM_USERS], expected_masks(text, values), err_msg=text)
        np.testing.assert_array_equal(
            allowed.numpy()[NUM_USERS], passes(text, values, ALIGNED, {}), err_msg=text
        )


def test_ages_count_from_the_serving_clock_without_now() -> None:
    """now = 0: the interaction made at the data's last timestamp (10 days ago on the serving clock) is
    10 days old."""
    reference = int(time.time()) - 10 * SECONDS_PER_DAY
    log = InteractionLog.build(
        SEEN.row_ids(), SEEN.items, TIMES - REFERENCE + reference, EVENTS, NUM_USERS, EVENT_TYPES
    )
    texts = {"young": "INCLUDE ItemID WHERE Interactions.age_days > 9.9 AND Interactions.age_days < 10.1"}
    filters = FilterSet(
        check_filters(texts, ATTRIBUTES, COLUMNS), ATTRIBUTES, InteractionStore(log, NUM_ITEMS), EVENT_TYPES
    )
    user = int(LOG.offsets.searchsorted(0, side="right")) - 1  # the user of the first stored interaction
    requesters = Requesters(tf.constant([True]), tf.constant([user]), tf.constant(0.0, tf.float64))
    allowed, _ = filters.evaluate(tf.constant("young"), *params({}), requesters)
    assert allowed.numpy()[0, SEEN.items[0]]


def test_two_stage_is_never_starved_by_a_selective_filter() -> None:
    """A filter keeping ~1.5 % of the items, and 5 retrieval candidates: still 10 passing items per user
    (the mask applies before the candidate cut), as many as pass for the users with fewer."""
    rec = recommender(model_of("neumf"), 5, {"rare": "INCLUDE ItemID WHERE Items.genres IN ($G)"})
    allowed = passes("INCLUDE ItemID WHERE Items.genres IN ($G)", {"G": ["g7"]}, ALIGNED)
    assert 10 < allowed.sum() < 0.1 * NUM_ITEMS
    out = filtered_answer(rec, "rare", {"G": ["g7"]}, 10)
    passing = set(ITEMS.ids[allowed])
    for user, row in enumerate(out["item_ids"].numpy()):
        unseen = passing - set(ITEMS.ids[SEEN.items[SEEN.offsets[user] : SEEN.offsets[user + 1]]])
        returned = [x.decode() for x in row if x]
        assert len(returned) == min(10, len(unseen)) and set(returned) <= unseen


def test_unknown_users_get_the_most_popular_items_that_pass() -> None:
    rec = recommender(model_of("neumf"), 0, {"old": "INCLUDE ItemID WHERE Items.year < 1990"})
    out = rec.signatures()["recommend_filtered"](
        user_id=tf.constant(["stranger"]),
        k=tf.constant(5),
        exclude=tf.constant([[""]]),
        exclude_seen=tf.constant(False),
        filter=tf.constant("old"),
        filter_names=tf.constant([], tf.string),
        filter_values=tf.zeros([0, 1], tf.string),
        now=NOW,
    )
    allowed = passes("INCLUDE ItemID WHERE Items.year < 1990", {}, ALIGNED)
    expected = ITEMS.ids[np.flatnonzero(allowed)[np.argsort(-POPULARITY[allowed], kind="stable")[:5]]]
    assert [x.decode() for x in out["item_ids"].numpy()[0]] == list(expected)
    assert out["fallback"].numpy().tolist() == [True]


def test_similar_items_filtered_keeps_only_passing_items() -> None:
    rec = recommender(model_of("gmf"), 0, {"brand": "INCLUDE ItemID WHERE Items.brand = $B"})
    names, rows = params({"B": ["acme"]})
    out = rec.signatures()["similar_items_filtered"](
        item_id=tf.constant(["i1", "i2"]),
        k=tf.constant(10),
        filter=tf.constant("brand"),
        filter_names=names,
        filter_values=rows,
    )
    acme = set(ALIGNED.loc[ALIGNED["brand"] == "acme", "item_id"])
    returned = {x.decode() for x in out["item_ids"].numpy().ravel()}
    assert len(returned) >= 10 and returned <= acme


def test_the_saved_model_answers_filtered_requests_and_records_its_filters(tmp_path) -> None:
    texts = {
        "by_genre": "INCLUDE ItemID WHERE Items.genres IN ($GENRES)",
        "bought": "INCLUDE ItemID WHERE Interactions.event_type = $EVENT AND Interactions.age_days < 30",
    }
    rec = recommender(model_of("neumf"), 0, texts)
    save_recommender(rec, tmp_path)
    loaded = tf.saved_model.load(str(tmp_path / "1"))
    metadata = json.loads(loaded.filters.metadata.numpy())
    assert metadata["by_genre"]["parameters"] == {
        "GENRES": {"column": "Items.genres", "kind": "multi", "list": True}
    }
    assert metadata["bought"]["parameters"]["EVENT"]["column"] == "Interactions.event_type"

    def answer(name: str, values: dict, exclude_seen: bool, user: str = "u1") -> set[str]:
        names, rows = params(values)
        out = loaded.signatures["recommend_filtered"](
            user_id=tf.constant([user]),
            k=tf.constant(3),
            exclude=tf.constant([[""]]),
            exclude_seen=tf.constant(exclude_seen),
            filter=tf.constant(name),
            filter_names=names,
            filter_values=rows,
            now=tf.constant(float(LATER), tf.float64),
        )
        return {x.decode() for x in out["item_ids"].numpy()[0] if x}

    allowed = set(ALIGNED.loc[ALIGNED["genres"].str.split("|").map(lambda g: "g3" in g), "item_id"])
    assert answer("by_genre", {"GENRES": ["g3"]}, True) <= allowed
    masks = expected_masks(texts["bought"], {"EVENT": ["purchase"]})
    user = int(np.flatnonzero(masks.any(axis=1))[0])  # one who bought something in the last 30 days
    got = answer("bought", {"EVENT": ["purchase"]}, False, USERS.ids[user])
    assert got <= set(ITEMS.ids[masks[user]]) and len(got) == min(3, masks[user].sum())


def test_an_export_without_filters_has_no_filtered_signatures() -> None:
    rec = Recommender(model_of("gmf"), USERS, ITEMS, SEEN, POPULARITY, True)
    assert "recommend_filtered" not in rec.signatures()


def test_item_field_table_answers_stored_columns_and_flags_unknowns() -> None:
    from ncf.serving.item_fields import ItemFieldTable

    table = pd.DataFrame(
        {"item_id": ["i2", "i0", "elsewhere"], "title": ["Two", "Zero", "X"], "year": ["", "1999", "1"]}
    )
    fields = ItemFieldTable(table, ITEMS.ids.astype(str))
    position = ITEMS.lookup(np.array(["i0", "i2", "i5"], dtype=object)).astype(np.int64)
    out = fields.lookup(
        tf.constant(position), tf.constant([True, True, False]), tf.constant(["year", "nope", "title"])
    )
    assert out["values"].numpy().astype(str).tolist() == [["1999", "", "Zero"], ["", "", "Two"], ["", "", ""]]
    assert out["known_field"].numpy().tolist() == [True, False, True]
