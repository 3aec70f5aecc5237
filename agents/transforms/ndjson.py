"""Tolerant NDJSON reading into Arrow: one bad line or one field whose type changes between lines
never fails the whole batch.

The fast path is ``pyarrow.json`` over the whole buffer in C++. Only when it fails does this
module look at lines one by one (the standard library's ``json``): lines that are not JSON objects
(invalid JSON, invalid UTF-8, arrays, scalars) come back as errors with the reason; the rest are
read again, and a top-level field whose type conflicts between lines (a number here, a string or
an object there) is stored as text for the whole batch: strings as they are, other values as
their JSON text. Fields inferred as timestamps (ISO 8601 strings without fraction, read as UTC)
become ``timestamp[us, UTC]`` like every timestamp Floe writes.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from agents.transforms.arrowkit import to_array

__all__ = ["JsonLines", "line_array", "read_json_lines", "read_json_values"]

_TIMESTAMP: Final = pa.timestamp("us", tz="UTC")
_CONFLICT = re.compile(r"Column\((/[^)]*)\) (?:changed from|was specified)")
_PARSE_OPTIONS: Final = pj.ParseOptions(newlines_in_values=False, unexpected_field_behavior="infer")


@dataclass(frozen=True)
class JsonLines:
    """What ``read_json_lines`` read: ``table`` holds one row per good line; ``rows`` says which
    input line (0-based index into the lines given) each row came from, or is None when every
    non-blank line became a row in order; ``errors`` lists (line index, reason) of the bad lines."""

    table: pa.Table
    rows: np.ndarray | None
    errors: list[tuple[int, str]]


def line_array(body: bytes) -> pa.Array:
    """The lines of ``body`` as a binary array, without their ``\\n``/``\\r\\n`` ends; blank lines kept."""
    if len(body) < 2**31 - 1:  # Arrow splits at "\n" (memchr); lines ending in "\r" take the general way
        whole = pa.Array.from_buffers(
            pa.binary(), 1, [None, pa.py_buffer(np.array([0, len(body)], np.int32)), pa.py_buffer(body)]
        )
        lines = pc.list_flatten(pc.split_pattern(whole, "\n"))
        if body.endswith(b"\n"):  # no line after the last newline
            lines = lines.slice(0, len(lines) - 1)
        buffers = lines.buffers()
        offsets = np.frombuffer(buffers[1], np.int32)[lines.offset : lines.offset + len(lines) + 1]
        ends = offsets[1:][offsets[1:] > offsets[:-1]] - 1
        if not ends.size or not (np.frombuffer(buffers[2], np.uint8)[ends] == 13).any():
            return lines
    data = np.frombuffer(body, np.uint8)
    newlines = np.flatnonzero(data == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(body)]))
    if len(body) and body.endswith(b"\n"):  # no line after the last newline
        starts, ends = starts[:-1], ends[:-1]
    # A line ended by "\r\n" loses the "\r" too (a last line without "\n" keeps it).
    crlf = (newlines > starts[: len(newlines)]) & (data[newlines - 1] == 13)
    cr = newlines[crlf] - 1
    ends[: len(newlines)][crlf] -= 1
    large = len(body) >= 2**31 - 1
    offsets = np.zeros(len(starts) + 1, np.int64 if large else np.int32)
    np.cumsum(ends - starts, out=offsets[1:])
    removed = np.sort(np.concatenate((newlines, cr))) if cr.size else newlines
    if removed.size:
        keep = np.ones(len(data), np.bool_)
        keep[removed] = False
        values = pa.py_buffer(data[keep])
    else:
        values = pa.py_buffer(body)
    return pa.Array.from_buffers(
        pa.large_binary() if large else pa.binary(), len(starts), [None, pa.py_buffer(offsets), values]
    )


def read_json_lines(body: bytes, lines: Sequence[bytes] | None = None) -> JsonLines:
    """Read NDJSON ``body`` (blank lines skipped). ``lines`` is ``body`` already split at ``\\n``
    when the caller has it; errors and ``rows`` index into it (or into ``body.split(b"\\n")``)."""
    if body.strip():
        try:
            return JsonLines(_normalise(_read(body)), None, [])
        except (pa.ArrowInvalid, UnicodeDecodeError):
            pass
    elif not body:
        return JsonLines(pa.table({}), None, [])
    return _recover(body.split(b"\n") if lines is None else lines)


def read_json_values(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Table, pa.BooleanArray, list[str | None]]:
    """Parse each string of ``values`` as a JSON object: a table with one row per value (all null
    where the value is null or failed), the mask of failed values, and each value's failure reason."""
    arr = to_array(values)
    n = len(arr)
    text = pc.replace_substring_regex(arr.cast(pa.string()), pattern=r"[\r\n]", replacement=" ")
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), False)
    text = pc.if_else(pc.or_(blank, text.is_null()), "{}", text)
    body = b"" if n == 0 else pc.binary_join(pa.ListArray.from_arrays([0, n], text), "\n")[0].as_py().encode()
    reasons: list[str | None] = [None] * n
    for blank_at in np.flatnonzero(blank.to_numpy(zero_copy_only=False)).tolist():
        reasons[blank_at] = "is empty, not a JSON object"
    if n == 0:
        return pa.table({}), pa.array([], pa.bool_()), reasons
    lines = body.split(b"\n")
    result = read_json_lines(body, lines)
    for i, reason in result.errors:
        reasons[i] = reason
    table = result.table
    if result.rows is not None or table.num_rows != n:
        rows = result.rows if result.rows is not None else np.arange(table.num_rows)
        index = np.full(n, -1, np.int64)
        index[rows] = np.arange(len(rows))
        table = table.take(pa.array(index, mask=index < 0))
    # Failed lines have no row (taken as null); null and blank values read as "{}", an all-null row.
    return table, pa.array([r is not None for r in reasons], pa.bool_()), reasons


def _read(body: bytes) -> pa.Table:
    options = pj.ReadOptions(use_threads=False, block_size=min(max(len(body) + 1, 1 << 20), (1 << 31) - 1))
    return pj.read_json(io.BytesIO(body), read_options=options, parse_options=_PARSE_OPTIONS)


def _recover(lines: Sequence[bytes]) -> JsonLines:
    rows: list[int] = []
    records: list[dict[str, Any]] = []
    errors: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except UnicodeDecodeError:
            errors.append((i, "is not valid UTF-8"))
            continue
        except json.JSONDecodeError as exc:
            errors.append((i, f"is not valid JSON: {exc.msg} at character {exc.pos + 1}"))
            continue
        if not isinstance(value, dict):
            errors.append((i, f"is a JSON {_kind(value)}, not an object"))
            continue
        rows.append(i)
        records.append(value)
    return JsonLines(_normalise(_tolerant_table(records)), np.array(rows, np.int64), errors)


def _tolerant_table(records: list[dict[str, Any]]) -> pa.Table:
    """``records`` read by ``pyarrow.json``, with fields whose types conflict turned into text."""
    if not records:
        return pa.table({})
    as_text: set[str] = set()
    for _ in range(len({k for r in records for k in r}) + 1):
        body = "\n".join(json.dumps(_texted(r, as_text), ensure_ascii=False) for r in records).encode()
        try:
            return _read(body)
        except pa.ArrowInvalid as exc:
            match = _CONFLICT.search(str(exc))
            key = match.group(1)[1:].split("/")[0] if match else ""
            if key and key not in as_text and any(key in r for r in records):
                as_text.add(key)
            else:  # not a conflict we can name: every field becomes text
                as_text = {k for r in records for k in r}
    raise ValueError("records could not be read as a table")  # unreachable: all-text always reads


def _texted(record: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    if not keys:
        return record
    return {
        k: (v if v is None or isinstance(v, str) or k not in keys else json.dumps(v, ensure_ascii=False))
        for k, v in record.items()
    }


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _normalise(table: pa.Table) -> pa.Table:
    """Timestamps inferred by ``pyarrow.json`` (naive, seconds) as ``timestamp[us, UTC]``."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is None:
            column = table.column(i).cast(pa.timestamp(field.type.unit, "UTC")).cast(_TIMESTAMP)
            table = table.set_column(i, field.name, column)
    return table
