"""Syslog source: RFC 5424 and RFC 3164 parsing of whole batches with Arrow compute, and the TCP
framer (RFC 6587 newline and octet-counting framing).

Parsing runs RE2 over the batch in C++ (``pyarrow.compute.extract_regex``); Python touches single
lines only to repair invalid UTF-8. No line is ever dropped: a line that fits neither format is
kept with ``format = "raw"`` and the whole line as its message. The framer drops what cannot be a
message (oversize or malformed frames) and counts each drop by reason in ``SyslogFramer.dropped``.
"""

from __future__ import annotations

import re
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "SCHEMA",
    "SyslogFramer",
    "as_text",
    "format_counts",
    "parse_syslog",
]

TIMESTAMP_TYPE: Final = pa.timestamp("us", tz="UTC")
SCHEMA: Final = pa.schema(
    [
        ("timestamp", TIMESTAMP_TYPE),
        ("facility", pa.int8()),
        ("severity", pa.int8()),
        ("hostname", pa.string()),
        ("app_name", pa.string()),
        ("proc_id", pa.string()),
        ("msg_id", pa.string()),
        ("structured_data", pa.string()),
        ("message", pa.string()),
        ("source_ip", pa.string()),
        ("raw", pa.string()),
        ("format", pa.string()),
    ]
)
FORMATS: Final = ("rfc5424", "rfc3164", "raw")
DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024
_MAX_PRI = 191
_DAY_US = 86_400_000_000

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_SET = pa.array(_MONTHS)

# A line is RFC 5424 when it starts "<PRI>1 " (VERSION 1); one that starts so but does not match
# the full grammar is kept raw rather than guessed at as RFC 3164.
_IS_5424 = r"^<\d{1,3}>1 "
_SD_ELEMENT = r'\[[^\] "=]+(?: [^\] "=]+="(?:[^"\\]|\\.)*")*\]'
# At most four groups: RE2 extracts up to four groups of an unambiguous pattern with its fast
# one-pass matcher, more with a backtracker several times slower. PRI, TIMESTAMP, HOSTNAME and
# APP-NAME are the first space-separated parts of ``head``.
_RFC5424 = (
    r"(?s)^(?P<head><\d{1,3}>1 [^ ]+ [^ ]+ [^ ]+ (?P<proc>[^ ]+) (?P<msgid>[^ ]+) "
    rf"(?P<sd>-|(?:{_SD_ELEMENT})+)(?:$| \x{{FEFF}}?))"
)
# Both patterns match the header only (group ``head``, the whole match): the message is the bytes
# after it, cut out with numpy. Capturing a long message as a group makes RE2 fall back to its slow
# NFA over the whole line, about 3x slower in total. Counted repeats ({1,48}) are avoided for the
# same reason: they multiply RE2's states; field lengths are not enforced.
# RFC 3164 as seen in practice: every header part is optional. A HOSTNAME is only looked for after
# a TIMESTAMP and never ends in ':' (that is a TAG); ISO timestamps (rsyslog's forward format) too.
_RFC3164 = (
    r"(?s)^(?P<head><(?P<pri>\d{1,3})>"
    rf"(?:(?:(?P<mon>{'|'.join(_MONTHS)}) (?P<day>[ \d]\d) (?P<hms>\d\d:\d\d:\d\d)"
    r"|(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)))"
    r"(?:$| (?:(?P<host>[^ \[\]]*[^ :\[\]]) )?))?"
    r"(?:(?P<tag>[^ :\[\]]+)(?:\[(?P<pid>[^\]]*)\])?: ?)?)"
)
# Three groups (one-pass, see above): the offset is cut into sign, hours and minutes afterwards.
_ISO_TS = r"^(?P<base>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<frac>\d{1,9}))?(?:[Zz]|(?P<offset>[+-]\d\d:?\d\d))$"
# Applied to binary (RE2 in Latin-1 mode, so each \xNN is one byte): the rows that are valid UTF-8.
_VALID_UTF8 = (
    r"(?s)^(?:[\x00-\x7F]|[\xC2-\xDF][\x80-\xBF]|\xE0[\xA0-\xBF][\x80-\xBF]|[\xE1-\xEC\xEE\xEF][\x80-\xBF]{2}"
    r"|\xED[\x80-\x9F][\x80-\xBF]|\xF0[\x90-\xBF][\x80-\xBF]{2}|[\xF1-\xF3][\x80-\xBF]{3}|\xF4[\x80-\x8F][\x80-\xBF]{2})*$"
)
_TRAILING_NEWLINE = r"(?:\r\n|\n|\r)\z"


def parse_syslog(
    lines: pa.Array | pa.ChunkedArray,
    source_ips: pa.Array | pa.ChunkedArray | None,
    received_at: pa.Array | pa.ChunkedArray | int,
) -> pa.Table:
    """Parse a batch of syslog lines (string or binary) into a table with ``SCHEMA``, one row per line.

    ``source_ips`` is one address per line (any type castable to string) or None. ``received_at``
    is when the lines arrived: one Unix time in nanoseconds (``time.time_ns()``) for the whole
    batch, or an array per line (timestamps of any unit/zone, or integers in Unix nanoseconds). It
    stands in for a missing or unparseable timestamp and gives RFC 3164 timestamps their year (the
    receive year, or the one before when that would put the message more than a day in the future).
    RFC 3164 timestamps carry no zone and are read as UTC. Invalid UTF-8 is replaced with U+FFFD.
    """
    n = len(lines)
    text = as_text(lines)
    if _ends_with_newline(text):
        text = pc.replace_substring_regex(text, pattern=_TRAILING_NEWLINE, replacement="", max_replacements=1)
    received = _received(received_at, n)

    is5424 = pc.fill_null(pc.match_substring_regex(text, pattern=_IS_5424), False)
    # Other lines fail the RFC 5424 pattern at its start, while the RFC 3164 one (all optional
    # after <PRI>) would match RFC 5424 lines too: hide those from it.
    s5 = pc.extract_regex(text, pattern=_RFC5424)
    s3 = pc.extract_regex(pc.if_else(is5424, "", text), pattern=_RFC3164)
    ok5 = pc.and_(is5424, s5.is_valid())
    ok3 = pc.and_(pc.invert(is5424), s3.is_valid())
    # "<PRI>1", TIMESTAMP, HOSTNAME, APP-NAME and the rest of each RFC 5424 header (null elsewhere).
    start5 = pc.split_pattern(pc.if_else(ok5, _field(s5, "head"), None), " ", max_splits=4)
    pri5 = pc.utf8_slice_codeunits(pc.list_element(start5, 0), 1, -2)
    ts5, host5, app5 = (pc.list_element(start5, i) for i in (1, 2, 3))

    # Unmatched rows hold "", which does not cast: pad it to "0" (masked out just below).
    pri = pc.cast(pc.utf8_lpad(pc.if_else(ok5, pri5, _field(s3, "pri")), 1, "0"), pa.int16())
    pri = pc.if_else(pc.or_(ok5, ok3), pri, None)
    parsed = pc.fill_null(pc.less_equal(pri, _MAX_PRI), False)
    ok5 = pc.and_(ok5, parsed)
    ok3 = pc.and_(ok3, parsed)
    pri = pc.if_else(parsed, pri, None)

    ts_iso = _parse_iso(pc.if_else(ok5, ts5, _field(s3, "iso")))
    ts_bsd = _parse_bsd(s3, received)
    ts = pc.if_else(parsed, pc.coalesce(ts_iso, ts_bsd), None)
    timestamp = pc.coalesce(ts, received) if n else pa.array([], TIMESTAMP_TYPE)

    columns: dict[str, Any] = {
        "timestamp": timestamp,
        "facility": pc.cast(pc.shift_right(pri, 3), pa.int8()),
        "severity": pc.cast(pc.bit_wise_and(pri, 7), pa.int8()),
        "hostname": pc.coalesce(_present(ok5, host5, "-"), _present(ok3, _field(s3, "host"), "")),
        "app_name": pc.coalesce(_present(ok5, app5, "-"), _present(ok3, _field(s3, "tag"), "")),
        "proc_id": pc.coalesce(_present(ok5, _field(s5, "proc"), "-"), _present(ok3, _field(s3, "pid"), "")),
        "msg_id": _present(ok5, _field(s5, "msgid"), "-"),
        "structured_data": _present(ok5, _field(s5, "sd"), "-"),
        "message": _after_header(text, ok5, s5, ok3, s3),
        "source_ip": _source_ips(source_ips, n),
        "raw": text,
        "format": pc.if_else(ok5, "rfc5424", pc.if_else(ok3, "rfc3164", "raw")),
    }
    return pa.Table.from_pydict({k: _array(v) for k, v in columns.items()}, schema=SCHEMA)


def format_counts(table: pa.Table) -> dict[str, int]:
    """Rows per ``format`` of a parsed table (every format present, zero when absent), for health."""
    counts = dict.fromkeys(FORMATS, 0)
    for item in pc.value_counts(table.column("format")).to_pylist():
        counts[item["values"]] = item["counts"]
    return counts


def _array(value: Any) -> pa.Array:
    return value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value


def as_text(lines: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``lines`` as a string array with invalid UTF-8 replaced and nulls as empty strings."""
    arr = _array(lines)
    if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type):
        arr = arr.cast(pa.binary() if pa.types.is_large_binary(arr.type) else pa.string())
    if pa.types.is_string(arr.type):
        return pc.fill_null(arr, "")
    if not pa.types.is_binary(arr.type):
        raise TypeError(f"syslog lines must be a string or binary array, not {arr.type}")
    arr = pc.fill_null(arr, b"")
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        pass
    # The rare batch with invalid UTF-8: find the bad rows in C++, repair only those in Python.
    bad = pc.invert(pc.match_substring_regex(arr, pattern=_VALID_UTF8))
    fixed = [b.decode("utf-8", "replace").encode() for b in pc.filter(arr, bad).to_pylist()]
    return pc.replace_with_mask(arr, bad, pa.array(fixed, pa.binary())).cast(pa.string())


def _received(received_at: pa.Array | pa.ChunkedArray | int, n: int) -> Any:
    """``received_at`` as a timestamp[us, UTC] scalar or array of length ``n``."""
    if isinstance(received_at, int):
        return pa.scalar(received_at // 1000, TIMESTAMP_TYPE)
    arr = _array(received_at)
    if len(arr) != n:
        raise ValueError(f"received_at has {len(arr)} values for {n} lines")
    if pa.types.is_timestamp(arr.type):
        return arr.cast(pa.timestamp(arr.type.unit, tz="UTC")).cast(TIMESTAMP_TYPE, safe=False)
    if pa.types.is_integer(arr.type):
        return pc.divide(arr.cast(pa.int64()), 1000).cast(TIMESTAMP_TYPE)
    raise TypeError(f"received_at must be Unix nanoseconds or timestamps, not {arr.type}")


def _source_ips(source_ips: pa.Array | pa.ChunkedArray | None, n: int) -> pa.Array:
    if source_ips is None:
        return pa.nulls(n, pa.string())
    arr = _array(source_ips)
    if len(arr) != n:
        raise ValueError(f"source_ips has {len(arr)} values for {n} lines")
    return arr if pa.types.is_string(arr.type) else arr.cast(pa.string())


def _field(struct: pa.StructArray, name: str) -> pa.Array:
    return struct.field(name)


def _ends_with_newline(text: pa.Array) -> bool:
    """Whether any line ends with CR or LF (looking at each line's last byte only)."""
    if not len(text):
        return False
    offsets, data = _buffers(text)
    ends = offsets[1:][offsets[1:] > offsets[:-1]] - 1
    return bool(ends.size) and bool(np.isin(data[ends], (0x0A, 0x0D)).any())


def _after_header(text: pa.Array, ok5: Any, s5: pa.StructArray, ok3: Any, s3: pa.StructArray) -> pa.Array:
    """The message: each line's bytes after its RFC 5424 or RFC 3164 header (the ``head`` group),
    the whole line where neither parsed. Cut out of the text buffer with numpy in one copy."""
    n = len(text)
    head5, head3 = pc.binary_length(_field(s5, "head")), pc.binary_length(_field(s3, "head"))
    skip = pc.fill_null(pc.if_else(ok5, head5, pc.if_else(ok3, head3, 0)), 0)
    skip = skip.to_numpy(zero_copy_only=False).astype(np.int64)
    if not n or not skip.any():
        return text
    offsets, data = _buffers(text)
    base, lengths = int(offsets[0]), np.diff(offsets).astype(np.int64)
    spans = np.empty(2 * n, np.int64)
    spans[0::2], spans[1::2] = skip, lengths - skip
    keep = np.repeat(np.tile(np.array([False, True]), n), spans)
    out_offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lengths - skip, out=out_offsets[1:])
    validity = text.is_valid().buffers()[1] if text.null_count else None
    body = data[base : int(offsets[-1])][keep]
    return pa.StringArray.from_buffers(n, pa.py_buffer(out_offsets), pa.py_buffer(body), validity, text.null_count)


def _buffers(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's offsets (for its slice) and its data buffer, as numpy views."""
    buffers = text.buffers()
    offsets = np.frombuffer(buffers[1], np.int32)[text.offset : text.offset + len(text) + 1]
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


def _present(ok: pa.Array, values: pa.Array, nil: str) -> pa.Array:
    """``values`` where the row parsed and the part is not ``nil`` ('-' in 5424, absent in 3164); else null."""
    return pc.if_else(pc.and_(ok, pc.not_equal(values, nil)), values, None)


def _parse_iso(strings: pa.Array) -> pa.Array:
    """RFC 3339 timestamps (up to 9 fraction digits, kept to the microsecond) to UTC; others null."""
    parts = pc.extract_regex(strings, pattern=_ISO_TS)
    base = pc.strptime(parts.field("base"), format="%Y-%m-%dT%H:%M:%S", unit="us", error_is_null=True)
    base = pc.if_else(parts.is_valid(), base, None)
    frac = pc.utf8_rpad(pc.utf8_slice_codeunits(parts.field("frac"), 0, 6), 6, "0")
    offset = parts.field("offset")  # "+hh:mm", "+hhmm", or "" for Z
    sign = pc.if_else(pc.starts_with(offset, "-"), -1, 1)
    hh = pc.cast(pc.utf8_lpad(pc.utf8_slice_codeunits(offset, 1, 3), 2, "0"), pa.int64())
    mm = pc.cast(pc.utf8_lpad(pc.utf8_slice_codeunits(offset, -2), 2, "0"), pa.int64())
    offset_us = pc.multiply(pc.multiply(pc.add(pc.multiply(hh, 3600), pc.multiply(mm, 60)), sign), 1_000_000)
    us = pc.subtract(pc.add(base.cast(pa.int64()), pc.cast(frac, pa.int64())), offset_us)
    return us.cast(TIMESTAMP_TYPE)


def _parse_bsd(parts: pa.StructArray, received: Any) -> pa.Array:
    """RFC 3164 'Mmm dd hh:mm:ss' in the receive year, or the year before when that is over a day ahead.

    Built into ISO strings rather than parsed with strptime's %b, which is several times slower."""
    month = pc.utf8_lpad(pc.cast(pc.add(pc.index_in(parts.field("mon"), value_set=_MONTH_SET), 1), pa.string()), 2, "0")
    month_day = pc.binary_join_element_wise(month, pc.replace_substring(parts.field("day"), " ", "0"), "-")
    year = pc.year(received)
    recv_us = received.cast(pa.int64())

    def in_year(y: Any) -> pa.Array:
        text = pc.binary_join_element_wise(pc.cast(y, pa.string()), month_day, parts.field("hms"), "-")
        return pc.strptime(text, format="%Y-%m-%d-%H:%M:%S", unit="us", error_is_null=True).cast(pa.int64())

    us = in_year(year)
    ahead = pc.fill_null(pc.greater(us, pc.add(recv_us, _DAY_US)), False)
    if pc.any(ahead).as_py():  # rare (around New Year), so only then parse again
        us = pc.if_else(ahead, in_year(pc.subtract(year, 1)), us)
    return us.cast(TIMESTAMP_TYPE)


_MAX_LEN_DIGITS = 10
_OCTET_HEADER = re.compile(rb"[1-9][0-9]{0,9} ")


class SyslogFramer:
    """Splits one TCP connection's byte stream into syslog messages (RFC 6587).

    The framing is chosen from the start of the stream: a length and a space (``"123 <34>..."``)
    means octet counting, anything else newline framing. Feed it chunks as they arrive; partial
    frames are kept until the rest comes. What cannot be a message is dropped and counted in
    ``dropped``: ``oversize`` (longer than ``max_message_size``; octet-counted frames are skipped by
    their declared length, newline frames up to the next newline), ``bad_frame`` (an octet count
    that is not a number followed by a space; skipped up to the next newline) and ``truncated`` (an
    octet-counted frame cut short when the connection closed). Empty lines are not messages.
    """

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 1:
            raise ValueError(f"max_message_size must be at least 1 byte, got {max_message_size}")
        self.max_message_size = max_message_size
        self.framing: str | None = None
        """``"octet-counting"`` or ``"newline"`` once the first bytes have been seen."""
        self.dropped: dict[str, int] = {"oversize": 0, "bad_frame": 0, "truncated": 0}
        self._buf = b""
        self._skip = 0  # bytes of an oversize octet-counted frame still to discard
        self._to_newline = False  # discarding up to the next newline

    def feed(self, data: bytes) -> list[bytes]:
        """The messages completed by ``data`` (without their framing), in order."""
        buf = self._buf + data if self._buf else bytes(data)
        self._buf = b""
        if self.framing is None:
            self.framing = _detect(buf)
            if self.framing is None:
                self._buf = buf
                return []
        out: list[bytes] = []
        if self.framing == "newline":
            self._newline(buf, out)
        else:
            self._octet(buf, out)
        return out

    def flush(self) -> list[bytes]:
        """Call when the connection closes: a last newline-framed message needs no newline, while an
        unfinished octet-counted frame is counted as ``truncated``."""
        buf, self._buf = self._buf, b""
        discarding = self._to_newline or self._skip
        self._to_newline, self._skip = False, 0
        if not buf or discarding:
            return []
        if self.framing == "octet-counting":
            self.dropped["truncated"] += 1
            return []
        return [buf] if buf.strip(b"\r") else []

    def _newline(self, buf: bytes, out: list[bytes]) -> None:
        if self._to_newline:
            nl = buf.find(b"\n")
            if nl < 0:
                return
            self._to_newline = False
            buf = buf[nl + 1 :]
        parts = buf.split(b"\n")
        tail = parts.pop()
        limit = self.max_message_size
        frames = [p for p in parts if 0 < len(p) <= limit]
        empty = parts.count(b"") + parts.count(b"\r")
        if empty:
            frames = [p for p in frames if p != b"\r"]
        self.dropped["oversize"] += len(parts) - len(frames) - empty
        out.extend(frames)
        if len(tail) > limit:
            self.dropped["oversize"] += 1
            self._to_newline = True
        else:
            self._buf = tail

    def _octet(self, buf: bytes, out: list[bytes]) -> None:
        pos, n, limit = 0, len(buf), self.max_message_size
        while pos < n:
            if self._skip:
                step = min(self._skip, n - pos)
                self._skip -= step
                pos += step
                continue
            if self._to_newline:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    pos = n
                    break
                self._to_newline = False
                pos = nl + 1
                continue
            if buf[pos] in b"\r\n":  # some senders end octet-counted frames with a newline as well
                pos += 1
                continue
            sp = buf.find(b" ", pos, pos + _MAX_LEN_DIGITS + 1)
            if sp < 0 and n - pos <= _MAX_LEN_DIGITS and buf[pos:].isdigit():
                break  # the length is still arriving
            digits = buf[pos:sp] if sp > 0 else b""
            if not digits.isdigit() or digits[0] == 0x30:
                self.dropped["bad_frame"] += 1
                self._to_newline = True
                continue
            length, start = int(digits), sp + 1
            if length > limit:
                self.dropped["oversize"] += 1
                self._skip, pos = length, start
                continue
            if start + length > n:
                break  # the message is still arriving
            out.append(buf[start : start + length])
            pos = start + length
        self._buf = buf[pos:]


def _detect(buf: bytes) -> str | None:
    if not buf:
        return None
    if buf[0] not in b"123456789":
        return "newline"
    if len(buf) <= _MAX_LEN_DIGITS and buf.isdigit():
        return None  # a length or a line of digits: wait for the next byte
    return "octet-counting" if _OCTET_HEADER.match(buf) else "newline"
