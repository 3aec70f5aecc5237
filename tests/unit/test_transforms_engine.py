"""The transformation engine (agents/transforms/engine.py): every step kind and condition, with
missing fields, nulls, wrong types and unicode, checked row by row; field stats and preview."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import pyarrow as pa
import pytest
from google.protobuf import json_format

from agents.transforms import ERROR_SCHEMA, FieldStats, InvalidTransformations, compile_plan, preview
from agents.transforms.engine import Result
from floe.v1 import transforms_pb2 as tp

UTC = dt.UTC


def steps_of(*specs: dict[str, Any]) -> list[tp.Transformation]:
    return [json_format.ParseDict(s, tp.Transformation()) for s in specs]


def run(table: pa.Table, *specs: dict[str, Any], salt: str = "") -> Result:
    result = compile_plan(steps_of(*specs), salt=salt).run(table)
    assert result.errors.schema == ERROR_SCHEMA
    return result


def rows(table: pa.Table, *specs: dict[str, Any]) -> list[dict[str, Any]]:
    result = run(table, *specs)
    assert result.errors.num_rows == 0, result.errors.to_pylist()
    out: list[dict[str, Any]] = result.table.to_pylist()
    return out


def cmp(field: str, op: str, value: str) -> dict[str, Any]:
    return {"compare": {"field": field, "operator": f"OPERATOR_{op}", "value": value}}


def keep(cond: dict[str, Any]) -> dict[str, Any]:
    return {"filter": {"mode": "MODE_INCLUDE", "condition": cond}}


def kept_ids(table: pa.Table, cond: dict[str, Any]) -> list[int]:
    return [r["id"] for r in rows(table, keep(cond))]


MIXED = pa.table(
    {
        "id": [1, 2, 3, 4, 5],
        "sev": [3, 7, None, 6, 10],
        "num_text": ["10", "9", "abc", None, " 2.5 "],
        "name": ["Zoë", "alice", None, "bob", "日本"],
        "flag": [True, False, None, True, False],
    }
)


# -- conditions ---------------------------------------------------------------------------------


def test_compare_numbers_when_both_sides_are_numbers_else_text() -> None:
    assert kept_ids(MIXED, cmp("sev", "GT", "6")) == [2, 5]
    assert kept_ids(MIXED, cmp("num_text", "GT", "9")) == [1, 3]  # 10 > 9 as numbers, "abc" > "9" as text
    assert kept_ids(MIXED, cmp("num_text", "GE", "2.5")) == [1, 2, 3, 5]  # "abc" >= "2.5" as text
    assert kept_ids(MIXED, cmp("num_text", "GT", "10")) == [3]  # "abc" > "10" as text
    assert kept_ids(MIXED, cmp("num_text", "EQ", "10.0")) == [1]
    assert kept_ids(MIXED, cmp("name", "LT", "b")) == [1, 2]  # byte order: "Zoë" < "alice" < "b" < "bob"
    assert kept_ids(MIXED, cmp("flag", "EQ", "true")) == [1, 4]


def test_text_operators_and_unicode() -> None:
    assert kept_ids(MIXED, cmp("name", "CONTAINS", "ë")) == [1]
    assert kept_ids(MIXED, cmp("name", "STARTS_WITH", "日")) == [5]
    assert kept_ids(MIXED, cmp("name", "ENDS_WITH", "ce")) == [2]
    assert kept_ids(MIXED, cmp("sev", "STARTS_WITH", "1")) == [5]  # numbers compare by their text


def test_missing_and_null_fields_never_match_a_leaf_but_not_inverts() -> None:
    assert kept_ids(MIXED, cmp("absent", "EQ", "x")) == []
    assert kept_ids(MIXED, cmp("absent", "NE", "x")) == []
    assert kept_ids(MIXED, cmp("sev", "NE", "3")) == [2, 4, 5]  # the null row does not match
    assert kept_ids(MIXED, {"not": cmp("sev", "EQ", "3")}) == [2, 3, 4, 5]
    assert kept_ids(MIXED, {"not": cmp("absent", "EQ", "x")}) == [1, 2, 3, 4, 5]


def test_regex_in_exists_all_any() -> None:
    assert kept_ids(MIXED, {"regex": {"field": "name", "pattern": "^[a-z]+$"}}) == [2, 4]
    assert kept_ids(MIXED, {"in": {"field": "sev", "values": ["3", "10.0", "x"]}}) == [1, 5]
    assert kept_ids(MIXED, {"in": {"field": "name", "values": ["bob", "日本"]}}) == [4, 5]
    assert kept_ids(MIXED, {"exists": {"field": "sev"}}) == [1, 2, 4, 5]
    assert kept_ids(MIXED, {"exists": {"field": "absent"}}) == []
    both = {"all": {"conditions": [cmp("sev", "GE", "6"), {"exists": {"field": "name"}}]}}
    assert kept_ids(MIXED, both) == [2, 4, 5]
    either = {"any": {"conditions": [cmp("sev", "EQ", "3"), cmp("name", "EQ", "bob")]}}
    assert kept_ids(MIXED, either) == [1, 4]


def test_dotted_names_reach_into_structs() -> None:
    table = pa.table({"user": [{"name": "a", "age": 3}, None, {"name": "b", "age": None}]})
    assert [r["user"] for r in rows(table, keep(cmp("user.age", "GE", "1")))] == [{"name": "a", "age": 3}]
    out = rows(table, {"change_case": {"field": "user.name", "case": "CASE_UPPER"}})
    assert [r["user"] for r in out] == [{"name": "A", "age": 3}, None, {"name": "B", "age": None}]
    out = rows(table, {"remove_fields": {"fields": ["user.age"]}})
    assert [r["user"] for r in out] == [{"name": "a"}, None, {"name": "b"}]


# -- field steps ----------------------------------------------------------------------------------


def test_add_field_overwrite_and_fill() -> None:
    table = pa.table({"env": ["dev", None], "n": pa.array([1, None], pa.int64())})
    assert rows(table, {"add_field": {"field": "env", "value": "prod"}}) == [
        {"env": "dev", "n": 1},
        {"env": "prod", "n": None},
    ]
    assert [r["env"] for r in rows(table, {"add_field": {"field": "env", "value": "prod", "overwrite": True}})] == [
        "prod",
        "prod",
    ]
    out = run(table, {"add_field": {"field": "n", "value": "5"}}).table
    assert out.column("n").to_pylist() == [1, 5] and out.schema.field("n").type == pa.int64()
    out = run(table, {"add_field": {"field": "n", "value": "five"}}).table
    assert out.column("n").to_pylist() == ["1", "five"]  # does not fit int: the field becomes text
    assert [r["new"] for r in rows(table, {"add_field": {"field": "new", "value": "ü"}})] == ["ü", "ü"]


def test_remove_rename_copy_with_missing_fields() -> None:
    table = pa.table({"a": [1, None], "b": ["x", "y"]})
    assert rows(table, {"remove_fields": {"fields": ["a", "missing"]}}) == [{"b": "x"}, {"b": "y"}]
    out = run(table, {"rename_field": {"from": "a", "to": "z"}}).table
    assert out.column_names == ["z", "b"] and out.column("z").to_pylist() == [1, None]
    assert rows(table, {"rename_field": {"from": "missing", "to": "z"}}) == table.to_pylist()
    assert rows(table, {"rename_field": {"from": "a", "to": "b"}}) == [{"b": 1}, {"b": None}]  # replaces b
    assert rows(table, {"copy_field": {"from": "b", "to": "c"}}) == [
        {"a": 1, "b": "x", "c": "x"},
        {"a": None, "b": "y", "c": "y"},
    ]
    assert rows(table, {"copy_field": {"from": "missing", "to": "c"}}) == table.to_pylist()


def test_when_applies_a_step_to_matching_rows_only() -> None:
    table = pa.table({"lvl": ["err", "info", None], "msg": ["A", "B", "C"], "n": ["1", "x", "3"]})
    when = cmp("lvl", "EQ", "err")
    assert [r["msg"] for r in rows(table, {"change_case": {"field": "msg", "case": "CASE_LOWER"}, "when": when})] == [
        "a",
        "B",
        "C",
    ]
    assert rows(table, {"rename_field": {"from": "msg", "to": "m"}, "when": when}) == [
        {"lvl": "err", "msg": None, "n": "1", "m": "A"},
        {"lvl": "info", "msg": "B", "n": "x", "m": None},
        {"lvl": None, "msg": "C", "n": "3", "m": None},
    ]
    assert [r["msg"] for r in rows(table, {"remove_fields": {"fields": ["msg"]}, "when": when})] == [None, "B", "C"]
    # Converting matching rows only: the others keep their values, as ints when they can be ints...
    numbers = pa.table({"lvl": ["err", "info"], "n": ["1", "2"]})
    out = run(numbers, {"convert_type": {"field": "n", "type": "TYPE_INT"}, "when": when}).table
    assert out.column("n").to_pylist() == [1, 2]
    # ...else the field stays text for the batch rather than lose "x".
    out = run(table, {"convert_type": {"field": "n", "type": "TYPE_INT"}, "when": when}).table
    assert out.column("n").to_pylist() == ["1", "x", "3"]


def test_regex_replace_groups_unicode_and_non_text_fields() -> None:
    table = pa.table({"s": ["user=bob id=7", None, "naïve café"], "n": [123, 45, None]})
    out = rows(table, {"regex_replace": {"field": "s", "pattern": r"user=(\w+)", "replacement": r"u<\1>"}})
    assert [r["s"] for r in out] == ["u<bob> id=7", None, "naïve café"]
    assert [r["s"] for r in rows(table, {"regex_replace": {"field": "s", "pattern": "é", "replacement": "e"}})] == [
        "user=bob id=7",
        None,
        "naïve cafe",
    ]
    assert [r["n"] for r in rows(table, {"regex_replace": {"field": "n", "pattern": "2", "replacement": "_"}})] == [
        "1_3",
        "45",
        None,
    ]


def test_mask_keeps_the_last_characters_of_each_match() -> None:
    table = pa.table({"s": ["card 4111111111111111 / 5500000000000004", "none", None, "ß 12345 ü"]})
    out = rows(table, {"mask": {"field": "s", "pattern": r"\d{4,}", "keep_last": 4}})
    assert [r["s"] for r in out] == ["card ************1111 / ************0004", "none", None, "ß *2345 ü"]
    out = rows(table, {"mask": {"field": "s", "pattern": r"[üß]", "mask_char": "#"}})
    assert [r["s"] for r in out][3] == "# 12345 #"


def test_mask_with_the_marker_character_in_the_data() -> None:
    table = pa.table({"s": ["a\x1e123", "\ue000 456"]})
    assert [r["s"] for r in rows(table, {"mask": {"field": "s", "pattern": r"\d+", "keep_last": 1}})] == [
        "a\x1e**3",
        "\ue000 **6",
    ]


def test_hash_field_salted_sha256_of_the_text() -> None:
    table = pa.table({"user": ["bob", None, "zoë"], "n": [1, 2, None]})
    out = run(table, {"hash_field": {"field": "user"}}, {"hash_field": {"field": "n", "target": "n_hash"}}, salt="s3")
    got = out.table.to_pylist()

    def sha(v: str) -> str:
        return hashlib.sha256(("s3" + v).encode()).hexdigest()

    assert [r["user"] for r in got] == [sha("bob"), None, sha("zoë")]
    assert [r["n_hash"] for r in got] == [sha("1"), sha("2"), None]
    assert [r["n"] for r in got] == [1, 2, None]


def test_hash_many_distinct_values_goes_through_duckdb_with_the_same_digests() -> None:
    values = [f"user-{i}" for i in range(30_000)]
    out = run(pa.table({"u": values}), {"hash_field": {"field": "u"}}, salt="k").table.column("u").to_pylist()
    assert out[0] == hashlib.sha256(b"kuser-0").hexdigest()
    assert out[-1] == hashlib.sha256(b"kuser-29999").hexdigest()


def test_change_case_only_changes_text() -> None:
    table = pa.table({"s": ["MiXed Ünï", None], "n": [1, 2]})
    assert [r["s"] for r in rows(table, {"change_case": {"field": "s", "case": "CASE_LOWER"}})] == ["mixed ünï", None]
    assert [r["s"] for r in rows(table, {"change_case": {"field": "s", "case": "CASE_UPPER"}})] == ["MIXED ÜNÏ", None]
    assert rows(table, {"change_case": {"field": "n", "case": "CASE_UPPER"}}) == table.to_pylist()


# -- failing steps --------------------------------------------------------------------------------


def test_convert_type_failures_go_to_errors_with_the_record() -> None:
    table = pa.table({"id": [1, 2, 3, 4, 5], "v": [" 42", "x", None, "-0007", "9223372036854775808"]})
    result = run(table, {"id": "to-int", "convert_type": {"field": "v", "type": "TYPE_INT"}})
    assert result.table.to_pylist() == [{"id": 1, "v": 42}, {"id": 3, "v": None}, {"id": 4, "v": -7}]
    errors = result.errors.to_pylist()
    assert [json.loads(e["record"]) for e in errors] == [{"id": 2, "v": "x"}, {"id": 5, "v": "9223372036854775808"}]
    assert {(e["step_index"], e["step"]) for e in errors} == {(0, "to-int")}
    assert errors[0]["reason"] == "field 'v' holds a value that does not convert to a whole number (int64)"
    assert result.step_stats[0].failed == 2


@pytest.mark.parametrize(
    ("kind", "values", "expected", "failed"),
    [
        ("TYPE_FLOAT", ["1.5", "1e3", "abc", None], [1.5, 1000.0, None], 1),
        ("TYPE_BOOL", ["Yes", "off", "maybe", "1"], [True, False, True], 1),
        ("TYPE_STRING", [1.5, 2.0, None], ["1.5", "2", None], 0),
        ("TYPE_INT", [1.0, 2.5, None], [1, None], 1),
        ("TYPE_BOOL", [0, 3, None], [False, True, None], 0),
    ],
)
def test_convert_type_kinds(kind: str, values: list[Any], expected: list[Any], failed: int) -> None:
    result = run(pa.table({"v": values}), {"convert_type": {"field": "v", "type": kind}})
    assert result.table.column("v").to_pylist() == expected
    assert result.errors.num_rows == failed


def test_convert_type_of_a_missing_field_is_a_no_op() -> None:
    table = pa.table({"a": [1]})
    assert rows(table, {"convert_type": {"field": "b", "type": "TYPE_INT"}}) == [{"a": 1}]


def test_parse_timestamp_formats_zones_and_failures() -> None:
    table = pa.table(
        {
            "t": [
                "2026-01-02T03:04:05.5Z",
                "2026-01-02 03:04:05",
                "02/Jan/2026:03:04:05 +0200",
                "1767225600",
                "soon",
                None,
            ]
        }
    )
    spec = {
        "parse_timestamp": {
            "field": "t",
            "target": "ts",
            "formats": ["rfc3339", "%d/%b/%Y:%H:%M:%S %z", "unix_s"],
            "timezone": "Europe/Paris",
        }
    }
    result = run(table, spec)
    assert result.table.column("ts").to_pylist() == [
        dt.datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC),
        dt.datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC),  # no offset: Paris wall time (UTC+1 in winter)
        dt.datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC),
        dt.datetime(2026, 1, 1, tzinfo=UTC),
        None,
    ]
    assert result.table.column("t").to_pylist()[1] == "2026-01-02 03:04:05"  # the source field is kept
    assert json.loads(result.errors.column("record")[0].as_py())["t"] == "soon"
    assert result.errors.column("reason")[0].as_py() == (
        "field 't' matches none of the timestamp formats rfc3339, %d/%b/%Y:%H:%M:%S %z, unix_s"
    )


def test_parse_timestamp_numbers_and_fractions() -> None:
    table = pa.table({"ms": [1767225600123, None], "f": ["2026-01-01 00:00:00.25", "2026-01-01 00:00:01,5"]})
    out = rows(
        table,
        {"parse_timestamp": {"field": "ms", "formats": ["unix_ms"]}},
        {"parse_timestamp": {"field": "f", "formats": ["%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S,%f"]}},
    )
    assert [r["ms"] for r in out] == [dt.datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC), None]
    assert [r["f"] for r in out] == [
        dt.datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC),
        dt.datetime(2026, 1, 1, 0, 0, 1, 500000, tzinfo=UTC),
    ]


def test_parse_json_flattens_and_failures_go_to_errors() -> None:
    table = pa.table(
        {
            "id": [1, 2, 3, 4, 5],
            "p": ['{"a": {"b": 1, "c": "ü"}, "d": [1, 2]}', "[1]", None, "{bad", '{"a": {"b": 2}}'],
        }
    )
    result = run(table, {"parse_json": {"field": "p", "prefix": "j_", "separator": "_"}})
    assert [{k: v for k, v in r.items() if k != "p"} for r in result.table.to_pylist()] == [
        {"id": 1, "j_a_b": 1, "j_a_c": "ü", "j_d": [1, 2]},
        {"id": 3, "j_a_b": None, "j_a_c": None, "j_d": None},
        {"id": 5, "j_a_b": 2, "j_a_c": None, "j_d": None},
    ]
    errors = result.errors.to_pylist()
    assert [json.loads(e["record"])["id"] for e in errors] == [2, 4]
    assert errors[0]["reason"] == "field 'p' is a JSON array, not an object"
    assert errors[1]["reason"].startswith("field 'p' is not valid JSON")


def test_parse_json_of_a_struct_field_flattens_it() -> None:
    table = pa.table({"o": [{"x": 1, "y": {"z": "a"}}, None]})
    out = rows(table, {"parse_json": {"field": "o"}})
    assert [(r["x"], r["y.z"]) for r in out] == [(1, "a"), (None, None)]


def test_parse_key_value_with_prefix_and_separators() -> None:
    table = pa.table({"kv": ['a=1 b="two words" c=ü', "a=9", None, "nothing"], "a": ["old", "old", "old", "old"]})
    out = rows(table, {"parse_key_value": {"field": "kv"}})
    assert [(r["a"], r["b"], r["c"]) for r in out] == [
        ("1", "two words", "ü"),
        ("9", None, None),
        ("old", None, None),
        ("old", None, None),
    ]
    table = pa.table({"kv": ["x: 1, y: 2"]})
    out = rows(table, {"parse_key_value": {"field": "kv", "pair_separator": ",", "kv_separator": ":", "prefix": "k."}})
    assert out == [{"kv": "x: 1, y: 2", "k.x": "1", "k.y": "2"}]


# -- filter, sample, route --------------------------------------------------------------------------


def test_filter_exclude_and_missing_field() -> None:
    assert [r["id"] for r in rows(MIXED, {"filter": {"mode": "MODE_EXCLUDE", "condition": cmp("sev", "GT", "6")}})] == [
        1,
        3,
        4,
    ]
    assert rows(MIXED, keep(cmp("absent", "EQ", "1"))) == []
    assert len(rows(MIXED, {"filter": {"mode": "MODE_EXCLUDE", "condition": cmp("absent", "EQ", "1")}})) == 5


def test_sample_keeps_one_in_n_across_batches() -> None:
    plan = compile_plan(steps_of({"sample": {"rate": 3}}))
    kept = []
    for start in range(0, 10, 4):  # batches of 4, 4, 2
        kept += plan.run(pa.table({"i": list(range(start, min(start + 4, 10)))})).table.column("i").to_pylist()
    assert kept == [0, 3, 6, 9]


def test_sample_under_when_samples_matching_rows_only() -> None:
    table = pa.table({"i": list(range(6)), "k": ["a", "b", "a", "b", "a", "b"]})
    out = rows(table, {"sample": {"rate": 2}, "when": cmp("k", "EQ", "b")})
    assert [r["i"] for r in out] == [0, 1, 2, 4, 5]  # of the "b" rows 1, 3, 5: the 1st and 3rd


def test_route_moves_matching_rows_as_they_are_at_that_step() -> None:
    result = run(
        MIXED,
        {"route": {"dataset": "tenants/t/datasets/alerts", "condition": cmp("sev", "GE", "7")}},
        {"add_field": {"field": "after", "value": "yes"}},
        {"route": {"dataset": "tenants/t/datasets/alerts", "condition": cmp("name", "EQ", "bob")}},
    )
    assert [r["id"] for r in result.table.to_pylist()] == [1, 3]
    routed = result.routed["tenants/t/datasets/alerts"].to_pylist()
    assert [(r["id"], r.get("after")) for r in routed] == [(2, None), (5, None), (4, "yes")]
    assert [s.routed for s in result.step_stats] == [2, 0, 1]


def test_empty_table_runs_through_every_step() -> None:
    table = pa.table({"s": pa.array([], pa.string())})
    specs: list[dict[str, Any]] = [
        {"add_field": {"field": "x", "value": "1"}},
        {"mask": {"field": "s", "pattern": "a"}},
        {"hash_field": {"field": "s"}},
        {"convert_type": {"field": "s", "type": "TYPE_INT"}},
        {"parse_timestamp": {"field": "s"}},
        {"parse_json": {"field": "s"}},
        {"parse_key_value": {"field": "s"}},
        {"sample": {"rate": 2}},
    ]
    assert run(table, *specs).table.num_rows == 0


def test_invalid_steps_are_refused_with_every_problem() -> None:
    with pytest.raises(InvalidTransformations) as info:
        compile_plan(
            steps_of(
                {"mask": {"field": "", "pattern": "("}},
                {"regex_replace": {"field": "a", "pattern": "a", "replacement": r"\2"}},
                {
                    "filter": {"mode": "MODE_INCLUDE", "condition": {"exists": {"field": "a"}}},
                    "when": {"exists": {"field": "b"}},
                },
            )
        )
    fields = [v.field for v in info.value.violations]
    assert fields == [
        "transformations[0].mask.field",
        "transformations[0].mask.pattern",
        "transformations[1].regex_replace.replacement",
        "transformations[2].when",
    ]


# -- field stats and preview ------------------------------------------------------------------------


def test_field_stats_merge_types_counts_and_times() -> None:
    stats = FieldStats()
    stats.observe(pa.table({"a": [1, None], "b": ["x", "y"]}), seen_at=100)
    stats.observe(pa.table({"a": ["s"], "c": [None]}), seen_at=200)
    assert stats.rows == 3
    a = stats.fields["a"]
    assert (a.types, a.non_null, a.rows, a.first_seen, a.last_seen) == ({"int64": 1, "string": 1}, 2, 3, 100, 200)
    assert (stats.fields["b"].last_seen, stats.fields["c"].non_null, stats.fields["c"].type) == (100, 0, "null")
    other = FieldStats.of_table(pa.table({"b": ["z"]}), seen_at=50)
    stats.merge(other)
    assert (stats.fields["b"].first_seen, stats.fields["b"].non_null) == (50, 3)


def test_preview_returns_json_ready_rows_and_per_step_errors() -> None:
    records: list[dict[str, Any]] = [
        {"host": "web-1", "n": "5", "ts": "2026-01-01T00:00:00Z"},
        {"host": "db", "n": "five"},
        {"host": "web-2", "n": None},
    ]
    result = preview(
        steps_of(
            {"id": "num", "convert_type": {"field": "n", "type": "TYPE_INT"}},
            {"parse_timestamp": {"field": "ts"}},
            {
                "route": {
                    "dataset": "tenants/t/datasets/web",
                    "condition": {"regex": {"field": "host", "pattern": "^web-2"}},
                }
            },
        ),
        records,
    )
    assert result.rows == [{"host": "web-1", "n": 5, "ts": "2026-01-01T00:00:00.000000Z"}]
    assert result.errors == [
        {
            "step_index": 0,
            "step": "num",
            "reason": "field 'n' holds a value that does not convert to a whole number (int64)",
            "record": {"host": "db", "n": "five", "ts": None},
        }
    ]
    assert result.routed == {"tenants/t/datasets/web": [{"host": "web-2", "n": None, "ts": None}]}
    assert [s.rows_out for s in result.steps] == [2, 2, 1]
