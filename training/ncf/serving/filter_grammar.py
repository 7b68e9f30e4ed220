"""The filter language: parse `INCLUDE|EXCLUDE ItemID WHERE ...` expressions into a typed tree.

A filter (modelled on Amazon Personalize's) is one or more expressions joined by `|`; an item passes the
filter when it passes every expression: an `INCLUDE` expression keeps the items its condition holds for,
an `EXCLUDE` expression drops them. A condition compares the item's attributes (`Items.<column>`) or the
requesting user's interactions with the item (`Interactions.event_type`, `Interactions.age_days`).

    filter     := expression ('|' expression)*
    expression := ('INCLUDE' | 'EXCLUDE') 'ItemID' 'WHERE' condition
    condition  := conjunct ('OR' conjunct)*
    conjunct   := atom ('AND' atom)*
    atom       := '(' condition ')' | ('Items.' | 'Interactions.') NAME operator operand
    operator   := 'IN' | 'NOT' 'IN' | '=' | '!=' | '<' | '<=' | '>' | '>='
    operand    := '(' value (',' value)* ')'   (after IN / NOT IN)  |  value
    value      := "string" | 'string' | number | true | false | $PARAM

Keywords are case-insensitive; item column names are as in the items channel; `$PARAM` names are upper case
(`$GENRES`, `$MAX_PRICE`) and get their values from each request. A `$PARAM` after `IN` / `NOT IN` takes a
list of values; elsewhere one value. Pure Python, run at export time: a syntax error names its position.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ncf.errors import NcfError

OPERATORS = ("IN", "NOT IN", "=", "!=", "<", "<=", ">", ">=")
ITEMS, INTERACTIONS = "Items", "Interactions"  # the datasets a comparison reads
LIST_OPERATORS = ("IN", "NOT IN")
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"[^"]*"|'[^']*')
    | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<param>\$[A-Z][A-Z0-9_]*)
    | (?P<column>(?:Items|Interactions)\.[A-Za-z_][A-Za-z0-9_]*)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<symbol><=|>=|!=|[=<>(),|])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Literal:
    """A constant: a string, a float, or a bool."""

    value: str | float | bool


@dataclass(frozen=True)
class Param:
    """A `$NAME` placeholder, filled from the request's `filter_values`."""

    name: str


@dataclass(frozen=True)
class Comparison:
    """`<dataset>.<column> <operator> <values>`; `position` is where the column starts in the text;
    `dataset` is ITEMS or INTERACTIONS."""

    column: str
    operator: str
    values: tuple[Literal | Param, ...]
    position: int
    dataset: str = ITEMS

    @property
    def qualified(self) -> str:
        """The column as written: `Items.genres`, `Interactions.age_days`."""
        return f"{self.dataset}.{self.column}"


@dataclass(frozen=True)
class Junction:
    """`AND` (`conjunction`) or `OR` of two or more conditions."""

    conjunction: bool
    parts: tuple[Condition, ...]


Condition = Comparison | Junction


@dataclass(frozen=True)
class Expression:
    """One `INCLUDE` (`include`) or `EXCLUDE` expression."""

    include: bool
    condition: Condition


@dataclass(frozen=True)
class Token:
    kind: str  # string, number, param, column, word (upper-cased), symbol, end
    text: str
    position: int


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, ending with an `end` token; an unreadable character names its position."""
    tokens, position = [], 0
    while text[position:].strip():
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            start = len(text) - len(text[position:].lstrip())
            raise FilterSyntaxError(f"unexpected character {text[start]!r}", start)
        kind, value = match.lastgroup, match.group(match.lastgroup)
        tokens.append(Token(kind, value.upper() if kind == "word" else value, match.start(kind)))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class FilterSyntaxError(NcfError):
    """A filter that does not parse; `position` is the 0-based character offset of the problem."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


class _Parser:
    """Recursive descent over the grammar in the module docstring."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def fail(self, expected: str) -> FilterSyntaxError:
        found = self.current.text or "the end of the filter"
        return FilterSyntaxError(f"expected {expected}, found {found!r}", self.current.position)

    def accept(self, text: str) -> bool:
        if self.current.kind in ("word", "symbol") and self.current.text == text:
            self.index += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise self.fail(repr(text))

    def parse(self) -> tuple[Expression, ...]:
        expressions = [self.expression()]
        while self.accept("|"):
            expressions.append(self.expression())
        if self.current.kind != "end":
            raise self.fail("'|', 'AND', 'OR' or the end of the filter")
        return tuple(expressions)

    def expression(self) -> Expression:
        if not (self.current.kind == "word" and self.current.text in ("INCLUDE", "EXCLUDE")):
            raise self.fail("INCLUDE or EXCLUDE")
        include = self.current.text == "INCLUDE"
        self.index += 1
        self.expect("ITEMID")
        self.expect("WHERE")
        return Expression(include, self.condition())

    def junction(self, keyword: str, part: Callable[[], Condition]) -> Condition:
        parts = [part()]
        while self.accept(keyword):
            parts.append(part())
        return parts[0] if len(parts) == 1 else Junction(keyword == "AND", tuple(parts))

    def condition(self) -> Condition:
        return self.junction("OR", self.conjunct)

    def conjunct(self) -> Condition:
        return self.junction("AND", self.atom)

    def atom(self) -> Condition:
        if self.accept("("):
            inner = self.condition()
            self.expect(")")
            return inner
        if self.current.kind != "column":
            raise self.fail("Items.<column>, Interactions.<column> or '('")
        column = self.current
        self.index += 1
        operator = self.operator()
        values = self.value_list() if operator in LIST_OPERATORS else (self.value(),)
        dataset, name = column.text.split(".", 1)
        return Comparison(name, operator, values, column.position, dataset)

    def operator(self) -> str:
        if self.accept("NOT"):
            self.expect("IN")
            return "NOT IN"
        token = self.current
        if token.text in OPERATORS and token.kind in ("word", "symbol"):
            self.index += 1
            return token.text
        raise self.fail("an operator (IN, NOT IN, =, !=, <, <=, >, >=)")

    def value_list(self) -> tuple[Literal | Param, ...]:
        self.expect("(")
        values = [self.value()]
        while self.accept(","):
            values.append(self.value())
        self.expect(")")
        return tuple(values)

    def value(self) -> Literal | Param:
        token = self.current
        if token.kind == "string":
            parsed: Literal | Param = Literal(token.text[1:-1])
        elif token.kind == "number":
            parsed = Literal(float(token.text))
        elif token.kind == "param":
            parsed = Param(token.text[1:])
        elif token.kind == "word" and token.text in ("TRUE", "FALSE"):
            parsed = Literal(token.text == "TRUE")
        else:
            raise self.fail('a value ("text", a number, true, false or $PARAM)')
        self.index += 1
        return parsed


def parse_filter(text: str) -> tuple[Expression, ...]:
    """The expressions of a filter's text; `FilterSyntaxError` (with the position) when it does not parse."""
    return _Parser(text).parse()


def comparisons(condition: Condition) -> list[Comparison]:
    """Every comparison of a condition, in text order."""
    if isinstance(condition, Comparison):
        return [condition]
    return [c for part in condition.parts for c in comparisons(part)]


def reads_interactions(expressions: tuple[Expression, ...]) -> bool:
    """Whether a filter compares anything of the user's interactions (then it needs a user to apply)."""
    return any(c.dataset == INTERACTIONS for e in expressions for c in comparisons(e.condition))


def interaction_groups(parts: tuple[Condition, ...]) -> tuple[list[Comparison], list[Condition]]:
    """(the Interactions comparisons, the other parts) of an AND's parts.

    The Interactions comparisons ANDed together in one conjunction are about one and the same
    interaction: `Interactions.event_type = "purchase" AND Interactions.age_days < 30` holds for an item
    the user purchased less than 30 days ago, not for one purchased long ago and viewed yesterday."""
    together = [p for p in parts if isinstance(p, Comparison) and p.dataset == INTERACTIONS]
    return together, [p for p in parts if not any(p is t for t in together)]
