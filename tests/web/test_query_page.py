"""The query page against real data: NDJSON posted to the stack's receiver with curl, flushed to
Parquet, then queried in the browser — rows in the table, a statement the guard refuses shown
under the editor, and the CSV download checked field by field."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Page, expect

from floe.v1 import datasets_pb2
from tests.helpers import eventually
from tests.integration.agentkit import free_port
from tests.web.conftest import Stack, shot

TENANT = "query-acme"
DATASET = "web-logs"  # a '-' in the id: the table must be written "web-logs" in SQL
BY_ACTION = 'SELECT action, count(*) AS n FROM "web-logs" GROUP BY action ORDER BY action'


def _records() -> list[dict[str, object]]:
    now = datetime.now(UTC).replace(microsecond=0)
    out: list[dict[str, object]] = []
    for i in range(6):
        rec: dict[str, object] = {
            "timestamp": (now - timedelta(minutes=10 * i)).strftime("%Y-%m-%dT%H:%M:%S"),
            "user": f"u{i}",
            "action": "login" if i % 2 == 0 else "logout",
            "bytes": 100 * i,
        }
        if i == 1:
            rec["note"] = 'said "hi", then left\nfor lunch'  # needs RFC 4180 quoting in the CSV
        out.append(rec)
    return out


def _ingest(stack: Stack, records: list[dict[str, object]]) -> bool:
    """Post the records to the receiver's HTTP ingest; False while it does not know the key yet."""
    info = json.loads((stack.data_dir / "agents" / "receiver" / "agent.json").read_text())
    body = "".join(json.dumps(r) + "\n" for r in records)
    curl = subprocess.run(
        [
            "curl", "-sS", "--noproxy", "*", "-X", "POST",
            "-H", f"Authorization: Bearer {stack.admin_key}",
            "-H", "Content-Type: application/x-ndjson",
            "--data-binary", body,
            "-w", "\n%{http_code}",
            f"http://{info['webhook']}/{TENANT}/{DATASET}",
        ],
        capture_output=True, text=True, check=True, timeout=10,
    )  # fmt: skip
    status = curl.stdout.rsplit("\n", 1)[1]
    assert status in ("200", "401"), curl.stdout  # 401: keys reach a fresh receiver within about a second
    return status == "200"


def _setup(stack: Stack) -> list[dict[str, object]]:
    records = _records()
    with stack.client() as admin:
        admin.tenants.create(TENANT, display_name="Query ACME")
        web = datasets_pb2.Dataset(
            source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_HTTP, port=free_port()),
            active=True,
            testing=True,
        )
        admin.datasets.create(TENANT, DATASET, web)
        eventually(lambda: not admin.agents.get("receiver").drift and not admin.agents.get("query").drift, timeout=30)
        eventually(lambda: _ingest(stack, records), timeout=30, interval=0.5)

        def queryable() -> bool:
            rows = admin.query.rows('SELECT count(*) AS n FROM "web-logs"', dataset=f"{TENANT}/{DATASET}")
            return bool(rows == [{"n": len(records)}])

        eventually(queryable, timeout=90, interval=1)
    return records


def test_query_runs_shows_errors_and_downloads_csv(signed_in: Page, stack: Stack, tmp_path: Path) -> None:
    records = _setup(stack)
    page = signed_in
    page.reload()  # the top bar lists the new tenant
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Query").click()
    expect(page.get_by_role("heading", name="Choose a tenant to query")).to_be_visible()
    page.get_by_label("Tenant to query").select_option(TENANT)

    expect(page.get_by_label("Dataset", exact=True)).to_have_value(f"tenants/{TENANT}/datasets/{DATASET}")
    schema = page.get_by_role("list", name=re.compile("Columns"))
    expect(schema.get_by_role("button", name="user")).to_be_visible()
    editor = page.get_by_label("SQL", exact=True)
    expect(editor).to_have_value('SELECT * FROM "web-logs" ORDER BY timestamp DESC LIMIT 100')

    # Checked before sending.
    editor.fill("")
    page.get_by_role("button", name="Run query").click()
    expect(page.get_by_text("Write one SELECT statement.")).to_be_visible()

    # Clicking a column inserts it (quoted when it must be) where the cursor is.
    editor.fill('SELECT timestamp, , bytes, note FROM "web-logs" ORDER BY timestamp DESC')
    editor.evaluate("e => { e.focus(); e.setSelectionRange(18, 18); }")
    schema.get_by_role("button", name="user").click()
    schema.get_by_role("button", name="action").click()
    expect(editor).to_have_value('SELECT timestamp, useraction, bytes, note FROM "web-logs" ORDER BY timestamp DESC')
    editor.fill('SELECT timestamp, "user", action, bytes, note FROM "web-logs" ORDER BY timestamp DESC')
    editor.press("Control+Enter")  # the keyboard runs it too

    results = page.get_by_role("region", name="Query results")
    expect(results.get_by_role("row")).to_have_count(len(records) + 1)
    first = results.get_by_role("row").nth(1)
    expect(first.get_by_role("cell").nth(1)).to_have_text("u0")
    expect(first.get_by_role("cell").nth(4)).to_have_text("null")
    numeric = results.get_by_role("cell", name="500", exact=True)
    expect(numeric).to_have_class(re.compile(r"\bnum\b"))  # numbers are right-aligned
    summary = page.get_by_label("Query summary")
    expect(summary).to_contain_text("Rows6")
    expect(page.get_by_role("img", name=re.compile(r"Rows per .* by timestamp"))).to_be_visible()
    shot(page, "query")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    assert re.fullmatch(rf"{TENANT}-{DATASET}-\d{{8}}T\d{{6}}\.csv", download.value.suggested_filename)
    saved = tmp_path / "result.csv"
    download.value.save_as(saved)
    raw = saved.read_bytes().decode()
    assert raw.startswith("timestamp,user,action,bytes,note\r\n")
    assert '"said ""hi"", then left\nfor lunch"' in raw
    parsed = list(csv.reader(io.StringIO(raw, newline="")))
    assert parsed[0] == ["timestamp", "user", "action", "bytes", "note"]
    assert [(r[1], r[2], r[3], r[4]) for r in parsed[1:]] == [
        (str(r["user"]), str(r["action"]), str(r["bytes"]), str(r.get("note", ""))) for r in records
    ]

    # A statement the guard refuses is explained under the editor; the old answer is gone.
    editor.fill("""COPY (SELECT * FROM "web-logs") TO '/tmp/out.csv'""")
    page.get_by_role("button", name="Run query").click()
    alert = page.locator(".query-error").get_by_role("alert")
    expect(alert).to_contain_text(re.compile("SELECT", re.I))
    expect(page.get_by_text("Only one SELECT over this dataset's table may run")).to_be_visible()
    expect(results).to_have_count(0)
    shot(page, "query-error")

    # A syntax error names the problem too, and a fixed statement runs again.
    editor.fill('SELEC * FROM "web-logs"')
    page.get_by_role("button", name="Run query").click()
    expect(alert).to_contain_text(re.compile("syntax", re.I))
    editor.fill(BY_ACTION)
    page.get_by_role("button", name="Run query").click()
    expect(results.get_by_role("row")).to_have_count(3)
    expect(page.get_by_text("No chart: the result has no timestamp column.", exact=False)).to_be_visible()

    # A long statement can be cancelled; the page says so and can run again.
    editor.fill('SELECT count(*) AS n FROM "web-logs", range(20000000000)')
    page.get_by_role("button", name="Run query").click()
    expect(page.get_by_role("status").filter(has_text="Running the query")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("The query was cancelled.")).to_be_visible()
    expect(page.get_by_role("button", name="Run query")).to_be_enabled()
    editor.fill(BY_ACTION)
    editor.press("Control+Enter")
    expect(results.get_by_role("row")).to_have_count(3)

    # A narrow window stacks the panels; wide results scroll inside their frame.
    page.set_viewport_size({"width": 420, "height": 800})
    expect(results).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "query-narrow")


def test_query_explains_a_tenant_without_data(signed_in: Page, stack: Stack) -> None:
    page = signed_in
    with stack.client() as admin:
        admin.tenants.create("query-empty", display_name="Query Empty")
    page.reload()
    page.get_by_role("combobox", name="Tenant").select_option("query-empty")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Query").click()
    empty = page.get_by_role("heading", name="Nothing to query yet")
    expect(empty).to_be_visible()
    expect(page.get_by_role("link", name="Datasets").last).to_have_attribute("href", "#/datasets")
    shot(page, "query-empty")
