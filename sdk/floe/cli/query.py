"""``floe query "SELECT ..." --dataset t/d``: run SQL (or ``--question``) and print the rows.

Output: ``--format table`` (aligned columns, the default), ``csv`` (header line, RFC 4180) or
``json`` (one object per line). Notes and truncation are reported on stderr, so stdout holds
only the rows and can be piped.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from floe.client import Client

__all__ = ["add_query_command", "parse_time", "run_query_command"]

_RELATIVE_RE = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """``2024-05-01T10:00:00Z``, ``2024-05-01`` (UTC midnight) or ``15m``/``2h``/``7d`` ago."""
    m = _RELATIVE_RE.match(text.strip())
    if m:
        return (now or datetime.now(UTC)) - timedelta(seconds=float(m[1]) * _UNITS[m[2]])
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"{text!r} is not a time: use 2024-05-01T10:00:00Z, 2024-05-01 or 15m/2h/7d ago") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def add_query_command(sub: Any) -> None:
    p = sub.add_parser("query", help="run SQL over a dataset's Parquet (table named after the dataset id)")
    p.add_argument("sql", nargs="?", default="", help='one SELECT, e.g. "SELECT count(*) FROM fw"')
    p.add_argument("--dataset", required=True, help="TENANT/DATASET or tenants/T/datasets/D")
    p.add_argument("--question", default="", help="ask in plain language instead of SQL (needs an LLM provider)")
    p.add_argument("--start", default=None, help="from this time (ISO 8601, or 15m/2h/7d ago)")
    p.add_argument("--end", default=None, help="until this time, exclusive (ISO 8601, or 15m/2h/7d ago)")
    p.add_argument("--max-rows", type=int, default=0, help="stop after this many rows (default: the service limit)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table", dest="query_format")
    p.add_argument("--show-sql", action="store_true", help="print the SQL that ran (useful with --question)")
    p.set_defaults(run_with_client=run_query_command)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def _print_table(table: pa.Table) -> None:
    names = table.column_names
    rows = [[_text(v) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]
    print("  ".join(n.upper().ljust(w) for n, w in zip(names, widths, strict=True)).rstrip())
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def run_query_command(args: argparse.Namespace, client: Client) -> int:
    if not args.sql and not args.question:
        print('Give the SQL (floe query "SELECT ...") or --question.', file=sys.stderr)
        return 2
    result = client.query.execute(
        args.sql,
        dataset=args.dataset,
        question=args.question,
        start=parse_time(args.start) if args.start else None,
        end=parse_time(args.end) if args.end else None,
        max_rows=args.max_rows,
        timeout=max(args.timeout, 300.0),
    )
    if args.show_sql or args.question:
        print(f"-- {result.header.sql}", file=sys.stderr)
    for note in result.header.notes:
        print(f"Note: {note}", file=sys.stderr)
    table: pa.Table = result.table
    if args.query_format == "table":
        _print_table(table)
    elif args.query_format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(table.column_names)
        for row in table.to_pylist():
            writer.writerow([_text(v) for v in row.values()])
    else:
        for row in table.to_pylist():
            print(json.dumps(row, default=_text))
    s = result.summary
    elapsed = s.elapsed.seconds + s.elapsed.nanos / 1e9
    print(
        f"({s.row_count} rows, {s.files_scanned} files, {s.bytes_scanned} bytes scanned, {elapsed:.3f}s)",
        file=sys.stderr,
    )
    if s.truncated:
        print(f"Truncated: {s.truncated_reason}", file=sys.stderr)
    return 0
