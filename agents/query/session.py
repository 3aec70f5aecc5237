"""One query's DuckDB database: created for the query, locked down, given exactly one table.

Every query gets a fresh in-memory database, so nothing a query does (it can do nothing but
SELECT, see ``guard.py``) outlives it. Before any user SQL runs:

1. resource limits are set (``memory_limit``, ``threads``, a private spill directory) and
   extension auto-install/auto-load are turned off;
2. the dataset's table is created as a view over exactly the files left after pruning — natively
   with ``read_parquet`` for the local store, or over a ``pyarrow.dataset`` (S3) that DuckDB
   scans as an Arrow object, never touching a filesystem itself;
3. ``allowed_directories`` is narrowed to the dataset's own directory (local store), external
   access and Python replacement scans are turned off, and the configuration is locked, so even a
   statement that slipped past the guard could not read another file, change a setting or load
   an extension.

All methods block; the engine calls them on its worker threads, one at a time per session.
``interrupt`` is the exception: any thread may call it (the statement timeout does).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from agents.query.catalog import TimeRange
from agents.query.guard import quote_ident

__all__ = ["Limits", "Session"]

_PARTITIONS = ("year", "month", "day", "hour")
_TIMESTAMP_TYPES = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ", "TIMESTAMP": "TIMESTAMP"}


@dataclass(frozen=True)
class Limits:
    """What one query may use. ``max_time_range`` in seconds (0: unlimited)."""

    max_time_range: float
    max_rows: int
    allow_order_by: bool
    statement_timeout: float
    memory_limit: str
    threads: int
    max_concurrent: int


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _moment(value: datetime, sql_type: str) -> str:
    # Naive TIMESTAMP columns hold UTC wall time (the packer writes UTC); compare like with like.
    text = value.isoformat() if sql_type == "TIMESTAMPTZ" else value.replace(tzinfo=None).isoformat()
    return f"{_literal(text)}::{sql_type}"


class Session:
    """A fresh, locked-down DuckDB database holding one view named after the dataset."""

    def __init__(self, limits: Limits, spill_dir: Path) -> None:
        spill_dir.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(
            ":memory:",
            config={
                "threads": limits.threads,
                "memory_limit": limits.memory_limit,
                "temp_directory": str(spill_dir),
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "allow_community_extensions": False,
                "allow_persistent_secrets": False,
            },
        )
        self.notes: list[str] = []
        self.columns: list[tuple[str, str]] = []
        #: The source files' columns and DuckDB types, as read (cacheable per file set).
        self.types: dict[str, str] = {}

    def _lock(self, allowed_dir: str | None) -> None:
        # Order matters: allowed_directories cannot change once external access is off.
        if allowed_dir is not None:
            self.con.execute(f"SET allowed_directories=[{_literal(allowed_dir)}]")
        self.con.execute("SET allowed_paths=[]")
        self.con.execute("SET enable_external_access=false")
        self.con.execute("SET python_enable_replacements=false")
        self.con.execute("SET lock_configuration=true")

    def attach_local(
        self,
        table: str,
        directory: Path,
        paths: list[Path],
        when: TimeRange,
        *,
        empty: bool,
        types: dict[str, str] | None = None,
    ) -> None:
        """The view over local files (all under ``directory``); ``empty`` keeps columns, no rows.
        ``types`` (the files' columns, from an earlier query over the same files) saves reading
        the footers again."""
        self._lock(str(directory) + "/")
        files = ", ".join(_literal(str(p)) for p in paths)
        source = f"read_parquet([{files}], hive_partitioning=true, hive_types_autocast=false, union_by_name=true)"
        self._create_view(table, source, when, empty, types)

    def attach_arrow(self, table: str, dataset: object, when: TimeRange, empty: bool) -> None:
        """The view over a ``pyarrow.dataset.Dataset`` (S3 files)."""
        hidden = f"__floe_source_{secrets.token_hex(8)}"  # the guard only lets the view's name through
        self.con.register(hidden, dataset)
        self._lock(None)
        self._create_view(table, quote_ident(hidden), when, empty)

    def _create_view(
        self, table: str, source: str, when: TimeRange, empty: bool, types: dict[str, str] | None = None
    ) -> None:
        # ``source`` and every name below are built here from store keys and quoted: no user text.
        if types is None:
            described = self.con.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()  # noqa: S608
            types = {str(row[0]): str(row[1]) for row in described}
        self.types = types
        conditions = ["false"] if empty else []
        sql_type = _TIMESTAMP_TYPES.get(types.get("timestamp", ""))
        if (when.start or when.end) and not empty:
            if sql_type is None:
                self.notes.append(
                    "The dataset has no timestamp column: the time range selects whole hour partitions only."
                )
            else:
                if when.start is not None:
                    conditions.append(f'"timestamp" >= {_moment(when.start, sql_type)}')
                if when.end is not None:
                    conditions.append(f'"timestamp" < {_moment(when.end, sql_type)}')
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        # Data columns first, then the Hive partitions, whatever order the files put them in.
        names = [n for n in types if n not in _PARTITIONS] + [n for n in _PARTITIONS if n in types]
        select = ", ".join(quote_ident(n) for n in names)
        self.con.execute(f"CREATE VIEW {quote_ident(table)} AS SELECT {select} FROM {source}{where}")  # noqa: S608
        self.columns = [(n, types[n]) for n in names]

    def start(self, sql: str, batch_rows: int) -> tuple[list[tuple[str, str]], pa.RecordBatchReader]:
        """Run ``sql`` (already checked); its columns and a streaming reader of its rows."""
        rel = self.con.sql(sql)
        columns = [(str(n), str(t)) for n, t in zip(rel.columns, rel.types, strict=True)]
        return columns, rel.to_arrow_reader(batch_rows)

    def interrupt(self) -> None:
        self.con.interrupt()

    def close(self) -> None:
        self.con.close()
