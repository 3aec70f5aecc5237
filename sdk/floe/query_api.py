"""``client.query``: SQL (and questions) over a dataset's Parquet through floe.v1.QueryService.

::

    async with AsyncClient(api_key=key) as c:
        result = await c.query.execute("SELECT host, count(*) FROM fw GROUP BY 1", dataset="acme/fw")
        print(result.table.to_pandas(), result.summary.row_count)

``execute`` collects the stream into a ``pyarrow.Table`` (``rows`` gives dicts); ``stream``
yields the raw responses (header, chunks, summary) for results too large to hold at once.
The blocking ``Client`` wraps ``execute``, ``rows``, ``schema``, ``datasets`` and ``limits``.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import pyarrow as pa
from google.protobuf import json_format, timestamp_pb2

from floe.backoff import Backoff
from floe.client import AsyncClient, _Api
from floe.errors import from_grpc_error
from floe.v1 import query_pb2, query_pb2_grpc

__all__ = ["QueryApi", "QueryResult", "dataset_name"]


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


class QueryApi(_Api):
    def __init__(self, client: AsyncClient) -> None:
        super().__init__(client)
        self._stub = query_pb2_grpc.QueryServiceStub(client.channel)

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
    ) -> query_pb2.ExecuteQueryRequest:
        req = query_pb2.ExecuteQueryRequest(
            dataset=dataset_name(dataset),
            start_time=_ts(start),
            end_time=_ts(end),
            max_rows=max_rows,
            format=query_pb2.RESULT_FORMAT_JSON if json else query_pb2.RESULT_FORMAT_ARROW,
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
    ) -> AsyncIterator[query_pb2.ExecuteQueryResponse]:
        """The raw response stream; UNAVAILABLE before the first response is retried."""
        req = self._request(sql, dataset=dataset, start=start, end=end, max_rows=max_rows, json=json, question=question)
        backoff = Backoff(0.1, 5.0)
        c = self._c
        for attempt in range(c.retries + 1):
            started = False
            try:
                async for response in self._stub.ExecuteQuery(
                    req, metadata=c.metadata, timeout=timeout or max(c.timeout, 120.0)
                ):
                    started = True
                    yield response
                return
            except grpc.RpcError as exc:
                err = from_grpc_error(exc)
                if started or err.code != grpc.StatusCode.UNAVAILABLE or attempt == c.retries:
                    raise err from None
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
        header = query_pb2.QueryHeader()
        summary = query_pb2.QuerySummary()
        batches: list[pa.RecordBatch] = []
        rows: list[dict[str, Any]] = []
        async for response in self.stream(
            sql,
            dataset=dataset,
            start=start,
            end=end,
            max_rows=max_rows,
            json=json,
            question=question,
            timeout=timeout,
        ):
            kind = response.WhichOneof("payload")
            if kind == "header":
                header = response.header
            elif kind == "chunk":
                if response.chunk.arrow_ipc:
                    batches.extend(pa.ipc.open_stream(response.chunk.arrow_ipc))
                rows.extend(json_format.MessageToDict(r) for r in response.chunk.rows)
            elif kind == "summary":
                summary = response.summary
        schema = pa.ipc.read_schema(pa.py_buffer(header.arrow_schema)) if header.arrow_schema else pa.schema([])
        table = pa.Table.from_batches(batches, schema=schema) if not json else pa.table({})
        return QueryResult(header, table, summary, rows)

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
