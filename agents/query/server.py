"""The query agent's gRPC server: ``floe.v1.QueryService`` for calls forwarded by the control plane.

Every call must carry a valid forwarding signature (``forwarding.py``) for exactly the method and
resource it asks about, or — ExecuteQuery only — a query grant the control plane issued for the
dataset; without either it is UNAUTHENTICATED whatever else it carries. Datasets are
served only when the agent's ``datasets`` config (from the control plane) lists them, so a
deleted dataset stops being queryable even while its files remain.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from typing import Any

import grpc

from agents.query.engine import Engine, QueryJob
from agents.query.errors import QueryError, invalid, not_found, status_trailer
from agents.query.forwarding import Verifier
from floe.v1 import query_pb2, query_pb2_grpc

__all__ = ["QueryServicer", "parse_dataset", "start_server"]

log = logging.getLogger(__name__)

_ID = r"[a-z][a-z0-9-]{0,61}[a-z0-9]"
_DATASET_RE = re.compile(rf"^tenants/({_ID})/datasets/({_ID})$")
_TENANT_RE = re.compile(rf"^tenants/({_ID})$")
_SERVICE = "/floe.v1.QueryService/"


def parse_dataset(name: str, field: str = "dataset") -> tuple[str, str]:
    m = _DATASET_RE.match(name)
    if m is None:
        raise invalid(f"{field}: {name!r} is not of the form tenants/{{tenant}}/datasets/{{dataset}}.", field)
    return m[1], m[2]


def _metadata(context: grpc.aio.ServicerContext[Any, Any]) -> list[tuple[str, str | bytes]]:
    return list(context.invocation_metadata() or ())


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException, method: str) -> None:
    if isinstance(exc, QueryError):
        await context.abort(exc.code, exc.message, trailing_metadata=status_trailer(exc))
    log.error("Unhandled error in a query call", extra={"method": method}, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "Internal error in the query agent; its log has the details.")


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    """Serves one engine; ``known`` returns the dataset names of the current config."""

    def __init__(self, engine: Engine, verifier: Verifier, known: Callable[[], set[str]], questions: bool) -> None:
        self.engine = engine
        self.verifier = verifier
        self.known = known
        self.questions = questions

    def _dataset(self, name: str, context: grpc.aio.ServicerContext[Any, Any], method: str) -> tuple[str, str]:
        # Authentication first: an unauthenticated caller learns nothing, not even name rules.
        self.verifier.verify(_metadata(context), _SERVICE + method, name)
        tenant, dataset = parse_dataset(name)
        if name not in self.known():
            raise not_found(f"{name} does not exist.")
        return tenant, dataset

    async def ExecuteQuery(
        self, request: query_pb2.ExecuteQueryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[query_pb2.ExecuteQueryResponse]:
        try:
            tenant, dataset = self._dataset(request.dataset, context, "ExecuteQuery")
            which = request.WhichOneof("query")
            if which is None:
                raise invalid("sql: give sql or question.", "sql")
            if which == "question" and not self.questions:
                raise QueryError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "Questions are not configured on this query agent: set llm_base_url and llm_model, or send SQL.",
                    "LLM_NOT_CONFIGURED",
                )
            if request.max_rows < 0:
                raise invalid("max_rows: must be 0 (the limit) or more.", "max_rows")
            job = QueryJob(
                tenant=tenant,
                dataset=dataset,
                sql=request.sql,
                question=request.question,
                start=request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time") else None,
                end=request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else None,
                max_rows=request.max_rows,
                json=request.format == query_pb2.RESULT_FORMAT_JSON,
                single=request.single_response,
            )
            # Closed at once when the call ends early (cancelled, or the caller went away): the
            # statement stops and its database is handed back now, not when the generator is collected.
            async with contextlib.aclosing(self.engine.execute(job)) as responses:
                async for response in responses:
                    yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, "ExecuteQuery")

    async def GetSchema(
        self, request: query_pb2.GetSchemaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> query_pb2.GetSchemaResponse:
        try:
            tenant, dataset = self._dataset(request.dataset, context, "GetSchema")
            columns = await self.engine.schema(tenant, dataset)
            files = await self.engine.files(tenant, dataset)
            return query_pb2.GetSchemaResponse(
                dataset=request.dataset,
                columns=[query_pb2.Column(name=n, type=t) for n, t in columns],
                files=len(files),
            )
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, "GetSchema")
            raise AssertionError("unreachable") from exc

    async def ListQueryableDatasets(
        self, request: query_pb2.ListQueryableDatasetsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> query_pb2.ListQueryableDatasetsResponse:
        try:
            self.verifier.verify(_metadata(context), _SERVICE + "ListQueryableDatasets", request.parent)
            m = _TENANT_RE.match(request.parent)
            if m is None:
                raise invalid(f"parent: {request.parent!r} is not of the form tenants/{{tenant}}.", "parent")
            prefix = request.parent + "/datasets/"
            names = sorted(n.removeprefix(prefix) for n in self.known() if n.startswith(prefix))
            return query_pb2.ListQueryableDatasetsResponse(datasets=await self.engine.datasets(m[1], names))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, "ListQueryableDatasets")
            raise AssertionError("unreachable") from exc

    async def GetLimits(
        self, request: query_pb2.GetLimitsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> query_pb2.GetLimitsResponse:
        try:
            self.verifier.verify(_metadata(context), _SERVICE + "GetLimits", "")
            limits = self.engine.limits
            out = query_pb2.GetLimitsResponse(
                max_rows=limits.max_rows,
                allow_order_by=limits.allow_order_by,
                memory_limit=limits.memory_limit,
                threads=limits.threads,
                questions_enabled=self.questions,
            )
            out.max_time_range.FromNanoseconds(int(limits.max_time_range * 1e9))
            out.statement_timeout.FromNanoseconds(int(limits.statement_timeout * 1e9))
            return out
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, "GetLimits")
            raise AssertionError("unreachable") from exc

    async def IssueQueryGrant(
        self, request: query_pb2.IssueQueryGrantRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> query_pb2.IssueQueryGrantResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "Query grants are issued by the control plane, not by query agents."
        )
        raise AssertionError("unreachable")


async def start_server(
    servicer: QueryServicer, listen: str, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, str]:
    """Bind ``listen`` (host:port; port 0 picks one), over TLS with ``credentials``, and start;
    the server and its bound address."""
    from floe.settings import parse_host_port

    host, port = parse_host_port(listen)
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_send_message_length", 16 << 20),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ]
    )
    query_pb2_grpc.add_QueryServiceServicer_to_server(servicer, server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {listen} for the query gRPC port (query_grpc_listen): address in use")
    await server.start()
    return server, f"{host}:{bound}"
