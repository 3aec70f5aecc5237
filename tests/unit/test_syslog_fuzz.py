"""Fuzzing of the syslog decoders: random bytes and mutated valid messages (truncated, bytes
flipped, huge octet counts) never raise, never lose a line, and leave every row parsed or raw."""

from __future__ import annotations

import time

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.sources.syslog import SCHEMA, SyslogFramer, parse_syslog

VALID = [
    b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed",
    b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
    b'<165>1 2003-10-11T22:14:15.003Z h evntslog - ID47 [ex@32473 iut="3" a="x\\]y"][p@1 class="high"] entry',
    b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
    b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
    b"<30>Nov 23 15:59:00 web-1 nginx[17]: GET / 200 \xc3\xa9\xe2\x9c\x93",
    b"<13>2024-05-06T07:08:09.5+02:00 host app[1]: hello",
    b"<14>1 - - - - - -",
]
INSERTS = [b" ", b"-", b"[", b"]", b'"', b"\\", b"\n", b"\r", b"<", b">", b"\xff", b"1"]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid message, then a few truncations, byte flips, insertions and deletions."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        pos = draw(st.integers(min_value=0, max_value=len(data)))
        if op == "truncate":
            del data[pos:]
        elif op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(min_value=0, max_value=255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(INSERTS))
        elif pos < len(data):
            del data[pos]
    return bytes(data)


LINES = st.lists(st.one_of(st.binary(max_size=300), mutated(), st.sampled_from(VALID)), max_size=60)


def _check(table: pa.Table, n: int) -> None:
    assert table.schema == SCHEMA
    assert table.num_rows == n
    for row in table.to_pylist():
        assert row["format"] in ("rfc5424", "rfc3164", "raw")
        assert row["timestamp"] is not None
        assert row["message"] is not None and row["raw"] is not None
        if row["format"] == "raw":
            assert row["message"] == row["raw"]
            assert row["facility"] is None and row["severity"] is None
        else:
            assert 0 <= row["facility"] <= 23 and 0 <= row["severity"] <= 7


@SETTINGS
@given(lines=LINES, nulls=st.booleans())
def test_parse_syslog_binary_never_raises_and_keeps_every_line(lines: list[bytes], nulls: bool) -> None:
    values: list[bytes | None] = [None if nulls and i % 7 == 3 else line for i, line in enumerate(lines)]
    table = parse_syslog(pa.array(values, pa.binary()), None, time.time_ns())
    _check(table, len(lines))


@SETTINGS
@given(lines=st.lists(st.text(max_size=200), max_size=40), received=st.integers(min_value=0, max_value=2**62))
def test_parse_syslog_text_any_receive_time(lines: list[str], received: int) -> None:
    _check(parse_syslog(pa.array(lines, pa.string()), None, received), len(lines))


@st.composite
def mutated_stream(draw: st.DrawFn) -> bytes:
    """Octet-counted or newline-framed valid frames with some lengths replaced by huge or bad ones."""
    frames = draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=10))
    if draw(st.booleans()):
        parts = []
        for frame in frames:
            length = draw(st.sampled_from([len(frame), len(frame), 0, 10**9, 10**12, len(frame) + 3, len(frame) - 3]))
            parts.append(b"%d %s" % (length, frame))
        stream = b"".join(parts)
    else:
        stream = b"\n".join(frames)
    return stream + draw(st.binary(max_size=40))


@SETTINGS
@given(
    stream=st.one_of(st.binary(max_size=2000), mutated_stream()),
    chunk=st.integers(min_value=1, max_value=500),
    max_size=st.sampled_from([16, 100, 65536]),
)
def test_framer_never_raises_and_frames_fit(stream: bytes, chunk: int, max_size: int) -> None:
    framer = SyslogFramer(max_message_size=max_size)
    frames = [f for i in range(0, len(stream), chunk) for f in framer.feed(stream[i : i + chunk])]
    frames += framer.flush()
    assert all(0 < len(f) <= max_size for f in frames)
    assert all(v >= 0 for v in framer.dropped.values())
    # Whatever the framer lets through, the parser takes without losing a line.
    _check(parse_syslog(pa.array(frames, pa.binary()), None, time.time_ns()), len(frames))
