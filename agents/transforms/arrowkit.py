"""Arrow helpers shared by the transformation engine and the parsers: reading and writing fields
by name (dotted names reach into struct columns), text and number views of any column, merging a
step's output into the rows its ``when`` selected, and the one DuckDB connection per thread.

Field names: a name that is a top-level column is that column, even when it holds dots; otherwise
``a.b`` walks into the struct column ``a`` (child ``b``). Writing a field replaces the top-level
column, or the struct child when the name resolves to one, or appends a new top-level column
named exactly as given.
"""

from __future__ import annotations

import threading
from typing import Any, Final, TypeAlias

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ArrayLike",
    "as_number",
    "as_text",
    "duck",
    "false_mask",
    "get_field",
    "merge",
    "number_literal",
    "remove_field",
    "set_field",
    "to_array",
]

ArrayLike: TypeAlias = pa.Array | pa.ChunkedArray

_ARROW_ERRORS: Final = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)
# A decimal or integer literal, optionally signed, with optional exponent; no spaces, no inf/nan.
NUMBER_PATTERN: Final = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_local = threading.local()


def duck() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB connection (one thread of DuckDB's own: pipers scale by process)."""
    con: duckdb.DuckDBPyConnection | None = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect(config={"threads": 1})
        _local.con = con
    return con


def to_array(values: ArrayLike) -> pa.Array:
    """``values`` as one array (a single chunk as it is, without copying)."""
    if isinstance(values, pa.ChunkedArray):
        return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    return values


def false_mask(n: int) -> pa.BooleanArray:
    return pa.array(np.zeros(n, dtype=np.bool_))


# -- fields -----------------------------------------------------------------------------------


def get_field(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    """The column ``name`` (or struct child, see the module docstring); None when it does not exist."""
    if name in table.column_names:
        return table.column(name)
    head, _, rest = name.partition(".")
    if not rest or head not in table.column_names:
        return None
    column: pa.ChunkedArray = table.column(head)
    for part in rest.split("."):
        if not pa.types.is_struct(column.type) or column.type.get_field_index(part) < 0:
            return None
        column = pc.struct_field(column, part)
    return column


def set_field(table: pa.Table, name: str, values: ArrayLike) -> pa.Table:
    """``table`` with ``name`` set to ``values`` (same length)."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    head, _, rest = name.partition(".")
    if rest and head in table.column_names and _struct_parent(table.column(head).type, rest):
        column = to_array(table.column(head))
        return table.set_column(table.column_names.index(head), head, _set_child(column, rest.split("."), values))
    return table.append_column(name, values)


def remove_field(table: pa.Table, name: str) -> pa.Table:
    """``table`` without ``name``; unchanged when it does not exist."""
    if name in table.column_names:
        return table.remove_column(table.column_names.index(name))
    head, _, rest = name.partition(".")
    if not rest or head not in table.column_names or get_field(table, name) is None:
        return table
    column = to_array(table.column(head))
    return table.set_column(table.column_names.index(head), head, _set_child(column, rest.split("."), None))


def _struct_parent(dtype: pa.DataType, rest: str) -> bool:
    """Whether every part of ``rest`` but the last is a struct child below ``dtype`` (a struct)."""
    parts = rest.split(".")
    for part in parts[:-1]:
        if not pa.types.is_struct(dtype) or dtype.get_field_index(part) < 0:
            return False
        dtype = dtype.field(part).type
    return bool(pa.types.is_struct(dtype))


def _set_child(struct: pa.StructArray, path: list[str], values: ArrayLike | None) -> pa.StructArray:
    """``struct`` with child ``path`` replaced by ``values`` (removed when None), rows' validity kept."""
    names = [struct.type.field(i).name for i in range(struct.type.num_fields)]
    children = [pc.struct_field(struct, n) for n in names]  # with the parent's nulls applied
    head = path[0]
    if len(path) > 1:
        children[names.index(head)] = _set_child(to_array(children[names.index(head)]), path[1:], values)
    elif values is None:
        del children[names.index(head)]
        names.remove(head)
    elif head in names:
        children[names.index(head)] = to_array(values)
    else:
        names.append(head)
        children.append(to_array(values))
    mask = struct.is_null() if struct.null_count else None
    return pa.StructArray.from_arrays(children, names=names, mask=mask)


# -- views ------------------------------------------------------------------------------------


def as_text(values: ArrayLike) -> ArrayLike:
    """``values`` as strings, nulls kept: numbers in their shortest form, booleans ``true``/``false``,
    timestamps ISO 8601 (``Z`` for zoned ones, in UTC), binary as UTF-8 (invalid bytes replaced),
    nested values as JSON."""
    dtype = values.type
    if pa.types.is_string(dtype):
        return values
    if pa.types.is_dictionary(dtype):
        return as_text(values.cast(dtype.value_type))
    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return values.cast(pa.string())
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_fixed_size_binary(dtype):
        try:
            return values.cast(pa.binary()).cast(pa.string())
        except pa.ArrowInvalid:
            fixed = [None if b is None else b.decode("utf-8", "replace") for b in values.to_pylist()]
            return pa.array(fixed, pa.string())
    if pa.types.is_timestamp(dtype):
        if dtype.tz is None:
            return pc.strftime(values, format="%Y-%m-%dT%H:%M:%S")
        utc = values.cast(pa.timestamp(dtype.unit, "UTC"))
        return pc.binary_join_element_wise(pc.strftime(utc, format="%Y-%m-%dT%H:%M:%S"), "Z", "")
    if pa.types.is_nested(dtype):
        return _json_column(values)
    try:
        return values.cast(pa.string())
    except _ARROW_ERRORS:
        return _json_column(values)


def number_literal(text: str) -> float | int | None:
    """``text`` as a number when it is one (see NUMBER_PATTERN), else None."""
    stripped = text.strip()
    if not pc.match_substring_regex(pa.array([stripped]), pattern=NUMBER_PATTERN)[0].as_py():
        return None
    try:
        number = int(stripped)
    except ValueError:
        return float(stripped)
    return number if -(2**63) <= number < 2**63 else float(number)


def as_number(values: ArrayLike) -> ArrayLike:
    """``values`` as int64 (integer columns) or float64; null where a value is not a number.
    Strings count as numbers when they hold one, surrounded by spaces or not; booleans do not."""
    dtype = values.type
    if pa.types.is_integer(dtype):
        return values.cast(pa.int64()) if not pa.types.is_uint64(dtype) else values.cast(pa.float64())
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return values.cast(pa.float64())
    if not (pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_dictionary(dtype)):
        return pa.nulls(len(values), pa.float64())
    text = pc.utf8_trim_whitespace(as_text(values))
    ok = pc.match_substring_regex(text, pattern=NUMBER_PATTERN)
    return pc.if_else(ok, text, None).cast(pa.float64())


# -- merging ----------------------------------------------------------------------------------


def merge(mask: pa.BooleanArray | None, new: ArrayLike, old: ArrayLike | None) -> ArrayLike:
    """``new`` where ``mask`` is true, ``old`` (null when None) elsewhere; all of ``new`` without a mask.

    The result takes ``new``'s type; when ``old``'s values cannot take it, both become text, so no
    value of an unselected row is lost."""
    if mask is None:
        return new
    if old is None:
        return pc.if_else(mask, new, pa.scalar(None, new.type))
    if old.type != new.type:
        try:
            old = old.cast(new.type)
        except _ARROW_ERRORS:
            new, old = as_text(new), as_text(old)
    return pc.if_else(mask, new, old)


# -- JSON -------------------------------------------------------------------------------------


def _json_column(values: ArrayLike) -> pa.Array:
    nulls = values.is_null()
    con = duck()
    con.register("_floe_col", pa.table({"v": values}))
    try:
        out = con.sql("SELECT to_json(v)::VARCHAR AS j FROM _floe_col").to_arrow_table()
    finally:
        con.unregister("_floe_col")
    result: Any = pc.if_else(nulls, pa.scalar(None, pa.string()), to_array(out.column(0)).cast(pa.string()))
    return to_array(result)
