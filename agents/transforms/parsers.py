"""Parsers: a raw batch body (already decompressed) and its data hint to an Arrow table, plus a
table of the lines that could not be parsed and why. Every parser works on the whole body at once
(pyarrow's JSON and CSV readers, RE2 over the line array); Python looks at single lines only when
a batch is broken (invalid JSON, invalid UTF-8).

Hints and what they produce:

- ``ndjson`` (also ``sflow``, ``ipfix``, ``netflow``: the proxy sends flows as NDJSON records): one
  row per JSON object line, see ``agents.transforms.ndjson`` for how conflicts are resolved; lines
  that are not JSON objects are errors.
- ``syslog``: raw RFC 5424/3164 lines through ``agents.sources.syslog.parse_syslog`` (lines that fit
  neither are kept with ``format = "raw"``, never errors); lines starting with ``{`` are records the
  proxy already parsed, read as NDJSON with the syslog columns' types restored.
- ``text``: one ``message`` per line.
- ``csv`` / ``tsv``: the first row is the header (empty names become ``column_N``, repeats get
  ``_2``...); types inferred over the whole batch, or all text when a column cannot hold one type;
  rows with the wrong number of columns are errors. TSV has no quoting.
- ``cef``: ``CEF:Version|Vendor|Product|Version|SignatureID|Name|Severity|Extension`` (``\\|`` and
  ``\\\\`` escaped in the header; ``\\=``, ``\\\\``, ``\\n``, ``\\r`` in extension values), anything
  before ``CEF:`` (a syslog header) kept in ``syslog_header``. Columns ``cefVersion``, ``deviceVendor``,
  ``deviceProduct``, ``deviceVersion``, ``deviceEventClassId``, ``name``, ``severity`` and one per
  extension key (``ext_``-prefixed if it repeats a header name). Other lines are errors.
- ``kv``: ``key=value`` pairs (see ``agents.transforms.keyvalue``), one column per key; lines
  without a pair are errors.

Blank lines are skipped by every line-based hint. Invalid UTF-8 is replaced with U+FFFD.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from agents.sources.ndjson import body_of
from agents.sources.syslog import SCHEMA as SYSLOG_SCHEMA
from agents.sources.syslog import parse_syslog
from agents.transforms.arrowkit import as_text, to_array
from agents.transforms.convert import TIMESTAMP, parse_timestamps
from agents.transforms.keyvalue import pivot, split_pairs, split_tokens
from agents.transforms.ndjson import line_array, read_json_lines

__all__ = ["HINTS", "PARSE_ERROR_SCHEMA", "ParseResult", "UnknownDataHint", "parse_body"]

#: Lines that could not be parsed: 1-based line number in the body (for CSV/TSV the row number
#: counting the header, which differs when quoted values span lines), the line, and why.
PARSE_ERROR_SCHEMA: Final = pa.schema([("line", pa.int64()), ("raw", pa.string()), ("reason", pa.string())])
_CEF_HEADER = ("cefVersion", "deviceVendor", "deviceProduct", "deviceVersion", "deviceEventClassId", "name", "severity")
_CEF_FIELD = r"((?:[^|\\]|\\.)*)\|"
_CEF = r"(?s)^(.*?)CEF: ?(\d+)\|" + _CEF_FIELD * 6 + r"(.*)$"
_CEF_NAMES = ["syslog_header", *_CEF_HEADER, "extension"]
_CEF_KEY = r"(?:^|\s+)([A-Za-z0-9_.\[\]-]+)="
_ESCAPED_BACKSLASH = "\ue0ff"


class UnknownDataHint(ValueError):
    """Raised when a batch's data hint names no parser."""


@dataclass(frozen=True)
class ParseResult:
    table: pa.Table
    #: ``PARSE_ERROR_SCHEMA``
    errors: pa.Table


def parse_body(body: bytes, hint: str, *, received_at: int | None = None) -> ParseResult:
    """Parse ``body`` by ``hint`` (see the module docstring). ``received_at`` (Unix ns) stands in for
    syslog timestamps that are missing and gives RFC 3164 ones their year; default: now. Pass the
    batch's creation time so reprocessing a batch gives the same rows."""
    parser = _PARSERS.get(hint.strip().lower())
    if parser is None:
        raise UnknownDataHint(f"unknown data hint {hint!r}: use one of {', '.join(sorted(_PARSERS))}")
    return parser(body, time.time_ns() if received_at is None else received_at)


def _error_table(lines: list[int], raws: list[str], reasons: list[str]) -> pa.Table:
    return pa.table({"line": pa.array(lines, pa.int64()), "raw": raws, "reason": reasons}, schema=PARSE_ERROR_SCHEMA)


def _no_errors() -> pa.Table:
    return PARSE_ERROR_SCHEMA.empty_table()


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _text_lines(body: bytes) -> tuple[pa.Array, np.ndarray]:
    """Non-blank lines as strings (invalid UTF-8 replaced) and their 1-based line numbers."""
    lines = line_array(body)
    keep = pc.greater(pc.binary_length(lines), 0)
    numbers = np.flatnonzero(keep.to_numpy(zero_copy_only=False)) + 1
    lines = lines.filter(keep)
    try:
        text = lines.cast(pa.string())
    except pa.ArrowInvalid:
        text = pa.array([_decode(b) for b in lines.to_pylist()], pa.string())
    blank = pc.equal(pc.utf8_trim_whitespace(text), "")
    if pc.any(blank).as_py():
        text, numbers = text.filter(pc.invert(blank)), numbers[~blank.to_numpy(zero_copy_only=False)]
    return text, numbers


def _ndjson(body: bytes, received_at: int) -> ParseResult:
    lines = body.split(b"\n") if b"\n" in body else [body]
    result = read_json_lines(body, lines)
    if not result.errors:
        return ParseResult(result.table, _no_errors())
    idx = [i for i, _ in result.errors]
    return ParseResult(
        result.table,
        _error_table(
            [i + 1 for i in idx], [_decode(lines[i].rstrip(b"\r")) for i in idx], [r for _, r in result.errors]
        ),
    )


def _syslog(body: bytes, received_at: int) -> ParseResult:
    lines = line_array(body)
    keep = pc.greater(pc.binary_length(lines), 0)
    if keep.false_count:
        lines = lines.filter(keep)
    is_json = pc.starts_with(lines, pattern="{")
    if not pc.any(is_json).as_py():
        return ParseResult(parse_syslog(lines, None, received_at), _no_errors())
    # Records a proxy already parsed, maybe mixed with raw lines: each kind keeps its order.
    tables = []
    raw_lines = lines.filter(pc.invert(is_json))
    if len(raw_lines):
        tables.append(parse_syslog(raw_lines, None, received_at))
    if not tables and not keep.false_count:
        json_body = body  # every line is a record the proxy parsed (the usual case): no copy
    else:
        empty, newline = pa.scalar(b"", lines.type), pa.scalar(b"\n", lines.type)
        json_body = body_of(pc.binary_join_element_wise(lines.filter(is_json), empty, newline))
    parsed = _ndjson(json_body, received_at)
    tables.append(_syslog_types(parsed.table))
    numbers = (np.flatnonzero(keep.to_numpy(zero_copy_only=False)) + 1)[is_json.to_numpy(zero_copy_only=False)]
    errors = parsed.errors.set_column(0, "line", pa.array(numbers[parsed.errors.column("line").to_numpy() - 1]))
    return ParseResult(pa.concat_tables(tables, promote_options="permissive"), errors)


def _syslog_types(table: pa.Table) -> pa.Table:
    """Records parsed by a proxy, with the syslog columns' types where their values allow it."""
    for i, name in enumerate(table.column_names):
        if name not in SYSLOG_SCHEMA.names:
            continue
        want = SYSLOG_SCHEMA.field(name).type
        column = table.column(i)
        if column.type == want:
            continue
        if want == TIMESTAMP:
            converted: Any = parse_timestamps(column, ["rfc3339"], "UTC")
            if converted.null_count != column.null_count:
                continue
        else:
            try:
                converted = column.cast(want)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                continue
        table = table.set_column(i, name, converted)
    return table


def _text(body: bytes, received_at: int) -> ParseResult:
    text, _ = _text_lines(body)
    return ParseResult(pa.table({"message": text}), _no_errors())


def _kv(body: bytes, received_at: int) -> ParseResult:
    text, numbers = _text_lines(body)
    pairs = split_pairs(text)
    found = pairs.found.to_numpy(zero_copy_only=False)
    table = pa.table(pairs.columns) if pairs.columns else pa.table({"_": pa.nulls(len(text))}).drop(["_"])
    table = table.filter(pairs.found)
    bad = np.flatnonzero(~found)
    errors = _error_table(
        numbers[bad].tolist(), text.take(pa.array(bad)).to_pylist(), ["has no key=value pairs"] * len(bad)
    )
    return ParseResult(table, errors)


def _cef(body: bytes, received_at: int) -> ParseResult:
    text, numbers = _text_lines(body)
    parts = pc.extract_regex(text, pattern=_named(_CEF, _CEF_NAMES))
    ok = parts.is_valid()
    bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
    errors = _error_table(
        numbers[bad].tolist(),
        text.take(pa.array(bad)).to_pylist(),
        ["is not a CEF message (CEF:Version|Vendor|Product|Version|SignatureID|Name|Severity|Extension)"] * len(bad),
    )
    parts = parts.filter(ok)
    columns: dict[str, Any] = {}
    prefix = pc.utf8_trim_whitespace(parts.field("syslog_header"))
    columns["syslog_header"] = pc.if_else(pc.equal(prefix, ""), None, prefix)
    columns["cefVersion"] = parts.field("cefVersion").cast(pa.int32())
    for name in _CEF_HEADER[1:]:
        columns[name] = pc.replace_substring_regex(parts.field(name), pattern=r"\\(.)", replacement=r"\1")
    ext = pc.replace_substring_regex(parts.field("extension"), pattern=r"[\x1e\x1f]", replacement="\ufffd")
    marked = pc.replace_substring_regex(ext, pattern=_CEF_KEY, replacement="\x1e\\1\x1f")
    rows, keys, values = split_tokens(marked)
    values = pc.replace_substring(pc.utf8_rtrim_whitespace(values), "\\\\", _ESCAPED_BACKSLASH)
    values = pc.replace_substring(pc.replace_substring(values, "\\n", "\n"), "\\r", "\r")
    values = pc.replace_substring(pc.replace_substring(values, "\\=", "="), _ESCAPED_BACKSLASH, "\\")
    for key, column in pivot(rows, keys, values, len(parts)).columns.items():
        columns[f"ext_{key}" if key in columns else key] = column
    return ParseResult(pa.table({k: to_array(v) for k, v in columns.items()}), errors)


def _named(pattern: str, names: list[str]) -> str:
    """``pattern``'s capture groups named ``names`` in order (extract_regex needs named groups)."""
    out, it = [], iter(names)
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if pattern[i] == "(" and not pattern.startswith("(?", i):
            out.append(f"(?P<{next(it)}>")
        else:
            out.append(pattern[i])
        i += 1
    return "".join(out)


def _csv(delimiter: str) -> Callable[[bytes, int], ParseResult]:
    def parse(body: bytes, received_at: int) -> ParseResult:
        if not body.strip():
            return ParseResult(pa.table({}), _no_errors())
        bad: list[tuple[int, str, str]] = []

        def invalid(row: Any) -> str:
            reason = f"has {row.actual_columns} columns where the header has {row.expected_columns}"
            bad.append((row.number or 0, row.text, reason))
            return "skip"

        read = pcsv.ReadOptions(use_threads=False, block_size=min(max(len(body) + 1, 1 << 20), (1 << 31) - 1))
        parse_opts = pcsv.ParseOptions(
            delimiter=delimiter,
            quote_char='"' if delimiter == "," else False,
            newlines_in_values=delimiter == ",",
            invalid_row_handler=invalid,
        )
        names = _header(body, delimiter)
        read.column_names, read.skip_rows = names, 1
        try:
            table = pcsv.read_csv(io.BytesIO(body), read, parse_opts)
        except pa.ArrowInvalid as exc:
            bad.clear()
            if "UTF8" in str(exc):
                body = _decode(body).encode()
            convert = pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
            table = pcsv.read_csv(io.BytesIO(body), read, parse_opts, convert)
        errors = _error_table([b[0] for b in bad], [b[1] for b in bad], [b[2] for b in bad])
        for i, field in enumerate(table.schema):  # columns pyarrow kept as bytes: invalid UTF-8
            if pa.types.is_binary(field.type):
                table = table.set_column(i, field.name, as_text(table.column(i)))
        return ParseResult(table, errors)

    return parse


def _header(body: bytes, delimiter: str) -> list[str]:
    """The header row's names, made unique and non-empty."""
    first = _decode(body.split(b"\n", 1)[0]).rstrip("\r")
    if delimiter == ",":
        raw = next(csv.reader([first]), [])
    else:
        raw = next(csv.reader([first], delimiter=delimiter, quoting=csv.QUOTE_NONE), [])
    names: list[str] = []
    for i, given in enumerate(raw):
        base = given.strip() or f"column_{i + 1}"
        name, n = base, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


_PARSERS: dict[str, Callable[[bytes, int], ParseResult]] = {
    "ndjson": _ndjson,
    "sflow": _ndjson,
    "ipfix": _ndjson,
    "netflow": _ndjson,
    "syslog": _syslog,
    "text": _text,
    "csv": _csv(","),
    "tsv": _csv("\t"),
    "cef": _cef,
    "kv": _kv,
}
HINTS: Final = tuple(sorted(_PARSERS))
