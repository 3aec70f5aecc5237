"""Syslog parsing (RFC 5424 / RFC 3164) and TCP framing (RFC 6587), with messages from the RFCs and
from a real ``logger`` (util-linux) sending to sockets the tests open on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.sources.syslog import SCHEMA, SyslogFramer, format_counts, parse_syslog

RECEIVED = datetime(2026, 11, 23, 16, 0, 0, tzinfo=UTC)
RECEIVED_NS = int(RECEIVED.timestamp()) * 1_000_000_000


def parse(*lines: str | bytes, received_ns: int = RECEIVED_NS) -> list[dict[str, Any]]:
    kind = pa.binary() if isinstance(lines[0], bytes) else pa.string()
    table = parse_syslog(pa.array(list(lines), kind), None, received_ns)
    assert table.schema == SCHEMA
    assert table.num_rows == len(lines)
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def one(line: str | bytes, **kwargs: Any) -> dict[str, Any]:
    return parse(line, **kwargs)[0]


def utc(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC)


# --- RFC 5424, section 6.5 ------------------------------------------------------------------


def test_rfc5424_example_1_nil_procid_and_sd_with_bom() -> None:
    line = (
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        "\ufeff'su root' failed for lonvick on /dev/pts/8"
    )
    row = one(line)
    assert row == {
        "timestamp": utc("2003-10-11T22:14:15.003000"),
        "facility": 4,
        "severity": 2,
        "hostname": "mymachine.example.com",
        "app_name": "su",
        "proc_id": None,
        "msg_id": "ID47",
        "structured_data": None,
        "message": "'su root' failed for lonvick on /dev/pts/8",
        "source_ip": None,
        "raw": line,
        "format": "rfc5424",
    }


def test_rfc5424_example_2_offset_and_microseconds() -> None:
    row = one("<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.")
    assert row["timestamp"] == utc("2003-08-24T12:14:15.000003")
    assert (row["facility"], row["severity"]) == (20, 5)
    assert (row["hostname"], row["app_name"], row["proc_id"], row["msg_id"]) == ("192.0.2.1", "myproc", "8710", None)
    assert row["structured_data"] is None
    assert row["message"] == "%% It's time to make the do-nuts."


def test_rfc5424_example_3_structured_data_and_message() -> None:
    sd = '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
    header = "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47"
    row = one(f"{header} {sd} An application event log entry...")
    assert row["structured_data"] == sd
    assert row["message"] == "An application event log entry..."
    assert (row["app_name"], row["msg_id"], row["format"]) == ("evntslog", "ID47", "rfc5424")


def test_rfc5424_example_4_two_sd_elements_no_message() -> None:
    sd = '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]'
    row = one(f"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 {sd}")
    assert row["structured_data"] == sd
    assert row["message"] == ""


def test_rfc5424_escaped_bracket_quote_and_backslash_in_sd() -> None:
    sd = r'[ex@32473 a="x\]y" b="say \"hi\"" c="back\\slash"]'
    row = one(f"<13>1 2024-01-02T03:04:05Z h a p m {sd} msg ] with bracket")
    assert row["structured_data"] == sd
    assert row["message"] == "msg ] with bracket"


def test_rfc5424_all_nil_values_take_received_time() -> None:
    row = one("<14>1 - - - - - -")
    assert row["timestamp"] == RECEIVED
    assert [row[k] for k in ("hostname", "app_name", "proc_id", "msg_id", "structured_data")] == [None] * 5
    assert (row["facility"], row["severity"], row["message"], row["format"]) == (1, 6, "", "rfc5424")


def test_rfc5424_nanoseconds_truncated_and_compact_offset() -> None:
    assert one("<14>1 2024-01-02T03:04:05.123456789+0130 h a p m - x")["timestamp"] == utc("2024-01-02T01:34:05.123456")


def test_rfc5424_unparseable_timestamp_takes_received_time() -> None:
    row = one("<14>1 2024-13-45T99:04:05Z h a p m - x")
    assert (row["timestamp"], row["format"], row["hostname"]) == (RECEIVED, "rfc5424", "h")


def test_unicode_message_and_fields() -> None:
    row = one("<14>1 2024-01-02T03:04:05Z hôst äpp - - - 日本語 ✓ émoji 🎉")
    assert (row["hostname"], row["app_name"], row["message"]) == ("hôst", "äpp", "日本語 ✓ émoji 🎉")


def test_message_keeps_embedded_newline_but_one_trailing_newline_is_stripped() -> None:
    rows = parse("<14>1 - h a - - - line1\nline2\r\n", "<14>Oct 11 22:14:15 h app: x\n\n", "plain\r")
    assert rows[0]["message"] == "line1\nline2"
    assert rows[0]["raw"] == "<14>1 - h a - - - line1\nline2"
    assert rows[1]["message"] == "x\n"
    assert rows[2]["raw"] == "plain"


# --- RFC 3164 -------------------------------------------------------------------------------


def test_rfc3164_example_with_hostname_and_tag() -> None:
    row = one("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8")
    assert row == {
        "timestamp": utc("2026-10-11T22:14:15"),
        "facility": 4,
        "severity": 2,
        "hostname": "mymachine",
        "app_name": "su",
        "proc_id": None,
        "msg_id": None,
        "structured_data": None,
        "message": "'su root' failed for lonvick on /dev/pts/8",
        "source_ip": None,
        "raw": "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        "format": "rfc3164",
    }


def test_rfc3164_example_without_tag_and_space_padded_day() -> None:
    row = one("<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!")
    assert row["timestamp"] == utc("2026-02-05T17:32:18")
    assert (row["hostname"], row["app_name"], row["message"]) == ("10.0.0.99", None, "Use the BFG!")


def test_rfc3164_tag_with_pid_and_no_hostname() -> None:
    row = one("<30>Nov 23 15:59:00 sshd[4242]: Accepted publickey for root")
    assert (row["hostname"], row["app_name"], row["proc_id"]) == (None, "sshd", "4242")
    assert row["message"] == "Accepted publickey for root"
    assert (row["facility"], row["severity"]) == (3, 6)


def test_rfc3164_hostname_tag_pid() -> None:
    row = one("<30>Nov 23 15:59:00 web-1 nginx[17]: GET / 200")
    assert (row["hostname"], row["app_name"], row["proc_id"], row["message"]) == ("web-1", "nginx", "17", "GET / 200")


def test_rfc3164_year_rolls_back_when_more_than_a_day_ahead() -> None:
    jan_1 = int(datetime(2027, 1, 1, 0, 0, 30, tzinfo=UTC).timestamp()) * 1_000_000_000
    assert one("<13>Dec 31 23:59:59 h app: late", received_ns=jan_1)["timestamp"] == utc("2026-12-31T23:59:59")
    # A clock a few hours ahead of ours stays in this year.
    assert one("<13>Nov 23 20:00:00 h app: x")["timestamp"] == utc("2026-11-23T20:00:00")


def test_rfc3164_with_iso_timestamp() -> None:
    row = one("<13>2024-05-06T07:08:09.5+02:00 host app[1]: hello")
    assert row["timestamp"] == utc("2024-05-06T05:08:09.500000")
    assert (row["hostname"], row["app_name"], row["proc_id"], row["message"]) == ("host", "app", "1", "hello")


def test_rfc3164_pri_only_and_empty_message() -> None:
    rows = parse("<13>", "<0>just text")
    assert [(r["format"], r["message"], r["facility"], r["severity"]) for r in rows] == [
        ("rfc3164", "", 1, 5),
        ("rfc3164", "just text", 0, 0),
    ]
    assert rows[0]["timestamp"] == RECEIVED


# --- never dropped -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "garbage without pri",
        "",
        "<192>Oct 11 22:14:15 h a: pri out of range",
        "<1000>x",
        "<>x",
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su",  # truncated 5424
        '<34>1 2003-10-11T22:14:15.003Z h a - - [unterminated x="y"',
        "<34>1 - - - - - -x",
    ],
)
def test_unparseable_lines_are_kept_raw(line: str) -> None:
    row = one(line)
    assert row["format"] == "raw"
    assert (row["message"], row["raw"], row["timestamp"]) == (line, line, RECEIVED)
    assert row["facility"] is None and row["severity"] is None and row["hostname"] is None


def test_invalid_utf8_is_replaced_not_raised() -> None:
    rows = parse(b"<13>Oct 11 22:14:15 h app: bad \xff\xfe byte", b"\xc3\x28", b"<14>1 - - - - - - ok \xed\xa0\x80")
    assert rows[0]["message"] == "bad \ufffd\ufffd byte"
    assert rows[1] == rows[1] | {"format": "raw", "message": "\ufffd("}
    assert rows[2]["format"] == "rfc5424"
    assert rows[2]["message"].startswith("ok \ufffd")


def test_null_lines_source_ips_and_received_arrays() -> None:
    lines = pa.array(["<13>x", None, "<14>1 - - - - - -"], pa.string())
    received = pa.array([RECEIVED, RECEIVED, datetime(2020, 1, 1, tzinfo=UTC)], pa.timestamp("ns", tz="UTC"))
    table = parse_syslog(lines, pa.array(["10.0.0.1", None, "::1"]), received)
    assert table.column("source_ip").to_pylist() == ["10.0.0.1", None, "::1"]
    assert table.column("format").to_pylist() == ["rfc3164", "raw", "rfc5424"]
    assert table.column("timestamp").to_pylist()[2] == utc("2020-01-01T00:00:00")
    assert format_counts(table) == {"rfc5424": 1, "rfc3164": 1, "raw": 1}


def test_empty_batch() -> None:
    table = parse_syslog(pa.array([], pa.binary()), None, RECEIVED_NS)
    assert table.schema == SCHEMA and table.num_rows == 0
    assert format_counts(table) == {"rfc5424": 0, "rfc3164": 0, "raw": 0}


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="source_ips has 1 values for 2 lines"):
        parse_syslog(pa.array(["a", "b"]), pa.array(["1.1.1.1"]), RECEIVED_NS)


# --- real logger (util-linux) --------------------------------------------------------------------


@pytest.fixture
def udp_socket() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        yield sock


def _logger(*args: str, stdin: str | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ, TZ="UTC")
    proc = subprocess.Popen(["logger", *args], stdin=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None
    proc.stdin.write(stdin or "")
    proc.stdin.close()
    return proc


def _host() -> str:
    return socket.gethostname().split(".")[0]


def test_logger_rfc3164_over_udp(udp_socket: socket.socket) -> None:
    port = str(udp_socket.getsockname()[1])
    before = datetime.now(UTC).replace(microsecond=0)
    args = ["--rfc3164", "-n", "127.0.0.1", "-P", port, "-d", "-t", "myapp", "-i", "-p", "local3.warning"]
    proc = _logger(*args, "hello wörld")
    data, (ip, _) = udp_socket.recvfrom(65535)
    assert proc.wait(10) == 0
    table = parse_syslog(pa.array([data], pa.binary()), pa.array([ip]), time.time_ns())
    row = table.to_pylist()[0]
    assert row["format"] == "rfc3164"
    assert (row["facility"], row["severity"]) == (19, 4)
    assert (row["hostname"], row["app_name"], row["proc_id"]) == (_host(), "myapp", str(proc.pid))
    assert row["message"] == "hello wörld"
    assert (row["source_ip"], row["raw"]) == ("127.0.0.1", data.decode())
    assert before <= row["timestamp"] <= datetime.now(UTC)


def test_logger_rfc5424_over_udp_with_structured_data(udp_socket: socket.socket) -> None:
    port = str(udp_socket.getsockname()[1])
    before = datetime.now(UTC)
    args = ["--rfc5424", "-n", "127.0.0.1", "-P", port, "-d", "-t", "myapp", "-i", "--msgid", "M1"]
    sd_args = ["--sd-id", "ex@32473", "--sd-param", r'k="v\]x"', "-p", "user.err", "x ✓"]
    proc = _logger(*args, *sd_args)
    data = udp_socket.recv(65535)
    assert proc.wait(10) == 0
    row = parse_syslog(pa.array([data], pa.binary()), None, time.time_ns()).to_pylist()[0]
    assert row["format"] == "rfc5424"
    assert (row["facility"], row["severity"]) == (1, 3)
    assert (row["hostname"], row["app_name"], row["proc_id"], row["msg_id"]) == (_host(), "myapp", str(proc.pid), "M1")
    assert row["structured_data"].endswith(r'[ex@32473 k="v\]x"]')
    assert row["structured_data"].startswith("[timeQuality ")
    assert row["message"] == "x ✓"
    assert before <= row["timestamp"] <= datetime.now(UTC)


def _logger_tcp(*args: str, stdin: str) -> bytes:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(10)
        proc = _logger("-n", "127.0.0.1", "-P", str(server.getsockname()[1]), "-T", *args, stdin=stdin)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        assert proc.wait(10) == 0
    return data


@pytest.mark.parametrize("octet", [True, False], ids=["octet-count", "newline"])
@pytest.mark.parametrize("fmt", ["--rfc5424", "--rfc3164"])
def test_logger_over_tcp(fmt: str, octet: bool) -> None:
    messages = ["first message", "second: with colon", "dritte Nachricht ✓"]
    extra = ["--octet-count"] if octet else []
    data = _logger_tcp(fmt, *extra, "-t", "tcpapp", "-p", "daemon.info", stdin="\n".join(messages) + "\n")
    assert data[:1].isdigit() == octet
    framer = SyslogFramer()
    frames = framer.feed(data) + framer.flush()
    assert framer.framing == ("octet-counting" if octet else "newline")
    assert framer.dropped == {"oversize": 0, "bad_frame": 0, "truncated": 0}
    rows = parse_syslog(pa.array(frames, pa.binary()), None, time.time_ns()).to_pylist()
    assert [r["message"] for r in rows] == messages
    assert {r["format"] for r in rows} == {fmt.strip("-")}
    assert all((r["facility"], r["severity"], r["app_name"], r["hostname"]) == (3, 6, "tcpapp", _host()) for r in rows)


# --- framing -----------------------------------------------------------------------------------


def octet(msg: bytes) -> bytes:
    return b"%d %s" % (len(msg), msg)


def test_octet_counting_keeps_partial_frames_across_feeds() -> None:
    framer = SyslogFramer()
    assert framer.feed(b"1") == []  # undecided: a length, or a newline-framed line starting with a digit
    assert framer.framing is None
    assert framer.feed(b"5 <13>hel") == []
    assert framer.framing == "octet-counting"
    assert framer.feed(b"lo world5 <13>") == [b"<13>hello world"]
    assert framer.feed(b"a") == [b"<13>a"]


def test_octet_counting_message_may_contain_newlines_and_trailing_lf_is_tolerated() -> None:
    framer = SyslogFramer()
    stream = octet(b"<13>a\nb") + b"\n" + octet(b"<13>c") + b"\r\n" + octet(b"<13>d")
    assert framer.feed(stream) == [b"<13>a\nb", b"<13>c", b"<13>d"]


def test_octet_counting_oversize_is_skipped_by_its_length() -> None:
    framer = SyslogFramer(max_message_size=10)
    big = octet(b"x" * 50)
    stream = octet(b"ok1") + big + octet(b"ok2")
    out = [f for i in range(0, len(stream), 7) for f in framer.feed(stream[i : i + 7])]
    assert out == [b"ok1", b"ok2"]
    assert framer.dropped["oversize"] == 1


def test_octet_counting_bad_frame_resyncs_at_next_newline() -> None:
    framer = SyslogFramer()
    out = framer.feed(octet(b"<13>a") + b"x7 junk junk\n" + octet(b"<13>b") + b"012 bad\n" + octet(b"<13>c"))
    assert out == [b"<13>a", b"<13>b", b"<13>c"]
    assert framer.dropped["bad_frame"] == 2


def test_octet_counting_length_without_space_is_bad_frame() -> None:
    framer = SyslogFramer()
    assert framer.feed(octet(b"a") + b"123456789012345\n" + octet(b"b")) == [b"a", b"b"]
    assert framer.dropped["bad_frame"] == 1


def test_octet_counting_truncated_at_close_is_counted() -> None:
    framer = SyslogFramer()
    assert framer.feed(b"20 <13>only part") == []
    assert framer.flush() == []
    assert framer.dropped["truncated"] == 1


def test_newline_framing_crlf_empty_lines_and_last_line_at_close() -> None:
    framer = SyslogFramer()
    assert framer.feed(b"<13>a\r\n\r\n\n<13>b\n<13>c") == [b"<13>a\r", b"<13>b"]
    assert framer.flush() == [b"<13>c"]
    assert framer.framing == "newline"


def test_newline_framing_digit_start_without_length_is_not_octet_counting() -> None:
    framer = SyslogFramer()
    assert framer.feed(b"2024-01-01 plain line\n") == [b"2024-01-01 plain line"]
    assert framer.framing == "newline"


def test_newline_framing_oversize_dropped_until_next_newline() -> None:
    framer = SyslogFramer(max_message_size=8)
    out = framer.feed(b"<13>ok\n<13>waytoolong") + framer.feed(b"stillgoing") + framer.feed(b"more\n<13>ok2\n")
    assert out == [b"<13>ok", b"<13>ok2"]
    assert framer.feed(b"<13>also too long\n<13>x\n") == [b"<13>x"]
    assert framer.dropped["oversize"] == 2


def test_max_message_size_is_validated() -> None:
    with pytest.raises(ValueError, match="max_message_size"):
        SyslogFramer(max_message_size=0)


_MESSAGE = st.binary(min_size=1, max_size=60).map(lambda b: b"<13>" + b.replace(b"\n", b" "))
_MESSAGES = st.lists(_MESSAGE, min_size=1, max_size=30)


def _chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


@settings(max_examples=150, deadline=None)
@given(messages=_MESSAGES, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_octet_counting_any_chunking_yields_the_same_messages(messages: list[bytes], cuts: list[int]) -> None:
    framer = SyslogFramer()
    stream = b"".join(octet(m) for m in messages)
    out = [f for chunk in _chunks(stream, cuts) for f in framer.feed(chunk)] + framer.flush()
    assert out == messages
    assert framer.dropped == {"oversize": 0, "bad_frame": 0, "truncated": 0}


@settings(max_examples=150, deadline=None)
@given(messages=_MESSAGES, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_newline_framing_any_chunking_yields_the_same_messages(messages: list[bytes], cuts: list[int]) -> None:
    framer = SyslogFramer()
    stream = b"".join(m + b"\n" for m in messages)
    out = [f for chunk in _chunks(stream, cuts) for f in framer.feed(chunk)] + framer.flush()
    assert out == messages
