"""The connector's pieces in process: job validation, the SQL sandbox, request bodies, the cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from google.protobuf import json_format

from agents.connector.cursor import GRACE, Cursor
from agents.connector.sandbox import Sandbox
from agents.connector.sinks.common import split_items
from agents.connector.sinks.webhook import as_json_array
from agents.connector.spec import ExportJob, JobSpec, jobs_from_yaml, validate_job
from agents.runtime.objectstore import ObjectInfo
from floe.backoff import retry_after


def job(doc: dict[str, object]) -> ExportJob:
    return json_format.ParseDict(doc, ExportJob())


def test_validation_names_every_bad_field() -> None:
    bad = job(
        {
            "dataset": "acme/fw",
            "query": "DROP TABLE fw",
            "destination": {"elasticsearch": {"url": "ftp://x", "index": "Bad Index", "apiKey": {"env": "1x"}}},
            "batchSize": 1_000_000,
            "interval": "0.1s",
            "connector": "Not A Name",
        }
    )
    fields = {v.field for v in validate_job(bad)}
    assert fields == {
        "export_job.dataset",
        "export_job.query",
        "export_job.destination.elasticsearch.url",
        "export_job.destination.elasticsearch.index",
        "export_job.destination.elasticsearch.api_key.env",
        "export_job.mode",
        "export_job.interval",
        "export_job.batch_size",
        "export_job.connector",
    }


def test_webhook_credentials_must_be_secret_refs() -> None:
    j = job(
        {
            "dataset": "tenants/ab/datasets/fw",
            "mode": "EXPORT_MODE_BATCH",
            "destination": {"webhook": {"url": "http://h/x", "headers": {"Authorization": "Bearer x"}}},
        }
    )
    assert [v.field for v in validate_job(j)] == ["export_job.destination.webhook.headers[Authorization]"]


def test_yaml_jobs_must_stay_in_their_tenant() -> None:
    entry = {
        "name": "tenants/ab/exports/ex",
        "dataset": "tenants/cd/datasets/fw",
        "mode": "EXPORT_MODE_BATCH",
        "destination": {"stdout": {}},
    }
    with pytest.raises(ValueError, match=r"exports\[0\]\.dataset"):
        jobs_from_yaml([entry])


def test_defaults() -> None:
    spec = JobSpec.from_proto(
        job(
            {
                "name": "tenants/ab/exports/ex",
                "dataset": "tenants/ab/datasets/fw",
                "mode": "EXPORT_MODE_WATCH",
                "destination": {"stdout": {}},
            }
        )
    )
    assert (spec.interval, spec.batch_size, spec.max_attempts, spec.watch) == (30.0, 5000, 5, True)


def test_sandbox_sees_only_its_table(tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    table = pa.table({"msg": ["x", "y"], "n": [1, 2]})
    for query in (f"SELECT * FROM read_csv('{secret}')", "SELECT * FROM secret_table"):  # noqa: S608
        box = Sandbox("fw", query)
        with pytest.raises(duckdb.Error):
            box.render("k", table, (), "doc || chr(10)")
        box.close()
    box = Sandbox("fw", "n > 1")
    lines = box.render("k", table, (), "doc || chr(10)")
    assert [b for _, _, b in lines.batches(10)] == [b'{"msg":"y","n":2}\n']
    with pytest.raises(duckdb.Error):  # the configuration is locked
        box._con.execute("SET enable_external_access = true")
    box.close()


def test_bodies_are_slices_of_the_rendered_column() -> None:
    box = Sandbox("fw", "")
    table = pa.table({"n": list(range(5))})
    lines = box.render("key", table, (), "'#' || CAST(rn AS VARCHAR) || ' ' || doc || chr(10)")
    batches = list(lines.batches(2))
    assert [(first, rows) for first, rows, _ in batches] == [(0, 2), (2, 2), (4, 1)]
    assert batches[1][2] == b'#2 {"n":2}\n#3 {"n":3}\n'
    box.close()
    assert split_items(b"a\nb\nc\nd\n", 2) == [b"a\nb\n", b"c\nd\n"]
    assert as_json_array(b'{"a":1}\n{"a":2}\n') == b'[{"a":1},{"a":2}]'
    assert retry_after("3") == 3.0 and retry_after(None) is None and retry_after("soon") is None


def info(key: str, when: datetime) -> ObjectInfo:
    return ObjectInfo(key=key, size=1, etag="e", last_modified=when)


def test_cursor_remembers_files_across_loads_and_stays_small(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    old, new = info("a/1.parquet", t0), info("a/2.parquet", t0 + timedelta(seconds=2 * GRACE))
    cursor = Cursor.load(path)
    assert cursor.pending([new, old]) == [old, new]
    cursor.mark(old, 3)
    cursor.mark(new, 4)
    again = Cursor.load(path)
    assert again.pending([old, new]) == []
    assert list(again.recent) == ["a/2.parquet"]  # the old key is covered by the watermark
    late = info("a/3.parquet", t0 + timedelta(seconds=1.5 * GRACE))  # appeared late, within the grace
    assert again.pending([old, new, late]) == [late]
    assert again.rows_exported == 7
