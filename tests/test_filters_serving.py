"""Filters end to end: declared at training (`--filters`, the items channel), applied by inference.py.

conftest's `filtered_model` is a tiny NeuMF trained by train.py with an items channel holding
`filters.json`; TF Serving is the local stand-in serving its SavedModel, mounted on the handler's
session (as in test_history_inference.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tensorflow as tf
from conftest import (
    FILTERS,
    POPULARITY_WINDOW_DAYS,
    SASREC_TEST_FLAGS,
    channel_args,
    event_interactions,
    run_train,
)
from filter_fixtures import item_table, passes
from test_history_inference import serve
from test_inference import event_lines, inference, invoke, refusal  # noqa: F401  (inference is a fixture)


@pytest.fixture
def served(inference: Any, filtered_model: tuple[Path, Any]) -> Any:  # noqa: F811
    serve(inference, filtered_model[0])
    yield inference
    inference.SESSION.adapters.pop("http://localhost:8501/")


def test_a_bad_filter_stops_training_before_it_starts(tmp_path: Path, tiny_channels: Path) -> None:
    (tmp_path / "items").mkdir()
    item_table([f"item-{i}" for i in range(40)]).to_csv(tmp_path / "items" / "items.csv", index=False)
    (tmp_path / "filters.json").write_text(json.dumps({"f": "INCLUDE ItemID WHERE Items.colour = 'red'"}))
    args = [
        *channel_args(tiny_channels),
        "--items",
        str(tmp_path / "items"),
        "--filters",
        str(tmp_path / "filters.json"),
    ]
    result = run_train([*args, "--model-dir", str(tmp_path / "model")])
    assert result.returncode == 2
    assert result.stderr.startswith("error: filter 'f': Items.colour at position 21: no such item column")
    assert "epoch" not in result.stdout


def test_the_export_records_its_filters(filtered_model: tuple[Path, Any]) -> None:
    loaded = tf.saved_model.load(str(filtered_model[0] / "1"))
    assert set(json.loads(loaded.filters.metadata.numpy())) == set(FILTERS)
    assert {"recommend_filtered", "similar_items_filtered", "serving_default"} <= set(loaded.signatures)


def passing_ids(items: Any, name: str, values: dict[str, list[str]]) -> set[str]:
    return set(items.loc[passes(FILTERS[name], values, items), "item_id"])


def test_json_request_with_parameters_returns_k_items_that_pass(
    served: Any, filtered_model: tuple[Path, Any]
) -> None:
    values = {"GENRES": sorted({g for listed in filtered_model[1]["genres"] for g in listed.split("|")})[:6]}
    body = {"user_id": "u1", "k": 3, "filter": "by_genre", "filter_values": values}
    prediction = invoke(served, body)[0]["predictions"][0]
    ids = [entry["item_id"] for entry in prediction["items"]]
    assert len(ids) == 3 and set(ids) <= passing_ids(filtered_model[1], "by_genre", values)


def test_json_lines_batch_mixes_filters_values_and_plain_requests(
    served: Any, filtered_model: tuple[Path, Any]
) -> None:
    requests = [
        {"user_id": "u1", "k": 5, "filter": "recent_on_sale", "filter_values": {"MIN_YEAR": 1990}},
        {"user_id": "u2", "k": 5},
        {"user_id": "stranger", "k": 5, "filter": "no_acme", "exclude_seen": False},
        {"user_id": "u3", "k": 5, "filter": "recent_on_sale", "filter_values": {"MIN_YEAR": "2010"}},
    ]
    lines = "".join(json.dumps(r) + "\n" for r in requests)
    text, _ = invoke(served, lines, "application/jsonlines", "application/jsonlines")
    first, plain, stranger, last = (json.loads(line) for line in text.splitlines())
    items = filtered_model[1]
    assert {e["item_id"] for e in first["items"]} <= passing_ids(
        items, "recent_on_sale", {"MIN_YEAR": ["1990"]}
    )
    assert {e["item_id"] for e in last["items"]} <= passing_ids(
        items, "recent_on_sale", {"MIN_YEAR": ["2010"]}
    )
    assert {e["item_id"] for e in stranger["items"]} <= passing_ids(items, "no_acme", {})
    assert stranger["fallback"] is True and len(plain["items"]) == 5


def test_history_with_a_filter(served: Any, filtered_model: tuple[Path, Any]) -> None:
    """The history is folded in and the answer holds only passing items, none of the history's."""
    body = {"user_id": "new-user", "k": 5, "history": ["item-1", "nope"], "filter": "no_acme"}
    prediction = invoke(served, body)[0]["predictions"][0]
    ids = {entry["item_id"] for entry in prediction["items"]}
    assert len(ids) == 5 and ids <= passing_ids(filtered_model[1], "no_acme", {}) - {"item-1"}
    assert prediction["ignored_history"] == ["nope"] and prediction["fallback"] is False


def test_similar_items_with_a_filter(served: Any, filtered_model: tuple[Path, Any]) -> None:
    body = {"signature": "similar_items", "item_id": "item-1", "k": 4, "filter": "no_acme"}
    prediction = invoke(served, body)[0]["predictions"][0]
    ids = {entry["item_id"] for entry in prediction["similar"]}
    assert len(ids) == 4 and ids <= passing_ids(filtered_model[1], "no_acme", {}) - {"item-1"}


def test_a_promotion_fills_its_share_of_the_slots_with_the_best_passing_items(
    served: Any, filtered_model: tuple[Path, Any]
) -> None:
    """k=10 with a 0.3 promotion of `no_acme` over a `by_genre` list: 3 promoted items, the best that pass
    no_acme; 7 of the user's own filtered list, without them; the whole list in score order."""
    genres = sorted({g for listed in filtered_model[1]["genres"] for g in listed.split("|")})[:8]
    base = {"user_id": "u1", "k": 10, "filter": "by_genre", "filter_values": {"GENRES": genres}}
    own = invoke(served, base)[0]["predictions"][0]["items"]
    best = invoke(served, {"user_id": "u1", "k": 3, "filter": "no_acme"})[0]["predictions"][0]["items"]
    promotion = {"filter": "no_acme", "share": 0.3}
    items = invoke(served, {**base, "promotion": promotion})[0]["predictions"][0]["items"]
    promoted = [entry for entry in items if entry.get("promoted")]
    assert [{**e, "promoted": True} for e in best] == sorted(promoted, key=lambda e: -e["score"])
    others = [e for e in own if e["item_id"] not in {p["item_id"] for p in promoted}][:7]
    assert [e for e in items if not e.get("promoted")] == others
    assert [e["score"] for e in items] == sorted((e["score"] for e in items), reverse=True)
    assert len(items) == 10 and len({e["item_id"] for e in items}) == 10


def test_item_fields_come_with_each_item(served: Any, filtered_model: tuple[Path, Any]) -> None:
    table = filtered_model[1].set_index("item_id")
    body = {"user_id": "u1", "k": 4, "filter": "no_acme", "item_fields": ["year", "genres"]}
    similar = {"signature": "similar_items", "item_id": "item-3", "k": 2, "item_fields": ["brand"]}
    first, second = invoke(served, {"instances": [body, similar]})[0]["predictions"]
    for entry in first["items"]:
        assert entry["fields"] == {
            "year": table.at[entry["item_id"], "year"],
            "genres": table.at[entry["item_id"], "genres"],
        }
    assert [e["fields"] for e in second["similar"]] == [
        {"brand": table.at[e["item_id"], "brand"]} for e in second["similar"]
    ]


def test_a_bad_item_fields_setting_stops_training(tmp_path: Path, tiny_channels: Path) -> None:
    (tmp_path / "items").mkdir()
    item_table([f"item-{i}" for i in range(40)]).to_csv(tmp_path / "items" / "items.csv", index=False)
    args = [*channel_args(tiny_channels), "--items", str(tmp_path / "items"), "--item-fields", "title"]
    result = run_train([*args, "--model-dir", str(tmp_path / "model")])
    assert result.returncode == 2
    assert result.stderr.startswith("error: item_fields: no column 'title' in ")


def test_item_fields_from_a_model_that_stores_none_are_refused(inference: Any, trained_model: Path) -> None:  # noqa: F811
    serve(inference, trained_model)
    try:
        error = refusal(inference, {"user_id": "u1", "item_fields": ["title"]})
    finally:
        inference.SESSION.adapters.pop("http://localhost:8501/")
    assert error["status"] == 400 and error["field"] == "item_fields"
    assert error["error"].startswith("this model stores no item fields")


def test_the_deploy_time_default_promotion(served: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """NCF_DEFAULT_PROMOTION applies to requests without their own promotion; null opts out."""
    settings = served.Settings.from_env({"NCF_DEFAULT_PROMOTION": '{"filter": "no_acme", "share": 0.5}'})
    monkeypatch.setattr(served, "SETTINGS", settings)
    promoted = invoke(served, {"user_id": "u1", "k": 4})[0]["predictions"][0]["items"]
    assert sum(bool(e.get("promoted")) for e in promoted) == 2
    plain = invoke(served, {"user_id": "u1", "k": 4, "promotion": None})[0]["predictions"][0]["items"]
    assert not any(e.get("promoted") for e in plain)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("on_sale", "NCF_DEFAULT_PROMOTION='on_sale': not JSON"),
        ('{"filter": "x", "share": 2}', "share must be a number in (0, 1], got 2"),
        ("null", "expected a promotion object, not null"),
    ],
)
def test_a_bad_default_promotion_stops_the_container(inference: Any, value: str, message: str) -> None:  # noqa: F811
    with pytest.raises(ValueError, match=re.escape(message)):
        inference.Settings.from_env({"NCF_DEFAULT_PROMOTION": value})


BAD_REQUESTS = [
    (
        {"filter": "nope"},
        "filter",
        "unknown filter 'nope' (this model's filters: by_genre, no_acme, not_bought_lately, recent_on_sale)",
    ),
    ({"filter": 3}, "filter", "filter must be a filter's name"),
    ({"filter": ""}, "filter", "filter must be a filter's name"),
    ({"filter_values": {"GENRES": ["g1"]}}, "filter_values", "filter_values needs a filter"),
    ({"filter": "by_genre"}, "filter_values", "filter 'by_genre' needs a value for $GENRES"),
    (
        {"filter": "by_genre", "filter_values": {"GENRES": ["g1"], "YEAR": 1}},
        "filter_values",
        "has no parameter $YEAR",
    ),
    (
        {"filter": "no_acme", "filter_values": {"X": "1"}},
        "filter_values",
        "filter 'no_acme' has no parameter $X",
    ),
    (
        {"filter": "by_genre", "filter_values": {"GENRES": ["Comdy"]}},
        "filter_values",
        "'Comdy' is not a value of Items.genres",
    ),
    (
        {"filter": "recent_on_sale", "filter_values": {"MIN_YEAR": "soon"}},
        "filter_values",
        "$MIN_YEAR must be a number, got 'soon'",
    ),
    (
        {"filter": "recent_on_sale", "filter_values": {"MIN_YEAR": True}},
        "filter_values",
        "$MIN_YEAR must be a number, got 'true'",
    ),
    (
        {"filter": "recent_on_sale", "filter_values": {"MIN_YEAR": [1990, 2000]}},
        "filter_values",
        "$MIN_YEAR takes one value, got 2",
    ),
    ({"filter": "by_genre", "filter_values": ["g1"]}, "filter_values", "filter_values must be an object"),
    (
        {"filter": "not_bought_lately", "filter_values": {"EVENTS": ["refund"], "DAYS": 30}},
        "filter_values",
        "'refund' is not a value of Interactions.event_type ($EVENTS)",
    ),
    (
        {"filter": "not_bought_lately", "filter_values": {"EVENTS": "purchase", "DAYS": "a month"}},
        "filter_values",
        "$DAYS must be a number, got 'a month'",
    ),
    (
        {"filter": "no_acme", "now": "yesterday"},
        "now",
        'now must be a time in seconds since the epoch (a positive number), got "yesterday"',
    ),
    ({"filter": "no_acme", "now": -5}, "now", "now must be a time in seconds since the epoch"),
    ({"now": 1_700_000_000}, "now", "now applies to filters only"),
    (
        {"filter": "by_genre", "filter_values": {"GENRES": []}},
        "filter_values",
        "GENRES has an empty list of values",
    ),
    (
        {"filter": "by_genre", "filter_values": {"GENRES": [["g1"]]}},
        "filter_values",
        "must be a non-empty string, number or boolean",
    ),
    (
        {"filter": "by_genre", "filter_values": {"genres": ["g1"]}},
        "filter_values",
        "'genres' is not a parameter name",
    ),
    (
        {"item_fields": ["colour"]},
        "item_fields",
        "unknown item field 'colour' (this model's: genres, year, brand, on_sale)",
    ),
    ({"item_fields": "year"}, "item_fields", "item_fields must be a list of item column names"),
    ({"item_fields": ["f"] * 21}, "item_fields", "more than 20 (NCF_MAX_ITEM_FIELDS)"),
    ({"promotion": "no_acme"}, "promotion", "promotion must be an object"),
    ({"promotion": {"share": 0.2}}, "promotion", "promotion must be an object"),
    (
        {"promotion": {"filter": "no_acme", "share": 0}},
        "promotion",
        "share must be a number in (0, 1], got 0",
    ),
    (
        {"promotion": {"filter": "no_acme", "share": True}},
        "promotion",
        "share must be a number in (0, 1], got true",
    ),
    ({"promotion": {"filter": "", "share": 0.2}}, "promotion", "promotion: filter must be a filter's name"),
    ({"promotion": {"filter": "nope", "share": 0.2}}, "promotion", "promotion: unknown filter 'nope'"),
    (
        {"promotion": {"filter": "by_genre", "share": 0.2, "filter_values": {"GENRES": ["Comdy"]}}},
        "promotion",
        "promotion: 'Comdy' is not a value of Items.genres",
    ),
]


@pytest.mark.parametrize(("fields", "field", "message"), BAD_REQUESTS)
def test_bad_filter_requests_are_refused_and_logged(
    served: Any, capsys: Any, fields: dict, field: str, message: str
) -> None:
    capsys.readouterr()
    error = refusal(served, {"user_id": "u1", "k": 3, **fields})
    assert error["status"] == 400 and error["field"] == field and message in error["error"], error
    assert event_lines(capsys) == [{"event": "client_error", **error}]


def test_an_interaction_filter_for_similar_items_is_refused(served: Any, capsys: Any) -> None:
    capsys.readouterr()
    body = {"signature": "similar_items", "item_id": "item-1", "filter": "not_bought_lately"}
    error = refusal(served, {**body, "filter_values": {"EVENTS": "purchase", "DAYS": 30}})
    assert error["status"] == 400 and error["field"] == "filter_values"
    assert "filter 'not_bought_lately' compares the user's interactions" in error["error"]
    assert event_lines(capsys) == [{"event": "client_error", **error}]


LAST_TIMESTAMP = int(event_interactions()["timestamp"].max())


def test_an_interaction_filter_excludes_what_the_user_bought_lately(served: Any) -> None:
    """`now` a day after the data: u1's purchases (all recent) are excluded, views may come back; 40 days
    later nothing is excluded, nor on the serving clock (decades after the data)."""
    frame = event_interactions()
    own = frame[frame["user_id"] == "u1"]
    purchases = set(own.loc[own["event_type"] == "purchase", "item_id"])
    views = set(own.loc[own["event_type"] == "view", "item_id"])
    values = {"EVENTS": ["purchase"], "DAYS": 30}
    base = {
        "user_id": "u1",
        "k": 40,
        "exclude_seen": False,
        "filter": "not_bought_lately",
        "filter_values": values,
    }

    def ids(extra: dict) -> set[str]:
        return {e["item_id"] for e in invoke(served, {**base, **extra})[0]["predictions"][0]["items"]}

    day = 86_400
    lately = ids({"now": LAST_TIMESTAMP + day})
    assert purchases and not lately & purchases and views <= lately
    unfiltered = {
        e["item_id"]
        for e in invoke(served, {"user_id": "u1", "k": 40, "exclude_seen": False})[0]["predictions"][0][
            "items"
        ]
    }
    assert ids({"now": LAST_TIMESTAMP + 40 * day}) == unfiltered == ids({}) >= purchases


def test_the_fallback_is_recently_popular_and_filtered(served: Any, filtered_model: tuple[Path, Any]) -> None:
    """popularity_window_days 5: an unknown user gets the items most interacted with in the data's last
    5 days (all of its rows: the export's final fit trains on every interaction), among those that pass."""
    frame = event_interactions()
    recent = frame[frame["timestamp"] >= frame["timestamp"].max() - POPULARITY_WINDOW_DAYS * 86_400]
    counts = recent["item_id"].value_counts()
    passing = passing_ids(filtered_model[1], "no_acme", {})
    expected = sorted((counts.get(i, 0) / counts.max() for i in passing), reverse=True)[:5]
    body = {"user_id": "stranger", "k": 5, "filter": "no_acme"}
    prediction = invoke(served, body)[0]["predictions"][0]
    assert prediction["fallback"] is True
    assert {e["item_id"] for e in prediction["items"]} <= passing
    assert [e["score"] for e in prediction["items"]] == pytest.approx(expected)
    assert (
        len(recent) < len(frame)
        and expected != sorted((frame["item_id"].value_counts().get(i, 0) for i in passing), reverse=True)[:5]
    )


def test_a_promotion_with_history(served: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A history request's promotion comes from the same history (its items are excluded from both
    lists); the deploy-time default applies to history requests too, unless "promotion": null."""
    body = {"user_id": "new-user", "k": 6, "history": ["item-1", "item-2"]}
    own = invoke(served, body)[0]["predictions"][0]
    best = invoke(served, {**body, "k": 2, "filter": "no_acme"})[0]["predictions"][0]["items"]
    promotion = {"filter": "no_acme", "share": 0.3}
    answer = invoke(served, {**body, "promotion": promotion})[0]["predictions"][0]
    promoted = [e for e in answer["items"] if e.get("promoted")]
    assert [{**e, "promoted": True} for e in best] == promoted
    others = [e for e in own["items"] if e["item_id"] not in {p["item_id"] for p in promoted}][:4]
    assert [e for e in answer["items"] if not e.get("promoted")] == others
    assert not {"item-1", "item-2"} & {e["item_id"] for e in answer["items"]}
    settings = served.Settings.from_env({"NCF_DEFAULT_PROMOTION": json.dumps(promotion)})
    monkeypatch.setattr(served, "SETTINGS", settings)
    assert invoke(served, body)[0]["predictions"][0]["items"] == answer["items"]
    plain = invoke(served, {**body, "promotion": None})[0]["predictions"][0]["items"]
    assert plain == own["items"]


def test_a_filter_request_to_a_model_without_filters_is_refused(inference: Any, trained_model: Path) -> None:  # noqa: F811
    serve(inference, trained_model)
    try:
        error = refusal(inference, {"user_id": "u1", "filter": "by_genre", "filter_values": {"GENRES": "g1"}})
    finally:
        inference.SESSION.adapters.pop("http://localhost:8501/")
    assert error["status"] == 400 and error["field"] == "filter"
    assert error["error"].startswith("this model has no filters, so none named 'by_genre'")


def test_sasrec_history_with_a_filter(tmp_path: Path, walk_channels: Path) -> None:
    """The sequence model's recommend_from_history_filtered: only passing items, none of the history."""
    ids = sorted(pd.read_csv(next((walk_channels / "train").glob("*.csv")), dtype=str)["item_id"].unique())
    items = item_table(ids, seed=4)
    (tmp_path / "items").mkdir()
    items.to_csv(tmp_path / "items" / "items.csv", index=False)
    (tmp_path / "items" / "filters.json").write_text(json.dumps({"no_acme": FILTERS["no_acme"]}))
    args = [*channel_args(walk_channels), "--items", str(tmp_path / "items"), "--item-features", "none"]
    flags = list(SASREC_TEST_FLAGS)
    flags[flags.index("--epochs") + 1] = "1"
    result = run_train([*args, *flags, "--model-dir", str(tmp_path / "model"), "--package", "false"])
    assert result.returncode == 0, result.stderr + result.stdout
    loaded = tf.saved_model.load(str(tmp_path / "model" / "1"))
    out = loaded.signatures["recommend_from_history_filtered"](
        user_id=tf.constant(["new-user"]),
        history=tf.constant([[ids[0], ids[1]]]),
        k=tf.constant(5),
        filter=tf.constant("no_acme"),
        filter_names=tf.constant([""]),
        filter_values=tf.constant([[""]]),
        now=tf.constant(0.0, tf.float64),
    )
    returned = {x.decode() for x in out["item_ids"].numpy()[0] if x}
    assert out["filter_error"].numpy()[0] == b"" and len(returned) == 5
    assert returned <= passing_ids(items, "no_acme", {}) - {ids[0], ids[1]}
