"""A small, safe expression language for Canary metric conditions (`successCondition`, `failureCondition`).

Conditions are written by users in CRs, so they are parsed by hand (tokenizer + recursive descent) into
an AST of frozen dataclasses and evaluated by walking it: no ``eval``, no attribute access, no loops.

Grammar (lowest precedence first)::

    condition  := or
    or         := and (("or" | "||") and)*
    and        := not (("and" | "&&") not)*
    not        := ("not" | "!") not | comparison
    comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | atom
    atom       := NUMBER | "result" | "true" | "false" | FUNC "(" args ")" | "(" or ")"
    FUNC       := isNaN | isInf | abs | min | max

Values are numbers or booleans and the types are checked when parsing: ``result + true`` and
``result`` alone (not a boolean) are refused before any measurement is taken.

| condition                         | result | value |
|-----------------------------------|--------|-------|
| ``result < 0.05``                 | 0.01   | True  |
| ``result < 0.05``                 | 0.05   | False |
| ``result >= 0.9 && result <= 1``  | 0.95   | True  |
| ``not (result > 2 * 1.5)``        | 4      | False |
| ``isNaN(result) or result < 1``   | nan    | True  |
| ``abs(result - 1) <= 0.1``        | 1.05   | True  |
| ``max(result, 0.5) == 0.5``       | 0.2    | True  |
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Type = Literal["number", "bool"]
Value = float | bool


class ExpressionError(ValueError):
    """A condition that does not parse or type-check; the message names the column."""

    def __init__(self, message: str, position: int, text: str) -> None:
        super().__init__(f"{message} at column {position + 1} of {text!r}")
        self.position = position
        self.text = text


class EvaluationError(ValueError):
    """A condition that cannot be evaluated on this result (division by zero)."""


# ----------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Boolean:
    value: bool


@dataclass(frozen=True)
class Result:
    """The measured value."""


@dataclass(frozen=True)
class Unary:
    op: Literal["-", "not"]
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Node, ...]


Node = Number | Boolean | Result | Unary | Binary | Call


# ----------------------------------------------------------------------------------------- tokenizer

TokenKind = Literal["number", "name", "op", "end"]


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    position: int


_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|==|!=|&&|\|\||[<>+\-*/()!,]))"
)
_WORD_OPERATORS = {"and": "&&", "or": "||", "not": "!"}


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            start = position + (len(text[position:]) - len(text[position:].lstrip()))
            raise ExpressionError(f"unexpected character {text[start]!r}", start, text)
        kind = match.lastgroup
        start = match.start(kind)
        word = match.group(kind)
        if kind == "name" and word in _WORD_OPERATORS:
            tokens.append(Token("op", _WORD_OPERATORS[word], start))
        else:
            tokens.append(Token(kind, word, start))  # type: ignore[arg-type]
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# ------------------------------------------------------------------------------------------- parser

_FUNCTIONS: dict[str, tuple[int, Type]] = {
    "isNaN": (1, "bool"),
    "isInf": (1, "bool"),
    "abs": (1, "number"),
    "min": (2, "number"),
    "max": (2, "number"),
}
_COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def error(self, message: str, token: Token | None = None) -> ExpressionError:
        return ExpressionError(message, (token or self.peek()).position, self.text)

    def expect(self, text: str) -> Token:
        token = self.peek()
        if token.kind != "op" or token.text != text:
            found = token.text or "end of input"
            raise self.error(f"expected {text!r}, found {found!r}")
        return self.take()

    def at(self, *ops: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.text in ops

    # Each level returns the node and its static type.
    def parse(self) -> tuple[Node, Type]:
        node, kind = self.logical_or()
        if self.peek().kind != "end":
            raise self.error(f"unexpected {self.peek().text!r}")
        return node, kind

    def logical_or(self) -> tuple[Node, Type]:
        return self._logical(self.logical_and, "||", "or")

    def logical_and(self) -> tuple[Node, Type]:
        return self._logical(self.logical_not, "&&", "and")

    def _logical(self, operand: Callable[[], tuple[Node, Type]], op: str, word: str) -> tuple[Node, Type]:
        left_token = self.peek()
        left, left_type = operand()
        while self.at(op):
            self.take()
            right_token = self.peek()
            right, right_type = operand()
            self._require(left_type, "bool", left_token, f"left side of {word!r}")
            self._require(right_type, "bool", right_token, f"right side of {word!r}")
            left, left_type = Binary(word, left, right), "bool"
        return left, left_type

    def logical_not(self) -> tuple[Node, Type]:
        if self.at("!"):
            self.take()
            token = self.peek()
            operand, kind = self.logical_not()
            self._require(kind, "bool", token, "operand of 'not'")
            return Unary("not", operand), "bool"
        return self.comparison()

    def comparison(self) -> tuple[Node, Type]:
        left_token = self.peek()
        left, left_type = self.additive()
        if not self.at(*_COMPARISONS):
            return left, left_type
        op = self.take().text
        right_token = self.peek()
        right, right_type = self.additive()
        if op in ("<", "<=", ">", ">="):
            self._require(left_type, "number", left_token, f"left side of {op!r}")
            self._require(right_type, "number", right_token, f"right side of {op!r}")
        elif left_type != right_type:
            raise self.error(f"{op!r} compares a {left_type} with a {right_type}", right_token)
        if self.at(*_COMPARISONS):
            raise self.error("comparisons cannot be chained; join them with 'and'")
        return Binary(op, left, right), "bool"

    def additive(self) -> tuple[Node, Type]:
        return self._arithmetic(self.multiplicative, ("+", "-"))

    def multiplicative(self) -> tuple[Node, Type]:
        return self._arithmetic(self.unary, ("*", "/"))

    def _arithmetic(
        self, operand: Callable[[], tuple[Node, Type]], ops: tuple[str, ...]
    ) -> tuple[Node, Type]:
        left_token = self.peek()
        left, left_type = operand()
        while self.at(*ops):
            op = self.take().text
            right_token = self.peek()
            right, right_type = operand()
            self._require(left_type, "number", left_token, f"left side of {op!r}")
            self._require(right_type, "number", right_token, f"right side of {op!r}")
            left, left_type = Binary(op, left, right), "number"
        return left, left_type

    def unary(self) -> tuple[Node, Type]:
        if self.at("-"):
            self.take()
            token = self.peek()
            operand, kind = self.unary()
            self._require(kind, "number", token, "operand of unary '-'")
            return Unary("-", operand), "number"
        return self.atom()

    def atom(self) -> tuple[Node, Type]:
        token = self.take()
        if token.kind == "number":
            return Number(float(token.text)), "number"
        if token.kind == "name":
            if token.text == "result":
                return Result(), "number"
            if token.text in ("true", "false"):
                return Boolean(token.text == "true"), "bool"
            if token.text in _FUNCTIONS:
                return self.call(token)
            known = ", ".join(["result", "true", "false", *_FUNCTIONS])
            raise self.error(f"unknown name {token.text!r} (known: {known})", token)
        if token.kind == "op" and token.text == "(":
            node, kind = self.logical_or()
            self.expect(")")
            return node, kind
        found = token.text or "end of input"
        raise self.error(f"expected a number, 'result', a function or '(', found {found!r}", token)

    def call(self, name: Token) -> tuple[Node, Type]:
        arity, kind = _FUNCTIONS[name.text]
        self.expect("(")
        args: list[Node] = []
        while True:
            token = self.peek()
            arg, arg_type = self.logical_or()
            self._require(arg_type, "number", token, f"argument of {name.text}()")
            args.append(arg)
            if not self.at(","):
                break
            self.take()
        self.expect(")")
        if len(args) != arity:
            raise self.error(f"{name.text}() takes {arity} argument(s), got {len(args)}", name)
        return Call(name.text, tuple(args)), kind

    def _require(self, actual: Type, wanted: Type, token: Token, what: str) -> None:
        if actual != wanted:
            raise self.error(f"{what} must be a {wanted}, not a {actual}", token)


# ----------------------------------------------------------------------------------------- evaluate


def _evaluate(node: Node, result: float) -> Value:
    match node:
        case Number(value) | Boolean(value):
            return value
        case Result():
            return result
        case Unary("-", operand):
            return -_number(_evaluate(operand, result))
        case Unary("not", operand):
            return not _evaluate(operand, result)
        case Binary("and", left, right):
            return bool(_evaluate(left, result)) and bool(_evaluate(right, result))
        case Binary("or", left, right):
            return bool(_evaluate(left, result)) or bool(_evaluate(right, result))
        case Binary(op, left, right):
            return _binary(op, _evaluate(left, result), _evaluate(right, result))
        case Call(function, args):
            values = [_number(_evaluate(arg, result)) for arg in args]
            return _call(function, values)
    raise AssertionError(f"unknown node {node!r}")  # pragma: no cover - the parser builds no other node


def _number(value: Value) -> float:
    return float(value)


def _binary(op: str, left: Value, right: Value) -> Value:
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    a, b = _number(left), _number(right)
    if op == "/":
        if b == 0:
            raise EvaluationError("division by zero")
        return a / b
    operations: dict[str, Callable[[float, float], Value]] = {
        "+": lambda x, y: x + y,
        "-": lambda x, y: x - y,
        "*": lambda x, y: x * y,
        "<": lambda x, y: x < y,
        "<=": lambda x, y: x <= y,
        ">": lambda x, y: x > y,
        ">=": lambda x, y: x >= y,
    }
    return operations[op](a, b)


def _call(function: str, values: list[float]) -> Value:
    if function == "isNaN":
        return math.isnan(values[0])
    if function == "isInf":
        return math.isinf(values[0])
    if function == "abs":
        return abs(values[0])
    if function == "min":
        return min(values)
    return max(values)


@dataclass(frozen=True)
class Condition:
    """A parsed, type-checked boolean condition over `result`."""

    text: str
    root: Node

    def evaluate(self, result: float) -> bool:
        """The condition's value for this result; EvaluationError on division by zero."""
        return bool(_evaluate(self.root, result))


@lru_cache(maxsize=512)
def parse_condition(text: str) -> Condition:
    """Parse and type-check a condition; ExpressionError (with the column) when it is not valid."""
    if not text.strip():
        raise ExpressionError("empty condition", 0, text)
    root, kind = _Parser(text).parse()
    if kind != "bool":
        raise ExpressionError("a condition must be true or false (compare result with something)", 0, text)
    return Condition(text, root)
