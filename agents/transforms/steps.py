"""One function per transformation kind, built once from its ``floe.v1`` message and run on whole
Arrow tables. The rules they follow are stated in ``agents.transforms.engine``'s docstring.

A step gets the table and its ``when`` mask (None: every row) and returns a ``StepOutput``: the
new table, and for steps that can fail per record, which rows failed and why. Steps that drop
rows (filter, sample, route) return the shorter table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agents.transforms import convert as cv
from agents.transforms.arrowkit import ArrayLike, as_text, get_field, merge, remove_field, set_field, to_array
from agents.transforms.conditions import compile_condition
from agents.transforms.keyvalue import split_pairs
from agents.transforms.ndjson import read_json_values
from floe.v1 import transforms_pb2 as tp

__all__ = ["Step", "StepOutput", "build_step"]


@dataclass
class StepOutput:
    table: pa.Table
    #: Rows of the input that failed (same length as ``table``), or None.
    failed: pa.BooleanArray | None = None
    #: Why: one sentence for all failed rows, or one per row of the input (null where none).
    reason: str | pa.Array = ""
    routed: pa.Table | None = None
    #: Counters worth reporting (e.g. keys beyond the limit of parse_key_value).
    notes: dict[str, int] = field(default_factory=dict)


Step = Callable[[pa.Table, pa.BooleanArray | None], StepOutput]
_Builder = Callable[[Any, str], Step]


def build_step(step: tp.Transformation, salt: str) -> Step:
    """The function running ``step`` (validated)."""
    kind = step.WhichOneof("kind")
    if kind is None:
        raise ValueError("a transformation step sets no kind")
    return _BUILDERS[kind](getattr(step, kind), salt)


def _constant(value: Any, dtype: pa.DataType, n: int) -> pa.Array:
    return pa.array([value], dtype).take(pa.array(np.zeros(n, np.int64)))


def _both(when: pa.BooleanArray | None, other: Any) -> Any:
    """``when`` and ``other`` (a mask, possibly with nulls read as false)."""
    other = pc.fill_null(other, False)
    return other if when is None else pc.and_(when, other)


def _add_field(msg: tp.AddField, salt: str) -> Step:
    def run(table: pa.Table, when: pa.BooleanArray | None) -> StepOutput:
        n, old = table.num_rows, get_field(table, msg.field)
        value: Any = _constant(msg.value, pa.string(), n)
        if old is not None and not cv.is_text(old.type):
            # Keep a typed column typed when the constant fits it ("5" into an int column).
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                value = _constant(pa.scalar(msg.value).cast(old.type).as_py(), old.type, n)
        if old is not None and not msg.overwrite:
            value = pc.coalesce(old, value) if old.type == value.type else pc.coalesce(as_text(old), value)
        return StepOutput(set_field(table, msg.field, merge(when, value, old)))

    return run


def _remove_fields(msg: tp.RemoveFields, salt: str) -> Step:
    def run(table: pa.Table, when: pa.BooleanArray | None) -> StepOutput:
        for name in msg.fields:
            old = get_field(table, name)
            if old is None:
                continue
            if when is None:
                table = remove_field(table, name)
            else:
                table = set_field(table, name, pc.if_else(when, pa.scalar(None, old.type), old))
        return StepOutput(table)

    return run


def _move(source: str, target: str, keep_source: bool) -> Step:
    def run(table: pa.Table, when: pa.BooleanArray | None) -> StepOutput:
        values = get_field(table, source)
        if values is None:
            return StepOutput(table)
        if when is None and not keep_source and source in table.column_names and target not in table.column_names:
            names = [target if c == source else c for c in table.column_names]
            return StepOutput(table.rename_columns(names))  # keeps the column's position
        old = get_field(table, target)
        table = set_field(table, target, merge(when, values, old))
        if not keep_source:
            if when is None:
                table = remove_field(table, source)
            else:
                table = set_field(table, source, pc.if_else(when, pa.scalar(None, values.type), values))
        return StepOutput(table)

    return run


def _rename_field(msg: tp.RenameField, salt: str) -> Step:
    return _move(getattr(msg, "from"), msg.to, keep_source=False)


def _copy_field(msg: tp.CopyField, salt: str) -> Step:
    return _move(getattr(msg, "from"), msg.to, keep_source=True)


def _filter(msg: tp.Filter, salt: str) -> Step:
    matches = compile_condition(msg.condition)
    include = msg.mode == tp.Filter.MODE_INCLUDE

    def run(table: pa.Table, when: pa.BooleanArray | None) -> StepOutput:
        mask = matches(table)
        return StepOutput(table.filter(mask if include else pc.invert(mask)))

    return run


def _in_place(name: str, fn: Callable[[ArrayLike], ArrayLike]) -> Step:
    """A step replacing field ``name``'s values with ``fn(values)``; no-op when it is missing."""

    def run(table: pa.Table, when: pa.BooleanArray | None) -> StepOutput:
        values = get_field(table, name)
        if values is None:
            return StepOutput(table)
        return StepOutput(set_field(table, name, merge(when, fn(values), values)))

    return run


def _regex_replace(msg: tp.RegexReplace, salt: str) -> Step:
    pattern, replacement = msg.pattern, msg.replacement
    return _in_place(
        msg.field, lambda v: pc.replace_substring_regex(as_text(v), pattern=pattern, replacement=replacement)
    )


def _mask(msg: tp.Mask, salt: str) -> Step:
    char, keep = msg.mask_char or "*", msg.keep_last
    return _in_place(msg.field, lambda v: cv.mask_matches(v, msg.pattern, char, keep))


def _change_case(msg: tp.ChangeCase, salt: str) -> Step:
    func = pc.utf8_lower if msg.case == tp.ChangeCase.CASE_LOWER else pc.utf8_upper
    # Only text changes case: numbers, booleans and timestamps are left as they are.
    return _in_place(msg.field, lambda v: func(as_text(v)) if cv.is_text(v.type) else v)


def _hash_field(msg: tp.HashField, salt: str) -> Step:
    target = msg.target or msg.field

    def run(table: pa.Table, when: pa.BooleanArray | None) -> StepOutput:
        values = get_field(table, msg.field)
        if values is None:
            return StepOutput(table)
        digests = cv.salted_sha256(values if when is None else pc.if_else(when, as_text(values), None), salt)
        return StepOutput(set_field(table, target, merge(when, digests, get_field(table, target))))

    return run


def _failing(source: str, target: str, fn: Callable[[ArrayLike], ArrayLike], reason: str) -> Step:
    """A conversion step: rows where a non-null value converts to null fail with ``reason``."""

    def run(table: pa.Table, when: pa.BooleanArray | None) -> StepOutput:
        values = get_field(table, source)
        if values is None:
            return StepOutput(table)
        converted = fn(values)
        failed = to_array(_both(when, pc.and_(values.is_valid(), converted.is_null())))
        out = set_field(table, target, merge(when, converted, get_field(table, target)))
        return StepOutput(out, failed, reason)

    return run


_TYPE_WORDS = {
    tp.ConvertType.TYPE_STRING: "text",
    tp.ConvertType.TYPE_INT: "a whole number (int64)",
    tp.ConvertType.TYPE_FLOAT: "a number",
    tp.ConvertType.TYPE_BOOL: "true or false (true/false, yes/no, on/off, 1/0)",
}


def _convert_type(msg: tp.ConvertType, salt: str) -> Step:
    reason = f"field {msg.field!r} holds a value that does not convert to {_TYPE_WORDS[msg.type]}"
    return _failing(msg.field, msg.field, lambda v: cv.convert(v, msg.type), reason)


def _parse_timestamp(msg: tp.ParseTimestamp, salt: str) -> Step:
    formats = list(msg.formats) or ["rfc3339"]
    reason = f"field {msg.field!r} matches none of the timestamp formats {', '.join(formats)}"
    return _failing(msg.field, msg.target or msg.field, lambda v: cv.parse_timestamps(v, formats, msg.timezone), reason)


def _parse_key_value(msg: tp.ParseKeyValue, salt: str) -> Step:
    def run(table: pa.Table, when: pa.BooleanArray | None) -> StepOutput:
        values = get_field(table, msg.field)
        if values is None:
            return StepOutput(table)
        pairs = split_pairs(values, msg.pair_separator, msg.kv_separator)
        for key, column in pairs.columns.items():
            name = msg.prefix + key
            old = get_field(table, name)
            table = set_field(table, name, merge(_both(when, column.is_valid()), column, old))
        return StepOutput(table, notes={"keys_dropped": pairs.dropped_keys} if pairs.dropped_keys else {})

    return run


def _flatten(table: pa.Table, separator: str) -> pa.Table:
    """Struct columns replaced by their children, named ``parent{separator}child``, recursively."""
    while any(pa.types.is_struct(f.type) for f in table.schema):
        names, columns = [], []
        for name, column in zip(table.column_names, table.columns, strict=True):
            if pa.types.is_struct(column.type):
                for child in column.type:
                    names.append(f"{name}{separator}{child.name}")
                    columns.append(pc.struct_field(column, child.name))
            else:
                names.append(name)
                columns.append(column)
        table = pa.table(columns, names=names)
    return table


def _parse_json(msg: tp.ParseJson, salt: str) -> Step:
    separator = msg.separator or "."

    def run(table: pa.Table, when: pa.BooleanArray | None) -> StepOutput:
        values = get_field(table, msg.field)
        if values is None:
            return StepOutput(table)
        failed: Any = None
        reason: str | pa.Array = ""
        if pa.types.is_struct(values.type):  # already an object (e.g. read from NDJSON): flatten it
            parsed = _flatten(pa.table({"_": values}), separator)
            parsed = parsed.rename_columns([c[len("_" + separator) :] for c in parsed.column_names])
        else:
            parsed, bad, reasons = read_json_values(as_text(values))
            failed = to_array(_both(when, bad))
            reason = pa.array([None if r is None else f"field {msg.field!r} {r}" for r in reasons], pa.string())
            parsed = _flatten(parsed, separator)
        for name, column in zip(parsed.column_names, parsed.columns, strict=True):
            target = msg.prefix + name
            table = set_field(table, target, merge(_both(when, column.is_valid()), column, get_field(table, target)))
        return StepOutput(table, failed, reason)

    return run


def _sample(msg: tp.Sample, salt: str) -> Step:
    rate = max(1, msg.rate)
    seen = [0]  # records counted so far across runs: exactly one in `rate` over the stream

    def run(table: pa.Table, when: pa.BooleanArray | None) -> StepOutput:
        n = table.num_rows
        candidates = np.ones(n, np.bool_) if when is None else when.to_numpy(zero_copy_only=False)
        position = seen[0] + np.cumsum(candidates) - 1
        keep = ~candidates | (position % rate == 0)
        seen[0] += int(candidates.sum())
        return StepOutput(table.filter(pa.array(keep)))

    return run


def _route(msg: tp.Route, salt: str) -> Step:
    matches = compile_condition(msg.condition)

    def run(table: pa.Table, when: pa.BooleanArray | None) -> StepOutput:
        mask = matches(table)
        return StepOutput(table.filter(pc.invert(mask)), routed=table.filter(mask))

    return run


_BUILDERS: dict[str, _Builder] = {
    "add_field": _add_field,
    "remove_fields": _remove_fields,
    "rename_field": _rename_field,
    "copy_field": _copy_field,
    "filter": _filter,
    "regex_replace": _regex_replace,
    "mask": _mask,
    "hash_field": _hash_field,
    "convert_type": _convert_type,
    "parse_timestamp": _parse_timestamp,
    "parse_key_value": _parse_key_value,
    "parse_json": _parse_json,
    "change_case": _change_case,
    "sample": _sample,
    "route": _route,
}
