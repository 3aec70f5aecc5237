"""One schema for the batches that go into one Parquet file.

The rule, applied per field across the batches:
- a field missing from a batch is null there; a field that is all-null takes the other type;
- numeric types widen (int32 + int64 -> int64, int + float -> float64), timestamps to the finest
  unit, as Arrow's "permissive" promotion does;
- any other conflict (e.g. int64 in one batch, string in another) makes the field a string:
  values are cast to text (nested values become JSON), so nothing is dropped.

Files written at different times may still disagree (a field that is int64 in one hour and
string in the next); readers combine them with ``union_by_name`` and the same widening.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["conform", "unified_schema", "unify"]


def _target_type(types: list[pa.DataType]) -> pa.DataType:
    distinct = list(dict.fromkeys(types))
    if len(distinct) == 1:
        return distinct[0]
    try:
        merged = pa.unify_schemas(
            [pa.schema([pa.field("f", t)]) for t in distinct], promote_options="permissive"
        ).field("f")
        return merged.type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pa.string()


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        # Nested values have no cast to string in Arrow: write them as JSON (rare, per value).
        values = [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()]
        return pa.chunked_array([pa.array(values, pa.string())])


def unified_schema(schemas: list[pa.Schema]) -> pa.Schema:
    """The schema that holds every one of ``schemas`` (fields in order of first appearance)."""
    order: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for f in schema:
            order.setdefault(f.name, []).append(f.type)
    return pa.schema(
        [
            pa.field(name, _target_type([t for t in types if t != pa.null()] or [pa.null()]))
            for name, types in order.items()
        ]
    )


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns: missing ones null, others cast by the rule."""
    columns: list[pa.Array | pa.ChunkedArray] = []
    for f in schema:
        if f.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table.column(f.name)
        if col.type == f.type:
            columns.append(col)
        elif f.type == pa.string():
            columns.append(_as_text(col))
        else:
            columns.append(pc.cast(col, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def unify(tables: list[pa.Table]) -> pa.Table:
    """Concatenate ``tables`` under one schema (see the module docstring for the rule)."""
    schema = unified_schema([t.schema for t in tables])
    return pa.concat_tables([conform(t, schema) for t in tables]) if tables else pa.table({})
