"""Where a job's SQL runs: one DuckDB connection per job that sees exactly one table, the Parquet
file being exported, and nothing else.

The connection is opened with external access disabled (no files, no network, no extension
installs), Python replacement scans off (a query cannot name a Python variable) and its
configuration locked, so ``read_parquet('/other/tenant/...')``, ``ATTACH`` or ``SET`` fail inside
DuckDB itself. The file is read by the connector (from the local or S3 store) into Arrow and
registered under the dataset's id; a job can therefore read only the files the connector chose,
which are always under its own tenant's dataset prefix.

Rows leave as one string column built by DuckDB (``to_json`` plus the destination's framing), so
serialisation is columnar; request bodies are slices of that column's data buffer, not per-row
Python work.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from agents.connector.spec import is_full_query

__all__ = [
    "HIVE_COLUMNS",
    "ROW_COLUMN",
    "Lines",
    "Sandbox",
    "SqlParts",
    "quote_ident",
    "sql_string",
    "table_from_parquet",
]

HIVE_COLUMNS = ("year", "month", "day", "hour")
_HIVE_RE = re.compile(r"(year|month|day|hour)=([^/]+)/")
#: The row's index in its file, added to every registered table.
ROW_COLUMN = "__floe_row"
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def table_from_parquet(key: str, data: bytes) -> tuple[pa.Table, tuple[str, ...]]:
    """The file's rows plus the Hive columns of its key (strings) it lacks; and those added."""
    table = pq.read_table(io.BytesIO(data))
    added = []
    for name, value in _HIVE_RE.findall(key):
        if name not in table.column_names:
            table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
            added.append(name)
    return table, tuple(added)


@dataclass(frozen=True)
class SqlParts:
    """What a destination's row expression may use, as SQL expressions: ``doc`` (the row as a JSON
    object), ``rn`` (the row's ordinal in the file), ``source`` (the file key, a string literal),
    ``time_ms`` (epoch milliseconds of the time column, or NULL), ``host`` (the row's host, or
    NULL)."""

    doc: str = "doc"
    rn: str = "rn"
    source: str = "''"
    time_ms: str = "t"
    host: str = "h"


class Lines:
    """One file's rows rendered by a destination's expression: each row a byte string ending with
    its separator, held in Arrow string chunks."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        if column.type not in (pa.string(), pa.large_string()):
            column = column.cast(pa.large_string())
        self._chunks = [c for c in column.chunks if len(c)]
        self.rows = sum(len(c) for c in self._chunks)

    def batches(self, size: int) -> Iterator[tuple[int, int, bytes]]:
        """``(first_row, rows, body)`` for consecutive runs of at most ``size`` rows."""
        first = 0
        for chunk in self._chunks:
            _, offsets_buf, data_buf = chunk.buffers()
            width = np.int64 if chunk.type == pa.large_string() else np.int32
            offsets = np.frombuffer(offsets_buf, dtype=width)[chunk.offset : chunk.offset + len(chunk) + 1]
            data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
            for start in range(0, len(chunk), size):
                end = min(start + size, len(chunk))
                yield first + start, end - start, bytes(data[int(offsets[start]) : int(offsets[end])])
            first += len(chunk)


class Sandbox:
    """One job's DuckDB connection. Not thread-safe: use it from one thread at a time."""

    def __init__(self, dataset_id: str, query: str, *, time_field: str = "timestamp") -> None:
        self._table = dataset_id
        self._query = query
        self._time_field = time_field
        self._con = duckdb.connect(
            ":memory:",
            config={
                "enable_external_access": False,
                "python_enable_replacements": False,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "threads": 2,
            },
        )
        self._con.execute("SET TimeZone = 'UTC'")
        self._con.execute("SET memory_limit = '1GB'")
        self._con.execute("SET lock_configuration = true")

    def close(self) -> None:
        self._con.close()

    def _inner(self, added: tuple[str, ...]) -> str:
        table = quote_ident(self._table)
        if self._query and is_full_query(self._query):
            return self._query
        # Partition columns the file did not have are there to filter on, not to export.
        exclude = f" EXCLUDE ({', '.join(map(quote_ident, added))})" if added else ""
        where = f" WHERE (\n{self._query}\n)" if self._query else ""
        # The condition is the job's own SQL by design; the sandbox, not quoting, confines it.
        return f"SELECT *{exclude} FROM {table}{where}"  # noqa: S608

    def render(self, key: str, table: pa.Table, added: tuple[str, ...], row_sql: str) -> Lines:
        """Run the job's query over ``table`` (the file ``key``) and frame each row with
        ``row_sql`` (an expression over the names of ``SqlParts``)."""
        table = table.append_column(ROW_COLUMN, pa.array(range(table.num_rows), pa.int64()))
        self._con.register(self._table, table)
        try:
            inner = self._inner(added)
            rel = self._con.sql(inner)
            columns = list(zip(rel.columns, (str(t) for t in rel.types), strict=True))
            fields = []
            for name, type_ in columns:
                if name == ROW_COLUMN:
                    continue
                ref = f"s.{quote_ident(name)}"
                if type_.startswith("TIMESTAMP"):
                    ref = f"strftime({ref}, '{_TS_FORMAT}')"
                fields.append(f"{sql_string(name)}: {ref}")
            names = {n for n, _ in columns}
            types = dict(columns)
            time_ms = "NULL"
            if self._time_field in names and types[self._time_field].startswith("TIMESTAMP"):
                time_ms = f"epoch_ms(s.{quote_ident(self._time_field)})"
            host = f"CAST(s.{quote_ident('host')} AS VARCHAR)" if "host" in names else "NULL"
            # The file's own row index when the query kept it (conditions always do): stable ids
            # even when the condition changes; otherwise the result's order.
            rn = f"s.{ROW_COLUMN}" if ROW_COLUMN in names else "(row_number() OVER ()) - 1"
            doc = f"to_json({{{', '.join(fields)}}})" if fields else "'{}'"
            sql = (
                f"SELECT {row_sql.replace('$source', sql_string(key))} AS line FROM ("  # noqa: S608 - see _inner
                f"SELECT {doc} AS doc, {rn} AS rn, {time_ms} AS t, {host} AS h "
                f"FROM ({inner}) s)"
            )
            result = self._con.sql(sql).to_arrow_table()
        finally:
            self._con.unregister(self._table)
        return Lines(result.column("line"))
