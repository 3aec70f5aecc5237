"""Conditions (``floe.v1.Condition``) compiled once into functions from a table to a boolean mask.

Rules, the same for every step that takes a condition (``when``, filter, route):

- The mask has no nulls. A leaf condition (compare, regex, in, exists) is false in every row where
  its field is missing from the table or null; ``not`` then inverts it, so ``not(level eq "x")``
  matches records without a ``level``. ``all``/``any`` are plain and/or.
- ``compare``: when the condition's value is a number, rows whose field holds a number (a numeric
  column, or a string that reads as one) compare as numbers, so ``"10" gt 9`` is true; all other rows
  compare as text (the field's text form, see ``arrowkit.as_text``), byte by byte. ``contains``,
  ``starts_with`` and ``ends_with`` always compare text, case-sensitively.
- ``in``: true when the field's text equals one of the values, or, for numbers, equals one as a number.
- ``regex``: an RE2 search (not anchored) over the field's text.
- ``exists``: the field is present and not null.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agents.transforms.arrowkit import ArrayLike, as_number, as_text, false_mask, get_field, number_literal, to_array
from floe.v1 import transforms_pb2 as tp

__all__ = ["Predicate", "compile_condition"]

Predicate = Callable[[pa.Table], pa.BooleanArray]
_OP = tp.Comparison
_ORDER: dict[int, str] = {
    _OP.OPERATOR_EQ: "equal",
    _OP.OPERATOR_NE: "not_equal",
    _OP.OPERATOR_LT: "less",
    _OP.OPERATOR_LE: "less_equal",
    _OP.OPERATOR_GT: "greater",
    _OP.OPERATOR_GE: "greater_equal",
}


def compile_condition(cond: tp.Condition) -> Predicate:
    """A function giving, for a table, the rows matching ``cond`` (a validated condition)."""
    kind = cond.WhichOneof("kind")
    if kind in ("all", "any"):
        parts = [compile_condition(c) for c in getattr(cond, kind).conditions]
        combine = pc.and_ if kind == "all" else pc.or_

        def group(table: pa.Table) -> pa.BooleanArray:
            result = parts[0](table)
            for part in parts[1:]:
                result = combine(result, part(table))
            return result

        return group
    if kind == "not":
        inner = compile_condition(getattr(cond, "not"))
        return lambda table: pc.invert(inner(table))
    if kind == "compare":
        return _leaf(cond.compare.field, _comparison(cond.compare.operator, cond.compare.value))
    if kind == "regex":
        pattern = cond.regex.pattern
        return _leaf(cond.regex.field, lambda v: pc.match_substring_regex(as_text(v), pattern=pattern))
    if kind == "in":
        return _leaf(getattr(cond, "in").field, _membership(list(getattr(cond, "in").values)))
    if kind == "exists":
        return _leaf(cond.exists.field, lambda v: v.is_valid())
    raise ValueError(f"condition sets no kind: {cond}")


def _leaf(field: str, test: Callable[[ArrayLike], Any]) -> Predicate:
    def predicate(table: pa.Table) -> pa.BooleanArray:
        values = get_field(table, field)
        if values is None:
            return false_mask(table.num_rows)
        return to_array(pc.fill_null(test(values), False))

    return predicate


def _comparison(op: int, value: str) -> Callable[[ArrayLike], Any]:
    if op == _OP.OPERATOR_CONTAINS:
        return lambda v: pc.match_substring(as_text(v), pattern=value)
    if op == _OP.OPERATOR_STARTS_WITH:
        return lambda v: pc.starts_with(as_text(v), pattern=value)
    if op == _OP.OPERATOR_ENDS_WITH:
        return lambda v: pc.ends_with(as_text(v), pattern=value)
    func = getattr(pc, _ORDER[op])
    number = number_literal(value)
    text = pa.scalar(value, pa.string())
    if number is None:
        return lambda v: func(as_text(v), text)

    def compare(v: ArrayLike) -> Any:
        numbers = as_number(v)
        if pa.types.is_integer(numbers.type) and isinstance(number, float):
            numbers = numbers.cast(pa.float64())
        by_number = func(numbers, pa.scalar(number, numbers.type))
        if numbers.null_count == v.null_count:  # every value is a number (or null)
            return by_number
        return pc.if_else(numbers.is_valid(), by_number, func(as_text(v), text))

    return compare


def _membership(values: list[str]) -> Callable[[ArrayLike], Any]:
    text_set = pa.array(values, pa.string())
    numbers = [n for n in (number_literal(v) for v in values) if n is not None]
    number_set = pa.array([float(n) for n in numbers], pa.float64())

    def member(v: ArrayLike) -> Any:
        by_text = pc.is_in(as_text(v), value_set=text_set)
        if not numbers:
            return by_text
        as_float = as_number(v).cast(pa.float64())
        return pc.or_(by_text, pc.fill_null(pc.is_in(as_float, value_set=number_set), False))

    return member
