"""Parsers (agents/transforms/parsers.py): every data hint, checked row by row, with broken input."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from agents.transforms import PARSE_ERROR_SCHEMA, UnknownDataHint, parse_body

RECEIVED = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
UTC = dt.UTC


def parse(body: bytes, hint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    result = parse_body(body, hint, received_at=RECEIVED)
    assert result.errors.schema == PARSE_ERROR_SCHEMA
    return result.table.to_pylist(), result.errors.to_pylist()


def test_unknown_hint_names_the_choices() -> None:
    with pytest.raises(UnknownDataHint, match="unknown data hint 'xml': use one of cef, csv"):
        parse_body(b"x", "xml")


@pytest.mark.parametrize("hint", ["ndjson", "sflow", "ipfix", "netflow"])
def test_ndjson_and_flow_hints_read_json_objects(hint: str) -> None:
    rows, errors = parse(b'{"a": 1, "b": "x"}\n\n{"a": 2, "c": [1, 2]}\r\n', hint)
    assert rows == [{"a": 1, "b": "x", "c": None}, {"a": 2, "b": None, "c": [1, 2]}]
    assert errors == []


def test_ndjson_bad_lines_become_errors_and_the_rest_is_kept() -> None:
    body = b'{"a": 1}\nnot json\n[1, 2]\n"text"\n{"a": 2}\n{"a": "\xff"}\n{"a": 3'
    rows, errors = parse(body, "ndjson")
    assert rows == [{"a": 1}, {"a": 2}]
    assert [(e["line"], e["raw"]) for e in errors] == [
        (2, "not json"),
        (3, "[1, 2]"),
        (4, '"text"'),
        (6, '{"a": "\ufffd"}'),
        (7, '{"a": 3'),
    ]
    assert errors[0]["reason"].startswith("is not valid JSON: Expecting value")
    assert errors[1]["reason"] == "is a JSON array, not an object"
    assert errors[2]["reason"] == "is a JSON string, not an object"
    assert errors[3]["reason"] == "is not valid UTF-8"


def test_ndjson_type_conflicts_become_text_instead_of_failing() -> None:
    body = b'{"n": 1, "o": {"x": 1}, "k": true}\n{"n": "two", "o": "flat", "k": false}\n{"n": 3.5}\n'
    rows, errors = parse(body, "ndjson")
    assert errors == []
    assert rows == [
        {"n": "1", "o": '{"x": 1}', "k": True},
        {"n": "two", "o": "flat", "k": False},
        {"n": "3.5", "o": None, "k": None},
    ]


def test_ndjson_unicode_duplicate_keys_and_timestamps() -> None:
    body = '{"msg": "héllo ✓ 日本", "t": "2026-03-01T10:00:00Z"}\n{"msg": "x", "msg": "y"}\n'.encode()
    rows, errors = parse(body, "ndjson")
    assert errors == []
    assert rows[0] == {"msg": "héllo ✓ 日本", "t": dt.datetime(2026, 3, 1, 10, tzinfo=UTC)}
    assert rows[1]["msg"] == "y"  # the last of a repeated key wins


def test_ndjson_empty_body() -> None:
    assert parse(b"", "ndjson") == ([], [])
    assert parse(b"\n\n", "ndjson") == ([], [])


def test_syslog_raw_lines_use_the_syslog_parser() -> None:
    body = b"<34>1 2026-01-02T03:04:05.5Z web app 12 ID7 - started\n<13>Dec 31 23:04:05 db cron[9]: ran\n\ngarbage\n"
    rows, errors = parse(body, "syslog")
    assert errors == []
    assert [(r["format"], r["hostname"], r["app_name"], r["proc_id"], r["message"]) for r in rows] == [
        ("rfc5424", "web", "app", "12", "started"),
        ("rfc3164", "db", "cron", "9", "ran"),
        ("raw", None, None, None, "garbage"),
    ]
    assert rows[0]["timestamp"] == dt.datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
    assert rows[1]["timestamp"] == dt.datetime(2025, 12, 31, 23, 4, 5, tzinfo=UTC)  # the year from received_at
    assert rows[2]["timestamp"] == dt.datetime(2026, 1, 1, tzinfo=UTC)  # received_at stands in
    assert (rows[0]["facility"], rows[0]["severity"]) == (4, 2)


def test_syslog_records_parsed_by_the_proxy_keep_syslog_types() -> None:
    body = (
        b'{"timestamp": "2026-01-02T03:04:05.123456Z", "severity": 3, "facility": 1, "message": "m", "hostname": "h"}\n'
        b"<34>1 2026-01-02T03:04:05Z host app - - - raw line\n"
        b"{broken\n"
    )
    result = parse_body(body, "syslog", received_at=RECEIVED)
    assert result.table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert result.table.schema.field("severity").type == pa.int8()
    rows = result.table.to_pylist()
    assert {r["message"] for r in rows} == {"m", "raw line"}
    proxied = next(r for r in rows if r["message"] == "m")
    assert proxied["timestamp"] == dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert result.errors.to_pylist() == [
        {
            "line": 3,
            "raw": "{broken",
            "reason": "is not valid JSON: Expecting property name enclosed in double quotes at character 2",
        }
    ]


def test_text_is_one_message_per_line() -> None:
    rows, errors = parse(b"first\r\n\n  \nsecond line \xe2\x9c\x93\n\xff\xfe\nlast", "text")
    assert rows == [
        {"message": "first"},
        {"message": "second line ✓"},
        {"message": "\ufffd\ufffd"},
        {"message": "last"},
    ]
    assert errors == []


def test_csv_header_types_quotes_and_bad_rows() -> None:
    body = b'id,name,,id\n1,"Smith, J",x,10\n2,"multi\nline",y,20\n3\n4,plain,z,40\n'
    rows, errors = parse(body, "csv")
    assert rows == [
        {"id": 1, "name": "Smith, J", "column_3": "x", "id_2": 10},
        {"id": 2, "name": "multi\nline", "column_3": "y", "id_2": 20},
        {"id": 4, "name": "plain", "column_3": "z", "id_2": 40},
    ]
    # For CSV, line is the row number counting the header: the quoted newline does not count.
    assert errors == [{"line": 4, "raw": "3", "reason": "has 1 columns where the header has 4"}]


def test_csv_mixed_column_is_text_and_invalid_utf8_is_replaced() -> None:
    rows, errors = parse(b"a,b\n1,x\nfoo,\xff\n", "csv")
    assert rows == [{"a": "1", "b": "x"}, {"a": "foo", "b": "\ufffd"}]
    assert errors == []


def test_csv_header_only_and_empty() -> None:
    result = parse_body(b"a,b\n", "csv", received_at=RECEIVED)
    assert (result.table.column_names, result.table.num_rows) == (["a", "b"], 0)
    assert parse(b"", "csv") == ([], [])


def test_tsv_has_no_quoting() -> None:
    rows, errors = parse(b'k\tv\n"a"\tb c\n', "tsv")
    assert rows == [{"k": '"a"', "v": "b c"}]
    assert errors == []


def test_cef_header_extensions_and_escapes() -> None:
    body = (
        b"<134>Feb  1 12:00:00 fw1 CEF:0|Sec|IDS|1.0|100|worm stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232 "
        b"msg=a long message with a\\=b and c\\\\d cs1Label=tag name=dup\n"
        b"CEF:1|Ven\\|dor|Prod|2|sig|N\\\\ame|Low|\n"
        b"not a cef line\n"
    )
    rows, errors = parse(body, "cef")
    assert rows[0] == {
        "syslog_header": "<134>Feb  1 12:00:00 fw1",
        "cefVersion": 0,
        "deviceVendor": "Sec",
        "deviceProduct": "IDS",
        "deviceVersion": "1.0",
        "deviceEventClassId": "100",
        "name": "worm stopped",
        "severity": "10",
        "src": "10.0.0.1",
        "dst": "2.1.2.2",
        "spt": "1232",
        "msg": "a long message with a=b and c\\d",
        "cs1Label": "tag",
        "ext_name": "dup",
    }
    assert rows[1]["deviceVendor"] == "Ven|dor"
    assert rows[1]["name"] == "N\\ame"
    assert rows[1]["src"] is None and rows[1]["syslog_header"] is None
    assert errors == [
        {
            "line": 3,
            "raw": "not a cef line",
            "reason": "is not a CEF message (CEF:Version|Vendor|Product|Version|SignatureID|Name|Severity|Extension)",
        }
    ]


def test_kv_pairs_quotes_and_lines_without_pairs() -> None:
    body = b'user=alice action="log in" note=\'it\\\'s ok\' empty= x=1 x=2\nno pairs here\nmsg="caf\xc3\xa9"\n'
    rows, errors = parse(body, "kv")
    assert rows == [
        {"user": "alice", "action": "log in", "note": "it's ok", "empty": "", "x": "2", "msg": None},
        {"user": None, "action": None, "note": None, "empty": None, "x": None, "msg": "café"},
    ]
    assert errors == [{"line": 2, "raw": "no pairs here", "reason": "has no key=value pairs"}]
