"""``client.query``: SQL (and questions) over a dataset's Parquet through floe.v1.QueryService.

::

    async with AsyncClient(api_key=key) as c:
        result = await c.query.execute("SELECT host, count(*) FROM fw GROUP BY 1", dataset="acme/fw")
        print(result.table.to_pandas(), result.summary.row_count)

``execute`` collects the stream into a ``pyarrow.Table`` (``rows`` gives dicts); ``stream``
yields the raw responses (header, chunks, summary) for results too large to hold at once.
The blocking ``Client`` wraps ``execute``, ``rows``, ``schema``, ``datasets`` and ``limits``;
its ``execute`` and ``rows`` call on a synchronous channel from the caller's thread, since a
query's answer is often a few milliseconds away and the hop into the client's event loop thread
(and grpc.aio's poller) would add a large part of that again. For the same reason queries go
straight to a query agent under a grant from the control plane when they can
(``floe.query_direct``; ``AsyncClient(direct_queries=False)`` turns it off).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import pyarrow as pa
from google.protobuf import json_format, timestamp_pb2

from floe.backoff import Backoff
from floe.client import AsyncClient, _Api, _Blocking, _Loop
from floe.errors import from_grpc_error
from floe.query_direct import Routes, after_failure
from floe.v1 import query_pb2, query_pb2_grpc

__all__ = ["BlockingQueryApi", "QueryApi", "QueryResult", "dataset_name"]


def dataset_name(value: str) -> str:
    """Accept ``tenants/t/datasets/d`` or the short ``t/d``."""
    if value.startswith("tenants/"):
        return value
    tenant, sep, dataset = value.partition("/")
    if not sep or not tenant or not dataset or "/" in dataset:
        raise ValueError(f"dataset {value!r} must be tenants/TENANT/datasets/DATASET or TENANT/DATASET")
    return f"tenants/{tenant}/datasets/{dataset}"


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("start/end must be timezone-aware datetimes (e.g. datetime.now(UTC))")
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


@dataclass
class QueryResult:
    """A finished query: its header (columns, SQL run, time range), rows and summary."""

    header: query_pb2.QueryHeader
    table: pa.Table
    summary: query_pb2.QuerySummary
    #: JSON rows when the query asked for JSON (``table`` is then empty).
    json_rows: builtins.list[dict[str, Any]]


class _Collector:
    """Gathers a query's responses — header, chunks and summary, or one ``result`` — into a
    ``QueryResult``."""

    def __init__(self, json: bool) -> None:
        self.json = json
        self.header = query_pb2.QueryHeader()
        self.summary = query_pb2.QuerySummary()
        self.batches: builtins.list[pa.RecordBatch] = []
        self.rows: builtins.list[dict[str, Any]] = []

    def add(self, response: query_pb2.ExecuteQueryResponse) -> bool:
        """Take one response; True when it was the last (the summary, or the whole result): the
        caller stops there rather than wait for the call's status, which adds ~0.2 ms."""
        kind = response.WhichOneof("payload")
        if kind == "chunk":
            self._chunk(response.chunk)
        elif kind == "header":
            self.header = response.header
        elif kind == "summary":
            self.summary = response.summary
            return True
        elif kind == "result":
            self.header = response.result.header
            self._chunk(response.result.chunk)
            self.summary = response.result.summary
            return True
        return False

    def _chunk(self, chunk: query_pb2.ResultChunk) -> None:
        if chunk.arrow_ipc:
            self.batches.extend(pa.ipc.open_stream(chunk.arrow_ipc))
        self.rows.extend(json_format.MessageToDict(r) for r in chunk.rows)

    def result(self) -> QueryResult:
        header = self.header
        schema = pa.ipc.read_schema(pa.py_buffer(header.arrow_schema)) if header.arrow_schema else pa.schema([])
        table = pa.Table.from_batches(self.batches, schema=schema) if not self.json else pa.table({})
        return QueryResult(header, table, self.summary, self.rows)


class QueryApi(_Api):
    def __init__(self, client: AsyncClient, direct: bool = True) -> None:
        super().__init__(client)
        self._stub = query_pb2_grpc.QueryServiceStub(client.channel)
        #: Grants and channels for sending queries straight to query agents.
        self.routes = Routes(client, direct)

    def blocking(self, loop: _Loop) -> BlockingQueryApi:
        return BlockingQueryApi(self, loop)

    def _request(
        self,
        sql: str,
        *,
        dataset: str,
        start: datetime | None,
        end: datetime | None,
        max_rows: int,
        json: bool,
        question: str,
        single_response: bool,
    ) -> query_pb2.ExecuteQueryRequest:
        req = query_pb2.ExecuteQueryRequest(
            dataset=dataset_name(dataset),
            start_time=_ts(start),
            end_time=_ts(end),
            max_rows=max_rows,
            format=query_pb2.RESULT_FORMAT_JSON if json else query_pb2.RESULT_FORMAT_ARROW,
            single_response=single_response,
        )
        if question:
            req.question = question
        else:
            req.sql = sql
        return req

    async def stream(
        self,
        sql: str = "",
        *,
        dataset: str,
        start: datetime | None = None,
        end: datetime | None = None,
        max_rows: int = 0,
        json: bool = False,
        question: str = "",
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline, not a cancel scope
        single_response: bool = False,
    ) -> AsyncGenerator[query_pb2.ExecuteQueryResponse, None]:
        """The raw response stream; UNAVAILABLE before the first response is retried. With
        ``single_response`` a result that fits in one chunk comes as one ``result`` response
        instead of header, chunk and summary (larger ones still stream)."""
        req = self._request(
            sql,
            dataset=dataset,
            start=start,
            end=end,
            max_rows=max_rows,
            json=json,
            question=question,
            single_response=single_response,
        )
        c = self._c
        deadline = timeout or max(c.timeout, 120.0)
        route = await self.routes.route(req.dataset)
        backoff = Backoff(0.1, 5.0)
        # A direct attempt first when there is a route; then up to 1 + retries through the control plane.
        last = c.retries + (route is not None)
        for attempt in range(last + 1):
            direct = route is not None and attempt == 0
            if direct:
                assert route is not None
                call = self.routes.stub(route).ExecuteQuery(req, metadata=route.metadata, timeout=deadline)
            else:
                call = self._stub.ExecuteQuery(req, metadata=c.metadata, timeout=deadline)
            started = False
            try:
                async for response in call:
                    started = True
                    yield response
                return
            except grpc.RpcError as exc:
                err = from_grpc_error(exc)
                step = after_failure(direct=direct, started=started, code=err.code, last=attempt == last)
                if step == "raise":
                    raise err from None
                if step == "fall back":
                    self.routes.avoid(req.dataset)  # and this query goes through the control plane
                    continue
            finally:
                call.cancel()  # the consumer stopped early: end the query now; a no-op once done
            await asyncio.sleep(backoff.delay(err.retry_after))

    async def execute(
        self,
        sql: str = "",
        *,
        dataset: str,
        start: datetime | None = None,
        end: datetime | None = None,
        max_rows: int = 0,
        json: bool = False,
        question: str = "",
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline, not a cancel scope
    ) -> QueryResult:
        """Run ``sql`` (or ``question``) over ``dataset`` (``t/d`` or its full name) and collect it."""
        collected = _Collector(json)
        responses = self.stream(
            sql,
            dataset=dataset,
            start=start,
            end=end,
            max_rows=max_rows,
            json=json,
            question=question,
            timeout=timeout,
            single_response=True,
        )
        async with contextlib.aclosing(responses):
            async for response in responses:
                if collected.add(response):
                    break
        return collected.result()

    async def rows(self, sql: str = "", *, dataset: str, **kwargs: Any) -> builtins.list[dict[str, Any]]:
        """The result as a list of dicts (Python values, from the Arrow result)."""
        result = await self.execute(sql, dataset=dataset, **kwargs)
        out: list[dict[str, Any]] = result.table.to_pylist()
        return out

    async def schema(self, dataset: str) -> query_pb2.GetSchemaResponse:
        req = query_pb2.GetSchemaRequest(dataset=dataset_name(dataset))
        response: query_pb2.GetSchemaResponse = await self._c.call(self._stub.GetSchema, req)
        return response

    async def datasets(self, tenant: str) -> builtins.list[query_pb2.QueryableDataset]:
        parent = tenant if tenant.startswith("tenants/") else f"tenants/{tenant}"
        req = query_pb2.ListQueryableDatasetsRequest(parent=parent)
        response: query_pb2.ListQueryableDatasetsResponse = await self._c.call(self._stub.ListQueryableDatasets, req)
        return list(response.datasets)

    async def limits(self) -> query_pb2.GetLimitsResponse:
        response: query_pb2.GetLimitsResponse = await self._c.call(self._stub.GetLimits, query_pb2.GetLimitsRequest())
        return response


class BlockingQueryApi:
    """``Client.query``: ``execute`` and ``rows`` block on a synchronous channel in the caller's
    thread (same retries, deadline and errors as ``QueryApi``); every other method is
    ``QueryApi``'s, run on the client's event loop."""

    def __init__(self, api: QueryApi, loop: _Loop) -> None:
        self._api = api
        self._others = _Blocking(api, loop)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._others, name)

    def execute(
        self,
        sql: str = "",
        *,
        dataset: str,
        start: datetime | None = None,
        end: datetime | None = None,
        max_rows: int = 0,
        json: bool = False,
        question: str = "",
        timeout: float | None = None,
    ) -> QueryResult:
        """Run ``sql`` (or ``question``) over ``dataset`` (``t/d`` or its full name) and collect it."""
        req = self._api._request(
            sql,
            dataset=dataset,
            start=start,
            end=end,
            max_rows=max_rows,
            json=json,
            question=question,
            single_response=True,
        )
        c = self._api._c
        deadline = timeout or max(c.timeout, 120.0)
        routes = self._api.routes
        route = routes.route_blocking(req.dataset)
        backoff = Backoff(0.1, 5.0)
        # A direct attempt first when there is a route; then up to 1 + retries through the control plane.
        last = c.retries + (route is not None)
        for attempt in range(last + 1):
            direct = route is not None and attempt == 0
            if direct:
                assert route is not None
                call = routes.stub_blocking(route).ExecuteQuery(req, metadata=route.metadata, timeout=deadline)
            else:
                stub = query_pb2_grpc.QueryServiceStub(c.sync_channel())
                call = stub.ExecuteQuery(req, metadata=c.metadata, timeout=deadline)
            collected = _Collector(json)
            started = False
            try:
                for response in call:
                    started = True
                    if collected.add(response):
                        break
                return collected.result()
            except grpc.RpcError as exc:
                err = from_grpc_error(exc)
                step = after_failure(direct=direct, started=started, code=err.code, last=attempt == last)
                if step == "raise":
                    raise err from None
                if step == "fall back":
                    routes.avoid(req.dataset)  # and this query goes through the control plane
                    continue
            finally:
                call.cancel()  # ends the call at once when the caller is interrupted; a no-op when done
            time.sleep(backoff.delay(err.retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    def rows(self, sql: str = "", *, dataset: str, **kwargs: Any) -> builtins.list[dict[str, Any]]:
        """The result as a list of dicts (Python values, from the Arrow result)."""
        out: list[dict[str, Any]] = self.execute(sql, dataset=dataset, **kwargs).table.to_pylist()
        return out
