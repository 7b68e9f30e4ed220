"""Settings defined once, as a frozen dataclass whose fields generate the command line.

A field made with `setting(default, help, ...)` carries its help text and options; `build_parser` turns
the fields into an argparse parser (`--kebab-case` and `--snake_case` flags, every value read as a
string) and `parse_value` turns a string into the field's type, or raises `NcfError` naming what was
wrong. Used by `ncf.train_settings.TrainConfig` (train.py) and `prepare.py`'s `PrepareSettings`.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import MISSING, Field, field, fields
from typing import Any

from ncf.errors import NcfError

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}
_EXPECTED = {
    "bool": "true or false",
    "int": "a whole number",
    "float": "a number",
    "tuple[int, ...]": "comma-separated whole numbers, e.g. 64,32,16,8",
}


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    flag: bool = False,
    required: bool = False,
    metavar: str = "VALUE",
    group: str | None = None,
    shown_default: str | None = None,
) -> Any:
    """A dataclass field that is also a command-line option.

    Args:
        default: the value when nothing sets it.
        help: what the setting does, for `--help` (the default is appended).
        choices: the only values allowed (checked by `check_choices`).
        flag: a boolean switch that takes no value (`--overwrite`).
        required: the command line must give it (argparse refuses the command otherwise).
        metavar: the value's name in `--help`.
        group: key of an argument group passed to `build_parser`.
        shown_default: the default as `--help` shows it, when the value itself says little.
    """
    metadata = {"help": help, "choices": choices, "flag": flag, "required": required, "metavar": metavar}
    return field(default=default, metadata={**metadata, "group": group, "shown_default": shown_default})


def parse_value(label: str, kind: str, raw: Any) -> Any:
    """Turn a command-line string (or SageMaker hyperparameter) into a field's type.

    Args:
        label: how an error names the setting, e.g. "hyperparameter factors" or "--seed".
        kind: the field's annotation as written: bool, int, float, tuple[int, ...], str, or any
            of them `| None` (a value given on the command line is never None).
        raw: the value as given.

    Returns:
        The parsed value; for str (and unknown) kinds the stripped text.

    Raises:
        NcfError: the value is not of the kind, e.g. `hyperparameter factors: expected a whole number,
            got 'x'`.
    """
    base = kind.removesuffix(" | None")
    text = str(raw).strip()
    try:
        if base == "bool":
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        if base == "int":
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if base == "float":
            return float(text)
        if base == "tuple[int, ...]":
            parts = text.strip("[]()").replace(" ", "").split(",")
            return tuple(int(p) for p in parts if p)
    except ValueError:
        raise NcfError(f"{label}: expected {_EXPECTED[base]}, got {raw!r}") from None
    return text


def _label(label: str, name: str) -> str:
    """`label` with {name} (the field's name) and {flag} (its --kebab-case spelling) filled in."""
    return label.format(name=name, flag=name.replace("_", "-"))


def check_choices(settings: Any, label: str = "{name}") -> None:
    """Refuse a field whose value is not one of its `choices`; `label` names the field ({name}, {flag}).

    Raises:
        NcfError: `<label>: expected one of a, b, got 'c'`.
    """
    for f in fields(settings):
        choices, value = f.metadata.get("choices"), getattr(settings, f.name)
        if choices and value not in choices:
            allowed = ", ".join(choices)
            raise NcfError(f"{_label(label, f.name)}: expected one of {allowed}, got {value!r}")


def build_parser(
    settings_class: type, prog: str, description: str, groups: Mapping[str, str] | None = None
) -> argparse.ArgumentParser:
    """The command line of a settings dataclass: one option per field, so the two never drift apart.

    Options not given are absent from the parsed namespace (`argparse.SUPPRESS`), so the caller can
    layer defaults and other sources under them. Every value is a string (or "true" for a flag): parse
    it with `parse_value`.

    Args:
        settings_class: a dataclass whose fields were made with `setting`.
        prog, description: as for `argparse.ArgumentParser`.
        groups: title of each argument group named by a field's `group`.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description, argument_default=argparse.SUPPRESS)
    sections = {key: parser.add_argument_group(title) for key, title in (groups or {}).items()}
    for f in fields(settings_class):
        kebab, snake = f"--{f.name.replace('_', '-')}", f"--{f.name}"
        names = [kebab] if kebab == snake else [kebab, snake]
        meta = f.metadata
        target = sections[meta["group"]] if meta.get("group") else parser
        help_text = f"{meta['help']} [default: {_shown_default(f)}]"
        if meta.get("flag"):
            target.add_argument(*names, dest=f.name, action="store_const", const="true", help=help_text)
        else:
            required = bool(meta.get("required"))
            shown = help_text if not required else meta["help"]
            target.add_argument(
                *names, dest=f.name, metavar=meta.get("metavar", "VALUE"), required=required, help=shown
            )
    return parser


def _shown_default(f: Field) -> str:
    if f.metadata.get("shown_default"):
        return f.metadata["shown_default"]
    default = f.default if f.default is not MISSING else None
    if default is None:
        return "see help"
    return ",".join(map(str, default)) if isinstance(default, tuple) else str(default)


def parse_given(settings_class: type, given: Mapping[str, Any], label: str = "{name}") -> dict[str, Any]:
    """The values of `given` (field name -> raw value) parsed into their fields' types.

    Raises:
        NcfError: a value that does not parse, named by `label` ({name}, {flag} filled in).
    """
    kinds = {f.name: str(f.type) for f in fields(settings_class)}
    return {name: parse_value(_label(label, name), kinds[name], raw) for name, raw in given.items()}
