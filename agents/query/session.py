"""A query's DuckDB database: locked down to one dataset, given exactly one table, left clean.

A database serves one dataset and one query at a time. Before any user SQL runs on it:

1. resource limits are set (``memory_limit``, ``threads``, a private spill directory) and
   extension auto-install/auto-load are turned off;
2. ``allowed_directories`` is narrowed to the dataset's own directory (local store; nothing at all
   for S3, whose files pyarrow reads), external access and Python replacement scans are turned
   off, and the configuration is locked, so even a statement that slipped past the guard could
   not read another file, change a setting or load an extension.

The dataset's table is a view over exactly the files left after pruning — natively with
``read_parquet`` for the local store, or over a ``pyarrow.dataset`` (S3) that DuckDB scans as an
Arrow object. Its time range comes from two variables of the query's connection, so for the local
store the view is kept in the database and reused while the file set stays the same (creating it
reads every file's footer); for S3 it is a temporary view of the query's connection.

Each query then runs on its own connection (``Session``) inside a transaction; when it ends the
transaction is rolled back and the connection closed.

Creating a DuckDB database costs ~14 ms of CPU (more than a small query), so the engine reuses a
database for the next query on the same dataset, and only when it is provably as it was before
the query: the only statement the guard lets through is one SELECT (``guard.py``); settings
cannot change (``lock_configuration``); everything a statement could do to the database (views,
macros, tables, sequences, secrets, ATTACH) happens inside the query's transaction and is rolled
back — if that rollback does not find the transaction still open, the database is closed, never
reused; temporary objects, variables and prepared statements belong to the closed connection; and
a last check compares the attached databases and secrets with their state after the lock-down.
A database is never shared between datasets, so nothing can pass from one tenant's queries to
another's even in principle.

All methods block; the engine calls them on its worker threads, one at a time per session.
``interrupt`` is the exception: any thread may call it (the statement timeout does).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from agents.query.catalog import TimeRange
from agents.query.guard import quote_ident

__all__ = ["Database", "DatabasePool", "Limits", "Session"]

log = logging.getLogger(__name__)

_PARTITIONS = ("year", "month", "day", "hour")
#: Connection variables holding the query's time range (unset: the view has no rows).
_START, _END = "floe_range_start", "floe_range_end"
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


class Database:
    """A DuckDB database locked down to one dataset's files; runs one ``Session`` at a time."""

    #: What a query could change outside its transaction; compared after every query. Prepared
    #: once on the database's own connection (no session can reach it): binding it again after
    #: every query cost ~0.4 ms of CPU, more than running it.
    _STATE_SQL = "SELECT (SELECT count(*) FROM duckdb_databases()), (SELECT count(*) FROM duckdb_secrets())"
    _STATE = "floe_state"

    def __init__(self, limits: Limits, spill_dir: Path) -> None:
        spill_dir.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(
            ":memory:",
            config={
                "threads": limits.threads,
                "memory_limit": limits.memory_limit,
                # Its own subdirectory: DuckDB names spill files alike in every database.
                "temp_directory": str(spill_dir / f"db-{secrets.token_hex(6)}"),
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "allow_community_extensions": False,
                "allow_persistent_secrets": False,
            },
        )
        #: The directory the database may read (``""``: none; None: not locked yet).
        self.allowed: str | None = None
        self.idle_since = time.monotonic()
        self._state: tuple[object, ...] = ()
        #: The dataset's view as last created: (what it reads, columns, types, notes).
        self.view: tuple[tuple[object, ...], list[tuple[str, str]], dict[str, str], tuple[str, ...]] | None = None
        #: Cleared when a query may have left anything behind: the database is then closed.
        self.reusable = True

    def lock(self, allowed_dir: str | None) -> None:
        """Lock down for ``allowed_dir`` (None: no files); a locked database stays as it was locked."""
        wanted = allowed_dir or ""
        if self.allowed is not None:
            if self.allowed != wanted:
                raise ValueError(f"database is locked to {self.allowed!r}, not {wanted!r}")
            return
        # Order matters: allowed_directories cannot change once external access is off.
        if allowed_dir is not None:
            self.con.execute(f"SET allowed_directories=[{_literal(allowed_dir)}]")
        self.con.execute("SET allowed_paths=[]")
        # Footers are read once per file, not on every query: the packer writes each file once
        # under a new name, and DuckDB reads a footer again if its file changed anyway.
        self.con.execute("SET GLOBAL parquet_metadata_cache=true")
        self.con.execute("SET enable_external_access=false")
        self.con.execute("SET GLOBAL python_enable_replacements=false")
        self.con.execute("SET lock_configuration=true")
        self.con.execute(f"PREPARE {self._STATE} AS {self._STATE_SQL}")
        self.allowed = wanted
        self._state = self._current_state()

    def _current_state(self) -> tuple[object, ...]:
        row = self.con.execute(f"EXECUTE {self._STATE}").fetchone()
        return tuple(row or ())

    def clean(self) -> bool:
        """Whether the database can serve another query (call with no session open)."""
        if not self.reusable or self.allowed is None:
            return False
        try:
            return self._current_state() == self._state
        except duckdb.Error:
            return False

    def close(self) -> None:
        self.reusable = False
        self.con.close()


class Session:
    """One query's connection to a locked-down database, holding one temporary view named after
    the dataset. On a shared ``database`` everything runs inside a transaction that ``close``
    rolls back; without one the session gets a fresh database of its own, closed with it."""

    def __init__(self, limits: Limits, spill_dir: Path, database: Database | None = None) -> None:
        self._own = database is None
        self.database = database or Database(limits, spill_dir)
        self.con = self.database.con.cursor()
        self._open = False
        self.notes: list[str] = []
        self.columns: list[tuple[str, str]] = []
        #: The source files' columns and DuckDB types, as read (cacheable per file set).
        self.types: dict[str, str] = {}

    def _begin(self) -> None:
        if not self._own:  # a database of its own is closed with the session: nothing to undo
            self.con.execute("BEGIN TRANSACTION")
            self._open = True

    def attach_local(
        self,
        table: str,
        directory: Path,
        paths: list[Path],
        when: TimeRange,
        *,
        empty: bool,
        types: dict[str, str] | None = None,
        by_name: bool = True,
    ) -> None:
        """The view over local files (all under ``directory``); ``empty`` keeps columns, no rows.
        ``types`` (the files' columns, from an earlier query over the same files) saves reading
        the footers again. ``by_name`` matches columns across files by name (needed when their
        schemas differ; off, DuckDB takes the first file's schema for all).
        The view is kept in the database: the dataset's next query over the
        same files uses it as it is, whatever its time range (creating it reads every footer)."""
        self.database.lock(str(directory) + "/")
        files = ", ".join(_literal(str(p)) for p in paths)
        union = ", union_by_name=true" if by_name else ""
        source = f"read_parquet([{files}], hive_partitioning=true, hive_types_autocast=false{union})"
        key = (table, source, when.start is not None, when.end is not None, empty)
        kept = self.database.view
        if kept is not None and kept[0] == key:
            _, self.columns, self.types, notes = kept
            self.notes = list(notes)
        else:
            self.database.view = None
            # Committed before the query's transaction begins: part of the database's clean state.
            self.con.execute(self._view_sql(table, source, when, empty, types, temporary=False))
            self.database.view = (key, self.columns, self.types, tuple(self.notes))
        self._bind_range(when, empty)
        self._begin()

    def attach_arrow(self, table: str, dataset: object, when: TimeRange, empty: bool) -> None:
        """The view over a ``pyarrow.dataset.Dataset`` (S3 files), on this connection only."""
        self.database.lock(None)
        hidden = f"__floe_source_{secrets.token_hex(8)}"  # the guard only lets the view's name through
        self.con.register(hidden, dataset)
        self.con.execute(self._view_sql(table, quote_ident(hidden), when, empty, None, temporary=True))
        self._bind_range(when, empty)
        self._begin()

    def _bind_range(self, when: TimeRange, empty: bool) -> None:
        """This connection's time range, read by the view (``getvariable`` is folded into a
        constant when a query is bound, so the Parquet scan prunes row groups with it)."""
        sql_type = _TIMESTAMP_TYPES.get(self.types.get("timestamp", ""))
        if sql_type is None or empty:
            return
        for bound, name in ((when.start, _START), (when.end, _END)):
            if bound is not None:
                self.con.execute(f"SET VARIABLE {name} = {_moment(bound, sql_type)}")

    def _view_sql(
        self, table: str, source: str, when: TimeRange, empty: bool, types: dict[str, str] | None, *, temporary: bool
    ) -> str:
        """The statement creating the dataset's view (sets ``columns``, ``types`` and ``notes``)."""
        # ``source`` and every name below are built here from store keys and quoted: no user text.
        if types is None:
            described = self.con.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()  # noqa: S608
            types = {str(row[0]): str(row[1]) for row in described}
        self.types = types
        self.notes = []
        conditions = ["false"] if empty else []
        sql_type = _TIMESTAMP_TYPES.get(types.get("timestamp", ""))
        if (when.start or when.end) and not empty:
            if sql_type is None:
                self.notes.append(
                    "The dataset has no timestamp column: the time range selects whole hour partitions only."
                )
            else:
                # The bounds are the connection's (``_bind_range``): the view outlives one range.
                if when.start is not None:
                    conditions.append(f"\"timestamp\" >= getvariable('{_START}')")
                if when.end is not None:
                    conditions.append(f"\"timestamp\" < getvariable('{_END}')")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        # Data columns first, then the Hive partitions, whatever order the files put them in.
        names = [n for n in types if n not in _PARTITIONS] + [n for n in _PARTITIONS if n in types]
        select = ", ".join(quote_ident(n) for n in names)
        self.columns = [(n, types[n]) for n in names]
        kind = "TEMPORARY VIEW" if temporary else "OR REPLACE VIEW"
        return f"CREATE {kind} {quote_ident(table)} AS SELECT {select} FROM {source}{where}"  # noqa: S608

    def start(self, sql: str, batch_rows: int) -> tuple[list[tuple[str, str]], pa.RecordBatchReader]:
        """Run ``sql`` (already checked); its columns and a streaming reader of its rows."""
        rel = self.con.sql(sql)
        columns = [(str(n), str(t)) for n, t in zip(rel.columns, rel.types, strict=True)]
        return columns, rel.to_arrow_reader(batch_rows)

    def interrupt(self) -> None:
        """Stop the running statement, if any (any thread; a no-op once the session is closed)."""
        with contextlib.suppress(duckdb.Error):
            self.con.interrupt()

    def close(self) -> None:
        """Undo whatever the query did and close its connection; the database is left reusable
        only if the query's transaction was still open to roll back."""
        rolled_back = False
        if self._open:
            try:
                self.con.execute("ROLLBACK")
                rolled_back = True
            except duckdb.Error:
                pass
        self.con.close()
        self.database.idle_since = time.monotonic()
        if self._own or not rolled_back:
            self.database.reusable = False
        if self._own:
            self.database.close()


class DatabasePool:
    """Databases kept between queries: idle ones per dataset (at most ``idle_max`` in all, each
    closed after ``idle_seconds`` unused) and ``spares`` fresh, not yet locked ones, so a query on
    a dataset without an idle database does not wait for a new one either. Thread-safe."""

    def __init__(
        self, limits: Limits, spill_dir: Path, *, idle_max: int, spares: int, idle_seconds: float = 300.0
    ) -> None:
        self.limits = limits
        self.spill_dir = spill_dir
        self.idle_max = idle_max
        self.spares = spares
        self.idle_seconds = idle_seconds
        self._idle: OrderedDict[str, list[Database]] = OrderedDict()
        self._spare: list[Database] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self, key: str) -> tuple[Database, bool]:
        """A database for dataset ``key`` (locked already if it served the dataset before) and
        whether it was a new one (the caller then makes a spare with ``make_spare``)."""
        with self._lock:
            stale = self._expire()
            idle = self._idle.get(key)
            found = idle.pop() if idle else None
            if idle is not None and not idle:
                del self._idle[key]
            if found is None and self._spare:
                found = self._spare.pop()
            fresh = found is None or found.allowed is None
        for db in stale:
            db.close()
        if found is None:
            found = Database(self.limits, self.spill_dir)
        return found, fresh

    def give_back(self, key: str, db: Database) -> None:
        """Keep ``db`` for the dataset's next query if it is provably clean; otherwise close it."""
        if not db.clean():
            if db.reusable and db.allowed is not None:
                log.error("A query changed its database; it is closed, not reused", extra={"dataset": key})
            db.close()
            return
        with self._lock:
            if self._closed:
                evicted = [db]
            else:
                self._idle.setdefault(key, []).append(db)
                self._idle.move_to_end(key)
                evicted = self._expire()
                while sum(len(v) for v in self._idle.values()) > self.idle_max:
                    oldest, dbs = next(iter(self._idle.items()))
                    evicted.append(dbs.pop(0))
                    if not dbs:
                        del self._idle[oldest]
        for old in evicted:
            old.close()

    def make_spare(self) -> None:
        with self._lock:
            if self._closed or len(self._spare) >= self.spares:
                return
        db = Database(self.limits, self.spill_dir)
        with self._lock:
            if not self._closed and len(self._spare) < self.spares:
                self._spare.append(db)
                return
        db.close()

    def _expire(self) -> list[Database]:
        """Idle databases unused for ``idle_seconds``, taken out of the pool (lock held)."""
        cutoff = time.monotonic() - self.idle_seconds
        out = []
        for key in list(self._idle):
            dbs = self._idle[key]
            out += [d for d in dbs if d.idle_since < cutoff]
            dbs[:] = [d for d in dbs if d.idle_since >= cutoff]
            if not dbs:
                del self._idle[key]
        return out

    def close(self) -> None:
        with self._lock:
            self._closed = True
            dbs = [d for v in self._idle.values() for d in v] + self._spare
            self._idle.clear()
            self._spare.clear()
        for db in dbs:
            db.close()
