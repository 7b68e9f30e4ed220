"""ncf.settings_cli: a settings dataclass generates its command line; prepare.py's settings use it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from ncf.data.prepare_settings import PrepareSettings, parse_args
from ncf.errors import NcfError
from ncf.settings_cli import build_parser, check_choices, parse_given, parse_value, setting


@dataclass(frozen=True)
class Toy:
    name: str | None = setting(None, "a name", required=True, metavar="NAME")
    layers: tuple[int, ...] = setting((4, 2), "widths")
    rate: float = setting(0.5, "a rate", group="tuning")
    mode: str = setting("fast", "how", choices=("fast", "slow"))
    dry_run: bool = setting(False, "do nothing", flag=True)


def test_the_parser_has_both_spellings_flags_groups_and_defaults_in_help() -> None:
    parser = build_parser(Toy, prog="toy", description="a toy", groups={"tuning": "tuning options"})
    given = vars(parser.parse_args(["--name", "x", "--dry-run", "--rate", "0.1"]))
    assert given == {"name": "x", "dry_run": "true", "rate": "0.1"}  # options not given are absent
    assert vars(parser.parse_args(["--name", "x", "--dry_run"])) == {"name": "x", "dry_run": "true"}
    text = parser.format_help()
    assert "widths [default: 4,2]" in text and "tuning options:" in text
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --name is required


def test_values_parse_to_the_field_types_or_name_the_setting() -> None:
    parsed = parse_given(Toy, {"layers": "8, 4", "rate": "2", "dry_run": "yes", "name": " a "}, "--{flag}")
    assert parsed == {"layers": (8, 4), "rate": 2.0, "dry_run": True, "name": "a"}
    assert parse_value("x", "int | None", "3.0") == 3
    with pytest.raises(NcfError, match=r"^--dry-run: expected true or false, got 'maybe'$"):
        parse_given(Toy, {"dry_run": "maybe"}, "--{flag}")
    with pytest.raises(NcfError, match=r"^hyperparameter n: expected a whole number, got '2.5'$"):
        parse_value("hyperparameter n", "int", "2.5")
    with pytest.raises(NcfError, match=r"^--mode: expected one of fast, slow, got 'medium'$"):
        check_choices(Toy(name="x", mode="medium"), "--{flag}")


def test_prepare_settings_keep_prepares_flags_and_defaults(tmp_path: Path) -> None:
    options = parse_args(["--input", "in.csv", "--output", str(tmp_path), "--sep", "tab", "--overwrite"])
    assert options.input_path == Path("in.csv") and options.overwrite and options.sep == "tab"
    assert options.split_options().eval_negatives == 99 and options.seed == 42 and options.shards == 1
    assert options.columns().user == "user_id"
    assert PrepareSettings(input="a", output="b").recorded(None)["item_features"] is None


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seed", "x"], "--seed: expected a whole number, got 'x'"),
        (["--shards", "0"], "--shards must be at least 1, not 0"),
        (["--feedback", "stars"], "--feedback: expected one of implicit, explicit, got 'stars'"),
        (["--rating-threshold", "high"], "--rating-threshold: expected a number, got 'high'"),
    ],
)
def test_bad_prepare_values_name_the_option(extra: list[str], message: str) -> None:
    with pytest.raises(NcfError, match=message):
        parse_args(["--input", "a", "--output", "b", *extra])
