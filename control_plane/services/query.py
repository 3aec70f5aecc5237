"""floe.v1.QueryService on the control plane: authorize, pick a query agent, forward.

Clients need one address. The caller is authorized here (``require_read`` on the dataset's
tenant: another tenant's dataset is NOT_FOUND, agent keys are refused), the dataset must exist,
and the call is forwarded — streaming, with the caller's deadline — to a healthy connected query
agent whose credential may serve that tenant. Each forwarded call is signed with the secret the
agent sent in its hello (``agents/query/forwarding.py``) for exactly that method and resource;
the agent serves nothing else. Errors from the agent reach the caller with their code, message
and ErrorInfo unchanged. When an agent cannot be reached before any response was sent, the next
one is tried. A query's stream ends as soon as its summary or its single ``result`` (always the
last response) is relayed.

``IssueQueryGrant`` authorizes the caller the same way and, instead of forwarding, returns a
grant for one such agent (``agents/query/forwarding.py``): the SDK then sends the dataset's queries
straight to the agent for the grant's life (``query_grant_ttl``), one gRPC hop instead of two.

Relayed responses are parsed and serialized again rather than passed through as bytes: that costs
under 1 µs for a small answer and ~0.2 ms per MiB of a large one, against ~1 ms of gRPC per hop.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from agents.query.forwarding import grant, sign
from control_plane.core.errors import FailedPrecondition, FloeError, NotFound
from control_plane.core.names import parse_dataset_name, parse_tenant_name
from control_plane.fleet.registry import AgentEntry, AgentRegistry
from control_plane.services.common import principal
from control_plane.store import Store
from floe.client import open_channel
from floe.errors import from_grpc_error
from floe.v1 import agent_pb2, query_pb2, query_pb2_grpc

__all__ = ["QueryServicer", "QueryUnavailable"]

log = logging.getLogger(__name__)

_SERVICE = "/floe.v1.QueryService/"
_ENDPOINT = "query_grpc"
_SECRET = "query_auth"  # noqa: S105 (the endpoints key, not a secret)
_TLS = "query_tls"
#: Used when the caller set no deadline: a query's own statement timeout ends it sooner.
_DEFAULT_TIMEOUT = 600.0
#: The responses that end a query's stream.
_LAST = frozenset({"summary", "result"})


class QueryUnavailable(FloeError):
    """Raised when no query agent can take the call now; retrying later may work."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "QUERY_AGENT_UNAVAILABLE"


def _relay(exc: grpc.aio.AioRpcError, agent: str) -> FloeError:
    """The agent's error as ours: same code, message, reason and details."""
    decoded = from_grpc_error(exc)
    err = FloeError(
        decoded.message,
        reason=decoded.reason or decoded.code.name,
        metadata=decoded.metadata,
        violations=decoded.violations,
        retry_after=decoded.retry_after,
    )
    err.code = decoded.code
    return err


def _retryable(exc: grpc.aio.AioRpcError) -> bool:
    # UNAUTHENTICATED from an agent means it restarted with a new secret we have not heard yet.
    return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    def __init__(
        self, store: Store, fleet: AgentRegistry, ca_file: Path | None = None, grant_ttl: float = 300.0
    ) -> None:
        self._store = store
        self._fleet = fleet
        #: Lifetime of query grants (``query_grant_ttl``, bounded by the settings; 0: none are issued).
        self._grant_ttl = grant_ttl
        #: Verifies query agents that serve TLS (``query_ca_file``; None: the system's CAs).
        self._ca = ca_file.read_bytes() if ca_file is not None else None
        #: (address, tls) -> the channel to that agent and its stub.
        self._agents: dict[tuple[str, bool], tuple[grpc.aio.Channel, query_pb2_grpc.QueryServiceStub]] = {}

    def _stub(self, entry: AgentEntry) -> query_pb2_grpc.QueryServiceStub:
        """A stub for the agent's advertised address, over TLS when the agent serves it."""
        address, tls = key = (entry.endpoints[_ENDPOINT], entry.endpoints.get(_TLS) == "1")
        known = self._agents.get(key)
        if known is None:
            creds = grpc.ssl_channel_credentials(root_certificates=self._ca) if tls else None
            channel = open_channel(grpc.aio, address, creds, [("grpc.max_receive_message_length", 64 << 20)])
            known = self._agents[key] = (channel, query_pb2_grpc.QueryServiceStub(channel))
        return known[1]

    async def close(self) -> None:
        agents, self._agents = list(self._agents.values()), {}
        for channel, _ in agents:
            await channel.close()

    def _targets(self, tenant: str) -> list[AgentEntry]:
        found = self._fleet.serving(agent_pb2.AGENT_KIND_QUERY, _ENDPOINT, tenant)
        if not found:
            raise QueryUnavailable(
                "No healthy query agent is connected to serve this tenant; start one with `floe agent query`.",
                retry_after=5.0,
            )
        # Healthy before degraded; spread the load within each group.
        groups: dict[int, list[AgentEntry]] = {}
        for entry, status in found:
            groups.setdefault(status, []).append(entry)
        out = []
        for status in sorted(groups):
            random.shuffle(groups[status])
            out += groups[status]
        return out

    @staticmethod
    def _call_options(entry: AgentEntry, method: str, scope: str, context: Any) -> dict[str, Any]:
        remaining = context.time_remaining() if context is not None else None
        return {
            "metadata": sign(entry.endpoints[_SECRET], _SERVICE + method, scope, principal().name),
            "timeout": remaining if remaining is not None else _DEFAULT_TIMEOUT,
        }

    async def _unary(self, method: str, request: Any, scope: str, tenant: str, context: Any) -> Any:
        last: grpc.aio.AioRpcError | None = None
        for entry in self._targets(tenant):
            stub = self._stub(entry)
            try:
                return await getattr(stub, method)(request, **self._call_options(entry, method, scope, context))
            except grpc.aio.AioRpcError as exc:
                if not _retryable(exc):
                    raise _relay(exc, entry.name) from None
                log.warning("Query agent unreachable; trying another", extra={"agent": entry.name})
                last = exc
        raise QueryUnavailable(f"No query agent could take the call: {last.details() if last else ''}")

    async def _dataset(self, name: str) -> str:
        tenant_id, _ = parse_dataset_name(name, "dataset")
        principal().require_read(tenant_id, name)
        if await self._store.get(name) is None:
            raise NotFound(f"{name} does not exist.")
        return tenant_id

    async def ExecuteQuery(
        self, request: query_pb2.ExecuteQueryRequest, context: Any
    ) -> AsyncIterator[query_pb2.ExecuteQueryResponse]:
        tenant = await self._dataset(request.dataset)
        last: grpc.aio.AioRpcError | None = None
        for entry in self._targets(tenant):
            stub = self._stub(entry)
            call = stub.ExecuteQuery(request, **self._call_options(entry, "ExecuteQuery", request.dataset, context))
            sent = False
            try:
                async for response in call:
                    sent = True
                    yield response
                    if response.WhichOneof("payload") in _LAST:
                        # The summary (or the whole result) is the last response: end the caller's
                        # stream now rather than wait for the agent's status (most of a millisecond).
                        return
                return
            except grpc.aio.AioRpcError as exc:
                if sent or not _retryable(exc):
                    raise _relay(exc, entry.name) from None
                log.warning("Query agent unreachable; trying another", extra={"agent": entry.name})
                last = exc
            finally:
                call.cancel()  # the caller went away or we are done: stop the agent's statement
        raise QueryUnavailable(f"No query agent could take the call: {last.details() if last else ''}")

    async def GetSchema(self, request: query_pb2.GetSchemaRequest, context: Any) -> query_pb2.GetSchemaResponse:
        tenant = await self._dataset(request.dataset)
        response: query_pb2.GetSchemaResponse = await self._unary(
            "GetSchema", request, request.dataset, tenant, context
        )
        return response

    async def ListQueryableDatasets(
        self, request: query_pb2.ListQueryableDatasetsRequest, context: Any
    ) -> query_pb2.ListQueryableDatasetsResponse:
        tenant = parse_tenant_name(request.parent, "parent")
        principal().require_read(tenant, request.parent)
        if await self._store.get(request.parent) is None:
            raise NotFound(f"{request.parent} does not exist.")
        response: query_pb2.ListQueryableDatasetsResponse = await self._unary(
            "ListQueryableDatasets", request, request.parent, tenant, context
        )
        return response

    async def GetLimits(self, request: query_pb2.GetLimitsRequest, context: Any) -> query_pb2.GetLimitsResponse:
        caller = principal()
        caller.require_read(caller.tenant or "", "query limits")
        response: query_pb2.GetLimitsResponse = await self._unary(
            "GetLimits", request, "", caller.tenant or "", context
        )
        return response

    async def IssueQueryGrant(
        self, request: query_pb2.IssueQueryGrantRequest, context: Any
    ) -> query_pb2.IssueQueryGrantResponse:
        if self._grant_ttl <= 0:
            raise FailedPrecondition(
                "This control plane issues no query grants (query_grant_ttl is 0): call ExecuteQuery here.",
                reason="QUERY_GRANTS_DISABLED",
            )
        tenant = await self._dataset(request.dataset)
        entry = self._targets(tenant)[0]
        expires = int(time.time() + self._grant_ttl)
        out = query_pb2.QueryGrant(
            dataset=request.dataset,
            endpoint=entry.endpoints[_ENDPOINT],
            tls=entry.endpoints.get(_TLS) == "1",
            token=grant(entry.endpoints[_SECRET], request.dataset, principal().name, expires),
            agent=entry.name,
        )
        out.expire_time.FromSeconds(expires)
        log.info(
            "Query grant issued",
            extra={"dataset": request.dataset, "agent": entry.name, "caller": principal().name, "expires": expires},
        )
        return query_pb2.IssueQueryGrantResponse(grant=out)
