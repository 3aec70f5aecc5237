"""Runs queries: files from the catalog, a locked-down ``Session``, the guard, the limits, and the
stream of responses (header, Arrow IPC or JSON chunks, summary).

DuckDB work runs on the engine's worker threads (DuckDB releases the GIL), at most
``max_concurrent`` queries at once; the event loop only moves finished batches to gRPC. The
statement timeout is a timer that calls DuckDB's ``interrupt()``; the memory limit is DuckDB's
own ``memory_limit``. Results past ``max_rows`` are cut and the summary says so (truncated, with
the reason) rather than failing the query.

What every query would otherwise pay before DuckDB starts (~15-20 ms) is cached or avoided: a
dataset's locked-down database and its view are reused when provably clean (``session.py``), a
dataset's file listing is kept for ``_LISTING_TTL`` seconds (packers only add files; a listing
found stale by a failed read is dropped at once), the files' column types are kept per file set,
and the guard's verdict is kept per (SQL, table, ORDER BY limit) — it depends on nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import grpc
import pyarrow as pa
import pyarrow.parquet as pq
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from agents.packer.schema import unified_schema
from agents.query.catalog import ParquetFile, TimeRange, list_files, prune, resolve_range
from agents.query.errors import QueryError
from agents.query.guard import CheckedSQL, check_sql
from agents.query.llm import QuestionWriter
from agents.query.session import DatabasePool, Limits, Session
from agents.runtime.health import Component
from agents.runtime.layout import parquet_prefix
from agents.runtime.objectstore import LocalStore, ObjectStore, S3Store
from floe.v1 import query_pb2

__all__ = ["Engine", "QueryJob"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_BATCH_ROWS = 64 * 1024
#: Arrow chunks are cut to about this size, well under gRPC's default 4 MiB message limit.
_CHUNK_BYTES = 1 << 20
_JSON_CHUNK_ROWS = 500
#: Fresh databases kept ready for queries on datasets with no idle database.
_SPARES = 1
#: Idle databases kept (besides ``max_concurrent``), and for how long unused.
_IDLE_EXTRA = 2
_IDLE_SECONDS = 300.0
#: File sets whose column types are remembered; guard verdicts remembered.
_TYPE_CACHE = 1024
#: Files whose footer schema is remembered (a few kB each; files never change under one name).
_FOOTER_CACHE = 50_000
_CHECK_CACHE = 1024
#: How long a dataset's file listing is reused (seconds). Packers only add files, so a listing
#: this old misses at most the newest few seconds of data.
_LISTING_TTL = 2.0
_LISTING_CACHE = 1024
_MAX_SAFE_INT = 2**53
_PARTITION_SCHEMA = pa.schema([(n, pa.string()) for n in ("year", "month", "day", "hour")])


@dataclass(frozen=True)
class QueryJob:
    """One ExecuteQuery call, validated by the server."""

    tenant: str
    dataset: str
    sql: str
    question: str
    start: datetime | None
    end: datetime | None
    max_rows: int
    json: bool
    #: The client takes the whole answer as one ``result`` response when it fits in one chunk.
    single: bool = False


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return str(value)


def json_rows(batch: pa.RecordBatch) -> list[struct_pb2.Struct]:
    """One Struct per row (JSON output is for small results: grpcurl and the dashboard)."""
    out = []
    for row in batch.to_pylist():
        s = struct_pb2.Struct()
        s.update({k: _json_value(v) for k, v in row.items()})
        out.append(s)
    return out


def arrow_chunks(batch: pa.RecordBatch) -> list[bytes]:
    """``batch`` as self-contained Arrow IPC streams of about ``_CHUNK_BYTES`` each."""
    if batch.num_rows == 0:
        return []
    per_row = max(1, batch.nbytes // batch.num_rows)
    step = max(1, _CHUNK_BYTES // per_row)
    out = []
    for offset in range(0, batch.num_rows, step):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch.slice(offset, step))
        out.append(sink.getvalue().to_pybytes())
    return out


def _chunks(batch: pa.RecordBatch, json: bool) -> Iterator[query_pb2.ResultChunk]:
    """``batch`` as result chunks: Arrow IPC streams of about ``_CHUNK_BYTES``, or JSON rows."""
    if json:
        for offset in range(0, batch.num_rows, _JSON_CHUNK_ROWS):
            yield query_pb2.ResultChunk(rows=json_rows(batch.slice(offset, _JSON_CHUNK_ROWS)))
    else:
        for data in arrow_chunks(batch):
            yield query_pb2.ResultChunk(arrow_ipc=data)


def _duckdb_error(exc: duckdb.Error, timed_out: bool, limits: Limits) -> QueryError:
    """A DuckDB failure as a status a person can act on."""
    code = grpc.StatusCode
    if isinstance(exc, duckdb.InterruptException) and timed_out:
        return QueryError(
            code.RESOURCE_EXHAUSTED,
            f"The query ran longer than the statement_timeout limit of {limits.statement_timeout:g}s and was "
            "stopped; narrow the time range or simplify the query.",
            "STATEMENT_TIMEOUT",
            {"limit": "statement_timeout"},
        )
    if isinstance(exc, duckdb.OutOfMemoryException):
        return QueryError(
            code.RESOURCE_EXHAUSTED,
            f"The query needs more than the memory_limit of {limits.memory_limit}; aggregate more or narrow the "
            "time range.",
            "MEMORY_LIMIT",
            {"limit": "memory_limit"},
        )
    if isinstance(exc, duckdb.PermissionException):
        return QueryError(code.PERMISSION_DENIED, f"Refused by the query sandbox: {exc}", "QUERY_NOT_ALLOWED")
    if isinstance(exc, duckdb.IOException | duckdb.HTTPException):
        return QueryError(code.UNAVAILABLE, f"Reading the dataset's files failed; retry: {exc}", "STORE_UNAVAILABLE")
    if isinstance(exc, duckdb.InterruptException):
        return QueryError(code.CANCELLED, "The query was cancelled.", "CANCELLED")
    return QueryError(code.INVALID_ARGUMENT, f"sql: {exc}", "SQL_ERROR", {"field": "sql"})


#: The checked statement, its columns, its reader and the first batches read (None: no more).
_Prepared = tuple[CheckedSQL, list[tuple[str, str]], pa.RecordBatchReader, list[pa.RecordBatch | None]]


class _Timeout:
    """One query's statement timeout and cancellation: interrupts the query's session once it
    has one; a statement not started yet checks ``stopped`` first."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.fired = False
        #: The caller went away while a worker was busy with the query (see ``Engine._work``).
        self.abandoned = False

    @property
    def stopped(self) -> bool:
        return self.fired or self.abandoned

    def expire(self) -> None:
        self.fired = True
        if self.session is not None:
            self.session.interrupt()  # thread-safe; stops the statement on its worker thread

    def abandon(self) -> None:
        self.abandoned = True
        if self.session is not None:
            self.session.interrupt()


class Engine:
    """Answers queries over one Parquet store. ``close`` when done."""

    def __init__(
        self,
        store: ObjectStore,
        limits: Limits,
        spill_dir: Path,
        writer: QuestionWriter | None,
        health: Component | None = None,
    ) -> None:
        self.store = store
        self.limits = limits
        self.writer = writer
        self._spill_dir = spill_dir
        self._slots = asyncio.Semaphore(limits.max_concurrent)
        self._pool = ThreadPoolExecutor(max_workers=limits.max_concurrent + 1, thread_name_prefix="query")
        self._footers: dict[tuple[str, str], pa.Schema] = {}
        #: Per file set: its columns and types, and whether the files' schemas differ (the view
        #: then matches columns by name, which costs ~1 ms per query even with footers cached).
        self._types: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], bool]] = {}
        self._checked: dict[tuple[str, str, bool], CheckedSQL] = {}
        self._listings: dict[tuple[str, str], tuple[float, list[ParquetFile]]] = {}
        self._databases = DatabasePool(
            limits, spill_dir, idle_max=limits.max_concurrent + _IDLE_EXTRA, spares=_SPARES, idle_seconds=_IDLE_SECONDS
        )
        self._s3fs: Any = None
        #: Queries (events_in), rows sent (events_out), Parquet bytes read (bytes_in), failures
        #: (errors) and refusals by reason (dropped), for the agent's health report.
        self.health = health or Component("query", "query")

    def _failed(self, err: QueryError) -> QueryError:
        if err.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT):
            self.health.drop(err.reason.lower())
        else:
            self.health.errors += 1
        return err

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._databases.close()

    async def _work(
        self, tenant: str, dataset: str, stop: _Timeout, held: Session | None, fn: Callable[..., T], *args: Any
    ) -> T:
        """``fn(*args)`` on a worker thread. A worker cannot be stopped, only its statement: when
        the caller goes away meanwhile, the statement is interrupted and, once the worker is done,
        the session it worked on is finished — ``held``, or the one it returned (a worker that
        fails on a session it opened finishes that itself). Until then nothing else touches it."""
        future = self._pool.submit(fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            stop.abandon()
            future.add_done_callback(functools.partial(self._reclaim, tenant, dataset, held))
            raise

    def _reclaim(self, tenant: str, dataset: str, held: Session | None, future: Future[Any]) -> None:
        session = held
        if session is None and not future.cancelled() and future.exception() is None:
            result = future.result()
            session = result if isinstance(result, Session) else result[0]
        if session is not None:
            with contextlib.suppress(RuntimeError):  # the engine closed meanwhile: its databases are gone
                self._pool.submit(self._finish, tenant, dataset, session)

    # -- files -------------------------------------------------------------------------------

    async def files(self, tenant: str, dataset: str) -> list[ParquetFile]:
        """The dataset's files, listed at most ``_LISTING_TTL`` seconds ago (an empty listing is
        never reused: the first files show up at once)."""
        key = (tenant, dataset)
        now = time.monotonic()
        cached = self._listings.get(key)
        if cached is not None and now - cached[0] < _LISTING_TTL:
            return cached[1]
        files = await list_files(self.store, tenant, dataset)
        if files:
            if len(self._listings) >= _LISTING_CACHE:
                self._listings.clear()
            self._listings[key] = (now, files)
        else:
            self._listings.pop(key, None)
        return files

    def _filesystem(self) -> Any:
        """pyarrow's S3 filesystem for the S3 store (credentials from the same environment chain)."""
        if self._s3fs is None:
            from pyarrow import fs

            assert isinstance(self.store, S3Store)
            s = self.store.settings
            kwargs: dict[str, Any] = {"region": s.region}
            if s.endpoint_url:
                scheme, _, host = s.endpoint_url.partition("://")
                kwargs |= {"endpoint_override": host.rstrip("/"), "scheme": scheme}
            if s.access_key_id:
                kwargs |= {"access_key": s.access_key_id, "secret_key": s.secret_access_key}
            self._s3fs = fs.S3FileSystem(**kwargs)
        return self._s3fs

    def _s3_path(self, key: str) -> str:
        assert isinstance(self.store, S3Store)
        prefix = self.store.settings.prefix.strip("/")
        return f"{self.store.settings.bucket}/{prefix + '/' if prefix else ''}{key}"

    def _arrow_dataset(self, tenant: str, dataset: str, files: list[ParquetFile]) -> Any:
        """A pyarrow dataset over S3 files, its schema the union of their footers (cached)."""
        import pyarrow.dataset as ds

        fs = self._filesystem()
        schemas = [self._footer(f, self._s3_path(f.key), fs) for f in files]
        data = unified_schema(schemas)
        schema = pa.schema([*[x for x in data if x.name not in _PARTITION_SCHEMA.names], *_PARTITION_SCHEMA])
        base = self._s3_path(parquet_prefix(tenant, dataset)).rstrip("/")
        return ds.dataset(
            [self._s3_path(f.key) for f in files],
            schema=schema,
            format="parquet",
            filesystem=fs,
            partitioning=ds.partitioning(_PARTITION_SCHEMA, flavor="hive"),
            partition_base_dir=base,
        )

    def _footer(self, f: ParquetFile, path: str | Path, filesystem: Any = None) -> pa.Schema:
        """``f``'s schema as in its footer (read from ``path`` the first time)."""
        key = (f.key, f.etag)
        schema = self._footers.get(key)
        if schema is None:
            if len(self._footers) >= _FOOTER_CACHE:
                self._footers.clear()
            schema = self._footers[key] = pq.read_schema(path, filesystem=filesystem)
        return schema

    def _local_types(self, files: list[ParquetFile]) -> tuple[dict[str, str] | None, bool]:
        """The file set's remembered types (None: not yet known) and whether its files'
        schemas differ."""
        known = self._types.get(tuple((f.key, f.etag) for f in files))
        if known is not None:
            return known
        assert isinstance(self.store, LocalStore)
        try:
            schemas = [self._footer(f, self.store.root / f.key) for f in files]
        except (OSError, pa.ArrowException):
            return None, True  # DuckDB reads it next and says what is wrong in its own words
        return None, any(not s.equals(schemas[0]) for s in schemas[1:])

    def _open(
        self, tenant: str, dataset: str, files: list[ParquetFile], chosen: list[ParquetFile], when: TimeRange
    ) -> Session:
        """A session with the dataset's view; ``chosen`` empty gives the columns and no rows. Its
        database is the dataset's idle one when there is one, else a spare made ahead of time (a
        new DuckDB database costs ~14 ms of CPU, more than a small query)."""
        database, fresh = self._databases.take(f"{tenant}/{dataset}")
        if fresh:
            self._pool.submit(self._databases.make_spare)
        try:
            session = Session(self.limits, self._spill_dir, database)
        except BaseException:
            database.close()
            raise
        try:
            use = chosen or files[-1:]
            if isinstance(self.store, LocalStore):
                directory = self.store.root / parquet_prefix(tenant, dataset)
                paths = [self.store.root / f.key for f in use]
                types, mixed = self._local_types(use)
                session.attach_local(dataset, directory, paths, when, empty=not chosen, types=types, by_name=mixed)
                if types is None:
                    if len(self._types) >= _TYPE_CACHE:
                        self._types.clear()
                    self._types[tuple((f.key, f.etag) for f in use)] = (session.types, mixed)
            else:
                session.attach_arrow(dataset, self._arrow_dataset(tenant, dataset, use), when, empty=not chosen)
        except BaseException:
            session.close()
            database.close()
            raise
        return session

    def _finish(self, tenant: str, dataset: str, session: Session) -> None:
        """Roll the query back and keep its database for the dataset's next query if clean."""
        try:
            session.close()
        finally:
            self._databases.give_back(f"{tenant}/{dataset}", session.database)

    def _check(self, session: Session, sql: str, table: str) -> CheckedSQL:
        """The guard's verdict (remembered: it depends only on the text, the table and the limit)."""
        key = (sql, table, self.limits.allow_order_by)
        checked = self._checked.get(key)
        if checked is None:
            checked = check_sql(session.con, sql, table, allow_order_by=self.limits.allow_order_by)
            if len(self._checked) >= _CHECK_CACHE:
                self._checked.clear()
            self._checked[key] = checked
        return checked

    def _prepare(self, session: Session, sql: str, table: str, timeout: _Timeout) -> _Prepared:
        """Check ``sql``, start it and read its first batch — and the end of the result too when
        that batch is short (the last one), saving small results a trip to a worker thread."""
        checked = self._check(session, sql, table)
        if timeout.stopped:  # an interrupt before the statement starts would be lost
            raise duckdb.InterruptException("statement timeout or caller gone")
        columns, reader = session.start(checked.sql, _BATCH_ROWS)
        first = _next_batch(reader)
        if first is None or first.num_rows >= _BATCH_ROWS:
            return checked, columns, reader, [first]
        return checked, columns, reader, [first, _next_batch(reader)]

    def _open_and_prepare(
        self, job: QueryJob, files: list[ParquetFile], chosen: list[ParquetFile], when: TimeRange, timeout: _Timeout
    ) -> tuple[Session, _Prepared]:
        """``_open`` and ``_prepare`` in one go (one trip to a worker thread)."""
        session = self._open(job.tenant, job.dataset, files, chosen, when)
        timeout.session = session
        try:
            return session, self._prepare(session, job.sql, job.dataset, timeout)
        except BaseException:
            timeout.session = None
            self._finish(job.tenant, job.dataset, session)
            raise

    async def _files_or_fail(self, tenant: str, dataset: str) -> list[ParquetFile]:
        files = await self.files(tenant, dataset)
        if not files:
            raise QueryError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"tenants/{tenant}/datasets/{dataset} has no Parquet files yet; data becomes queryable once a "
                "packer writes it.",
                "NO_DATA",
            )
        return files

    # -- calls -------------------------------------------------------------------------------

    async def schema(self, tenant: str, dataset: str) -> list[tuple[str, str]]:
        files = await self._files_or_fail(tenant, dataset)
        async with self._slots:
            session = await self._work(
                tenant, dataset, _Timeout(), None, self._open, tenant, dataset, files, files, TimeRange(None, None)
            )
            self._pool.submit(self._finish, tenant, dataset, session)
        return session.columns

    async def execute(self, job: QueryJob) -> AsyncGenerator[query_pb2.ExecuteQueryResponse, None]:
        """The responses of one query; raises ``QueryError`` (before or during the stream)."""
        started = time.perf_counter()
        when = resolve_range(job.start, job.end, datetime.now(UTC), self.limits.max_time_range)
        files = await self._files_or_fail(job.tenant, job.dataset)
        chosen = prune(files, when)
        max_rows = min(job.max_rows, self.limits.max_rows) if job.max_rows > 0 else self.limits.max_rows
        self.health.events_in += 1
        async with self._slots:
            timeout = _Timeout()
            timer = asyncio.get_running_loop().call_later(self.limits.statement_timeout, timeout.expire)
            session: Session | None = None
            work = functools.partial(self._work, job.tenant, job.dataset, timeout)
            try:
                if job.question:
                    assert self.writer is not None
                    opened = await work(None, self._open, job.tenant, job.dataset, files, chosen, when)
                    session = timeout.session = opened
                    sql = await self.writer.write_sql(job.question, job.dataset, opened.columns)
                    prepared = await work(opened, self._prepare, opened, sql, job.dataset, timeout)
                else:
                    opened, prepared = await work(None, self._open_and_prepare, job, files, chosen, when, timeout)
                    session = opened
                checked, columns, reader, ahead = prepared
                batch = ahead.pop(0)
                header = query_pb2.QueryHeader(
                    columns=[query_pb2.Column(name=n, type=t) for n, t in columns],
                    sql=checked.sql,
                    start_time=_ts(when.start),
                    end_time=_ts(when.end),
                    files=len(chosen),
                    arrow_schema=reader.schema.serialize().to_pybytes(),
                    notes=opened.notes,
                )
                # A single-response call holds the header and the first chunk back until a second
                # chunk shows the result is larger than one: most answers are, and then travel as
                # one message through both gRPC hops instead of three.
                held: list[query_pb2.ResultChunk] | None = [] if job.single else None
                if held is None:
                    yield query_pb2.ExecuteQueryResponse(header=header)
                rows = 0
                truncated = False
                while batch is not None:
                    if rows >= max_rows:
                        # Read one batch past the limit so "truncated" is only said when rows were left out.
                        truncated = batch.num_rows > 0
                        if truncated:
                            break
                    else:
                        if rows + batch.num_rows > max_rows:
                            batch = batch.slice(0, max_rows - rows)
                            truncated = True
                        rows += batch.num_rows
                        for chunk in _chunks(batch, job.json):
                            if held is not None:
                                if not held:
                                    held.append(chunk)
                                    continue
                                yield query_pb2.ExecuteQueryResponse(header=header)
                                yield query_pb2.ExecuteQueryResponse(chunk=held[0])
                                held = None
                            yield query_pb2.ExecuteQueryResponse(chunk=chunk)
                        if truncated:
                            break
                    batch = ahead.pop(0) if ahead else await work(session, _next_batch, reader)
                elapsed = duration_pb2.Duration()
                elapsed.FromNanoseconds(int((time.perf_counter() - started) * 1e9))
                scanned = sum(f.size for f in chosen)
                self.health.events_out += rows
                self.health.bytes_in += scanned
                self.health.last_flush = time.time()
                reason = ""
                if truncated:
                    which = "the request's max_rows" if max_rows < self.limits.max_rows else "the max_rows limit"
                    reason = f"Results were cut at {max_rows} rows ({which})."
                summary = query_pb2.QuerySummary(
                    row_count=rows,
                    bytes_scanned=scanned,
                    elapsed=elapsed,
                    truncated=truncated,
                    truncated_reason=reason,
                    files_scanned=len(chosen),
                )
                log.info(
                    "Query finished",
                    extra={
                        "dataset": f"tenants/{job.tenant}/datasets/{job.dataset}",
                        "rows": rows,
                        "files": len(chosen),
                        "bytes_scanned": scanned,
                        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
                        "truncated": truncated,
                    },
                )
                # Inside the try: the database is handed back only after the summary is on its way.
                if held is None:
                    yield query_pb2.ExecuteQueryResponse(summary=summary)
                else:
                    result = query_pb2.QueryResult(header=header, chunk=held[0] if held else None, summary=summary)
                    yield query_pb2.ExecuteQueryResponse(result=result)
            except duckdb.Error as exc:
                err = _duckdb_error(exc, timeout.fired, self.limits)
                if err.reason == "STORE_UNAVAILABLE":
                    self._listings.pop((job.tenant, job.dataset), None)  # a file may be gone: list again
                raise self._failed(err) from None
            except QueryError as exc:
                raise self._failed(exc) from None
            finally:
                if timeout.abandoned:
                    # A worker still has the session and finishes it (``_work``); the timer stays
                    # to stop a statement that started just after the interrupt.
                    pass
                else:
                    timer.cancel()
                    if session is not None:
                        session.interrupt()  # a cancelled stream stops the statement at once
                        self._pool.submit(self._finish, job.tenant, job.dataset, session)

    async def datasets(self, tenant: str, names: list[str]) -> list[query_pb2.QueryableDataset]:
        out = []
        for dataset in names:
            files = await self.files(tenant, dataset)
            if not files:
                continue
            out.append(
                query_pb2.QueryableDataset(
                    name=f"tenants/{tenant}/datasets/{dataset}",
                    files=len(files),
                    bytes=sum(f.size for f in files),
                    start_time=_ts(min(f.hour for f in files)),
                    end_time=_ts(max(f.hour for f in files) + timedelta(hours=1)),
                )
            )
        return out


def _next_batch(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    with contextlib.suppress(StopIteration):
        return reader.read_next_batch()
    return None
