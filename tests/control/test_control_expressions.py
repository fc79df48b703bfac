"""The condition language: the docstring's worked examples, type errors, and no eval."""

from __future__ import annotations

import math
import re

import pytest

from artisan_operator.policy import expressions
from artisan_operator.policy.expressions import EvaluationError, ExpressionError, parse_condition


def _docstring_rows() -> list[tuple[str, float, bool]]:
    rows = []
    for line in (expressions.__doc__ or "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("``"):
            rows.append((cells[0].strip("`"), float(cells[1]), cells[2] == "True"))
    return rows


ROWS = _docstring_rows()


def test_docstring_table_is_parsed() -> None:
    assert len(ROWS) == 7


@pytest.mark.parametrize(("text", "result", "expected"), ROWS)
def test_worked_examples(text: str, result: float, expected: bool) -> None:
    assert parse_condition(text).evaluate(result) is expected


@pytest.mark.parametrize(
    ("text", "result", "expected"),
    [
        ("result < 0.05 and result > 0", 0.0, False),
        ("result < 0.05 || result > 10", 11, True),
        ("!(result == 1)", 1, False),
        ("result / 2 + 1 * 3 - 1 == 2.5", 1, True),
        ("-(-result) == result", 4, True),
        ("1e-3 < result", 0.01, True),
        ("true", 0, True),
        ("isInf(result)", math.inf, True),
        ("min(result, 2) + max(result, 2) == 5", 3, True),
        ("result < 0.05", math.nan, False),
    ],
)
def test_operators_and_precedence(text: str, result: float, expected: bool) -> None:
    assert parse_condition(text).evaluate(result) is expected


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("result", "must be true or false", 1),
        ("result < ", "expected a number", 10),
        ("foo > 1", "unknown name 'foo'", 1),
        ("result + true > 1", "right side of '+' must be a number", 10),
        ("result @ 1", "unexpected character '@'", 8),
        ("min(1) > 0", "takes 2 argument", 1),
        ("(result > 1", "expected ')'", 12),
        ("result > 1 and 2", "right side of 'and' must be a bool", 16),
        ("__import__(result) > 0", "unknown name '__import__'", 1),
        ("result > 1 == false", "cannot be chained", 12),
        ("result.real > 0", "unexpected character '.'", 7),
        ("", "empty condition", 1),
    ],
)
def test_errors_name_the_column(text: str, message: str, column: int) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)) as info:
        parse_condition(text)
    assert info.value.position + 1 == column
    assert f"column {column}" in str(info.value)


def test_division_by_zero_is_an_evaluation_error() -> None:
    condition = parse_condition("1 / result > 2")
    assert condition.evaluate(0.25) is True
    with pytest.raises(EvaluationError, match="division by zero"):
        condition.evaluate(0.0)


def test_ast_is_frozen() -> None:
    condition = parse_condition("result < 1")
    with pytest.raises(AttributeError):
        condition.root.op = ">"  # type: ignore[union-attr,misc]


@pytest.mark.parametrize("field", ["successCondition", "failureCondition"])
def test_invalid_condition_is_refused_when_the_spec_is_parsed(field: str) -> None:
    from pydantic import ValidationError

    from artisan_operator.api.canary import CanarySpec

    metric = {
        "name": "errors",
        "successCondition": "result < 1",
        "provider": {"builtin": {"name": "errorRate"}},
    }
    metric[field] = "result <> 1"
    with pytest.raises(ValidationError) as info:
        CanarySpec.model_validate(
            {"targetRef": {"name": "fleet"}, "steps": [{"analysis": {"metrics": [metric]}}]}
        )
    error = info.value.errors()[0]
    assert error["loc"][-1] == field
    assert "column 9" in error["msg"]
