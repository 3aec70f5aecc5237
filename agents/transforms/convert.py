"""Value conversions of the transformation steps, each over a whole column: type conversion,
timestamp parsing, salted SHA-256 and masking. Each conversion returns nulls where a value does
not convert; the engine turns "null out of a non-null value" into a failed record.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agents.transforms.arrowkit import NUMBER_PATTERN, ArrayLike, as_text, duck, to_array
from floe.v1 import transforms_pb2 as tp

__all__ = ["TIMESTAMP", "convert", "is_text", "mask_matches", "parse_timestamps", "salted_sha256"]

TIMESTAMP: Final = pa.timestamp("us", tz="UTC")
_ARROW_ERRORS: Final = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_TRUE = pa.array(["true", "t", "yes", "y", "on", "1"])
_FALSE = pa.array(["false", "f", "no", "n", "off", "0"])
_UNIX_SCALE = {"unix_s": 1_000_000, "unix_ms": 1_000, "unix_us": 1, "unix_ns": -1_000}
# Four groups at most, so RE2 uses its one-pass matcher: the offset is cut into sign, hours and
# minutes afterwards.
_RFC3339 = (
    r"^(?P<base>\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(?:[.,](?P<frac>\d{1,9}))?"
    r"(?P<zone>[Zz]|(?P<offset>[+-]\d\d:?\d\d))?$"
)
_FRACTION = r"^(?P<head>.*?:\d\d)[.,](?P<frac>\d{1,9})(?P<tail>.*)$"
#: Dictionaries larger than this are hashed by DuckDB, smaller ones by hashlib (measured crossover).
_HASHLIB_MAX_UNIQUES: Final = 20_000


def is_text(dtype: pa.DataType) -> bool:
    if pa.types.is_dictionary(dtype):
        return is_text(dtype.value_type)
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype))


# -- convert_type -----------------------------------------------------------------------------


def convert(values: ArrayLike, target: int) -> ArrayLike:
    """``values`` converted to a ``ConvertType.Type``; null where a value does not convert."""
    values = to_array(values)
    dtype = values.type
    if pa.types.is_dictionary(dtype):
        values, dtype = values.cast(dtype.value_type), dtype.value_type
    if target == tp.ConvertType.TYPE_STRING:
        return as_text(values)
    if target == tp.ConvertType.TYPE_INT:
        return _to_int(values)
    if target == tp.ConvertType.TYPE_FLOAT:
        if pa.types.is_boolean(dtype) or pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
            return values.cast(pa.float64())
        if pa.types.is_decimal(dtype):
            return values.cast(pa.float64())
        if is_text(dtype) or pa.types.is_binary(dtype):
            text = pc.utf8_trim_whitespace(as_text(values))
            return pc.if_else(pc.match_substring_regex(text, pattern=NUMBER_PATTERN), text, None).cast(pa.float64())
        return pa.nulls(len(values), pa.float64())
    if target == tp.ConvertType.TYPE_BOOL:
        if pa.types.is_boolean(dtype):
            return values
        if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
            numbers = values.cast(pa.float64())
            return pc.if_else(pc.is_nan(numbers), None, pc.not_equal(numbers, 0.0))
        if is_text(dtype) or pa.types.is_binary(dtype):
            text = pc.utf8_lower(pc.utf8_trim_whitespace(as_text(values)))
            truthy, falsy = pc.is_in(text, value_set=_TRUE), pc.is_in(text, value_set=_FALSE)
            return pc.if_else(truthy, True, pc.if_else(falsy, False, pa.scalar(None, pa.bool_())))
        return pa.nulls(len(values), pa.bool_())
    raise ValueError(f"unknown conversion type {target}")


def _to_int(values: pa.Array) -> pa.Array:
    dtype = values.type
    if pa.types.is_boolean(dtype) or pa.types.is_signed_integer(dtype):
        return values.cast(pa.int64())
    if pa.types.is_unsigned_integer(dtype):
        fits = pc.less_equal(values.cast(pa.uint64()), _INT64_MAX)
        return pc.if_else(fits, values.cast(pa.int64(), safe=False), None)
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        floats = values.cast(pa.float64())
        whole = pc.and_(pc.equal(pc.floor(floats), floats), pc.less(pc.abs(floats), 2.0**63))
        return pc.if_else(whole, floats, None).cast(pa.int64(), safe=False)
    if not (is_text(dtype) or pa.types.is_binary(dtype)):
        return pa.nulls(len(values), pa.int64())
    text = pc.utf8_trim_whitespace(as_text(values))
    text = pc.replace_substring_regex(text, pattern=r"^([+-]?)0+(\d)", replacement=r"\1\2")
    ok = pc.match_substring_regex(text, pattern=r"^[+-]?\d{1,19}$")
    digits = pc.if_else(ok, text, None)
    try:
        return digits.cast(pa.int64())
    except pa.ArrowInvalid:  # a 19-digit value beyond int64: range-check as decimals
        wide = digits.cast(pa.decimal128(20, 0))
        fits = pc.and_(pc.greater_equal(wide, _decimal(_INT64_MIN)), pc.less_equal(wide, _decimal(_INT64_MAX)))
        return pc.if_else(fits, digits, None).cast(pa.int64())


def _decimal(value: int) -> pa.Scalar:
    return pa.scalar(value, pa.decimal128(20, 0))


# -- parse_timestamp --------------------------------------------------------------------------


def parse_timestamps(values: ArrayLike, formats: Sequence[str], timezone: str) -> pa.Array:
    """``values`` as ``timestamp[us, UTC]``, trying ``formats`` in order (default rfc3339); values
    without an offset are wall time in ``timezone``. Null where no format matches."""
    values = to_array(values)
    formats = list(formats) or ["rfc3339"]
    tz = timezone or "UTC"
    dtype = values.type
    if pa.types.is_timestamp(dtype):
        return _zoned(values, tz) if dtype.tz is None else values.cast(pa.timestamp(dtype.unit, "UTC")).cast(TIMESTAMP)
    if pa.types.is_date(dtype):
        return _zoned(values.cast(pa.timestamp("us")), tz)
    numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype)
    text = None if numeric else pc.utf8_trim_whitespace(as_text(values))
    result: Any = pa.nulls(len(values), TIMESTAMP)
    for fmt in formats:
        if fmt in _UNIX_SCALE:
            parsed = _unix(values if numeric else text, _UNIX_SCALE[fmt])
        elif numeric:
            continue
        elif fmt == "rfc3339":
            parsed = _rfc3339(text, tz)
        else:
            parsed = _strptime(text, fmt, tz)
        result = pc.coalesce(result, parsed)
        if result.null_count == values.null_count:
            break
    return to_array(result)


def _zoned(naive: pa.Array, tz: str) -> pa.Array:
    local = pc.assume_timezone(naive.cast(pa.timestamp("us")), timezone=tz, ambiguous="earliest", nonexistent="latest")
    return local.cast(TIMESTAMP)


def _unix(values: Any, scale: int) -> pa.Array:
    """Epoch values (numbers, or text holding numbers) in a unit given by ``scale`` (µs per unit;
    negative: units per µs) as timestamps."""
    if is_text(values.type):
        ok = pc.match_substring_regex(values, pattern=NUMBER_PATTERN)
        integral = pc.and_(ok, pc.match_substring_regex(values, pattern=r"^[+-]?\d{1,18}$"))
        ints = _scaled(pc.if_else(integral, values, None).cast(pa.int64()), scale)
        floats = _scaled(pc.if_else(pc.and_(ok, pc.invert(integral)), values, None).cast(pa.float64()), scale)
        return to_array(pc.coalesce(ints, floats))
    if pa.types.is_integer(values.type):
        return _scaled(values.cast(pa.int64()), scale)
    return _scaled(values.cast(pa.float64()), scale)


def _scaled(numbers: pa.Array, scale: int) -> pa.Array:
    limit = 253402300799 * 1_000_000  # µs at 9999-12-31T23:59:59Z: beyond it a number is no time
    if pa.types.is_integer(numbers.type):
        if scale < 0:
            us = pc.divide(numbers, -scale)
        else:
            us = pc.multiply(pc.if_else(pc.less_equal(pc.abs(numbers), limit // scale), numbers, None), scale)
    else:
        raw = pc.divide(numbers, -float(scale)) if scale < 0 else pc.multiply(numbers, float(scale))
        finite = pc.and_(pc.is_finite(raw), pc.less_equal(pc.abs(raw), float(limit)))
        us = pc.round(pc.if_else(finite, raw, None)).cast(pa.int64())
    return pc.if_else(pc.less_equal(pc.abs(us), limit), us, None).cast(TIMESTAMP)


def _rfc3339(text: Any, tz: str) -> pa.Array:
    parts = pc.extract_regex(text, pattern=_RFC3339)
    base = pc.replace_substring(parts.field("base"), "t", "T")
    base = pc.strptime(pc.replace_substring(base, " ", "T"), format="%Y-%m-%dT%H:%M:%S", unit="us", error_is_null=True)
    base = pc.if_else(parts.is_valid(), base, None)
    frac = pc.cast(pc.utf8_rpad(pc.utf8_slice_codeunits(parts.field("frac"), 0, 6), 6, "0"), pa.int64())
    naive = pc.add(base.cast(pa.int64()), pc.fill_null(frac, 0))
    zone = parts.field("zone")
    has_offset = pc.fill_null(pc.not_equal(zone, ""), False)
    zone_offset = parts.field("offset")  # "+hh:mm", "+hhmm", or "" (Z or none)
    sign = pc.if_else(pc.starts_with(zone_offset, "-"), -1, 1)
    hh = pc.cast(pc.utf8_lpad(pc.utf8_slice_codeunits(zone_offset, 1, 3), 2, "0"), pa.int64())
    mm = pc.cast(pc.utf8_lpad(pc.utf8_slice_codeunits(zone_offset, -2), 2, "0"), pa.int64())
    offset = pc.fill_null(pc.multiply(pc.multiply(pc.add(pc.multiply(hh, 3600), pc.multiply(mm, 60)), sign), 10**6), 0)
    utc = pc.subtract(naive, offset).cast(TIMESTAMP)
    local = _zoned(naive.cast(pa.timestamp("us")), tz)
    return to_array(pc.if_else(has_offset, utc, local))


def _strptime(text: Any, fmt: str, tz: str) -> pa.Array:
    frac = None
    for sep in (".", ","):
        if f"%S{sep}%f" in fmt:  # Arrow's strptime has no %f: cut the fraction out and add it back
            parts = pc.extract_regex(text, pattern=_FRACTION)
            text = pc.binary_join_element_wise(parts.field("head"), parts.field("tail"), "")
            frac = pc.cast(pc.utf8_rpad(pc.utf8_slice_codeunits(parts.field("frac"), 0, 6), 6, "0"), pa.int64())
            fmt = fmt.replace(f"%S{sep}%f", "%S")
            break
    parsed = pc.strptime(text, format=fmt, unit="us", error_is_null=True)
    if frac is not None:
        parsed = pc.add(parsed.cast(pa.int64()), frac).cast(parsed.type)
    if parsed.type.tz is None:
        return _zoned(parsed, tz)
    return parsed.cast(TIMESTAMP)


# -- hash_field -------------------------------------------------------------------------------


def salted_sha256(values: ArrayLike, salt: str) -> ArrayLike:
    """Hex SHA-256 of ``salt`` + each value's text (UTF-8); nulls stay null. Hashes each distinct
    value once: with hashlib for few distinct values, with DuckDB's ``sha256`` for many."""
    encoded = to_array(pc.dictionary_encode(as_text(values)))
    uniques = encoded.dictionary
    if len(uniques) <= _HASHLIB_MAX_UNIQUES:
        prefix = salt.encode()
        digests = pa.array([hashlib.sha256(prefix + v.encode()).hexdigest() for v in uniques.to_pylist()], pa.string())
    else:
        con = duck()
        con.register("_floe_hash", pa.table({"v": uniques}))
        try:
            out = con.sql("SELECT sha256($salt || v) AS h FROM _floe_hash", params={"salt": salt}).to_arrow_table()
        finally:
            con.unregister("_floe_hash")
        digests = to_array(out.column(0)).cast(pa.string())
    return digests.take(encoded.indices)


# -- mask -------------------------------------------------------------------------------------

#: One-byte characters that wrap matches while masking; the first one absent from the text is used.
_MARKERS: Final = ("\x1e", "\x1f", "\x1d", "\x1c", "\x1a", "\x19", "\x18", "\x17")


def mask_matches(values: ArrayLike, pattern: str, mask_char: str, keep_last: int) -> ArrayLike:
    """Every match of ``pattern`` in ``values``' text replaced by ``mask_char`` repeated, keeping
    the match's last ``keep_last`` characters. Non-matching text and nulls are unchanged.

    One RE2 pass (``replace_substring_regex``) wraps each match in a one-byte marker absent from the
    text; the markers' positions give the matches' places in the text, whose copy is then masked
    with numpy, touching only the matched bytes (plus one compacting copy when multi-byte
    characters are masked, as each becomes one ``mask_char``)."""
    text = to_array(as_text(values))
    if not len(text):
        return text
    offsets, data = _string_buffers(text)
    region = data[offsets[0] : offsets[-1]]
    marker = next((m for m in _MARKERS if not (region == ord(m)).any()), None)
    if marker is None:  # every marker occurs in the data: rare enough for Python
        regex = re.compile(pattern)
        return pa.array([None if v is None else regex.sub(lambda m: _mask(m.group(0), mask_char, keep_last), v)
                         for v in text.to_pylist()], pa.string())  # fmt: skip
    marked = pc.replace_substring_regex(text, pattern=pattern, replacement=f"{marker}\\0{marker}")
    marked_offsets, marked_data = _string_buffers(marked)
    found = np.flatnonzero(marked_data[marked_offsets[0] : marked_offsets[-1]] == ord(marker))
    if not found.size:
        return text
    # Where each match is in the unmarked text: 2i markers precede match i's opening marker.
    before = np.arange(0, found.size, 2)
    opens, closes = found[0::2] - before, found[1::2] - before - 1  # match i: region[opens[i]:closes[i]]
    fill = mask_char.encode()
    # A multi-byte mask character is written as the (one-byte) marker first, then swapped in by Arrow.
    fill_byte = fill[0] if len(fill) == 1 else ord(marker)
    out = region.copy()
    base = int(offsets[0])
    new_offsets = offsets - base
    if int(region.max(initial=0)) < 0x80:  # ASCII: a character is a byte; mask each match but its last bytes
        out[_ranges(opens, np.maximum(closes - opens - keep_last, 0))] = fill_byte
    else:  # a character's rank from the match's end, counted over its lead (non-continuation) bytes
        lengths = closes - opens
        pos = _ranges(opens, lengths)
        first = np.cumsum(lengths) - lengths  # where each match starts in `pos`
        is_lead = (region[pos] & 0xC0) != 0x80
        seen = np.concatenate(([0], np.cumsum(is_lead)))
        chars = np.repeat(seen[first + lengths], lengths)  # leads up to each match's end
        masked = chars - seen[1:] + 1 > keep_last  # the character's rank from the match's end
        out[pos[masked & is_lead]] = fill_byte
        dropped = pos[masked & ~is_lead]  # continuation bytes of masked characters: one mask each
        if dropped.size:
            keep = np.ones(len(region), np.bool_)
            keep[dropped] = False
            out = out[keep]
            new_offsets = new_offsets - np.searchsorted(dropped, new_offsets)
    validity = text.is_valid().buffers()[1] if text.null_count else None
    result = pa.StringArray.from_buffers(
        len(text), pa.py_buffer(new_offsets.astype(np.int32)), pa.py_buffer(out), validity, text.null_count
    )
    return pc.replace_substring(result, marker, mask_char) if len(fill) > 1 else result


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions ``starts[i] .. starts[i] + lengths[i] - 1`` for every i, in order."""
    positions: np.ndarray = np.arange(int(lengths.sum()), dtype=np.int64)
    positions += np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return positions


def _string_buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's offsets (for its slice) and its whole data buffer, as numpy views."""
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], np.int32)[values.offset : values.offset + len(values) + 1]
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


def _mask(match: str, mask_char: str, keep_last: int) -> str:
    keep = match[len(match) - keep_last :] if keep_last else ""
    return mask_char * (len(match) - len(keep)) + keep
