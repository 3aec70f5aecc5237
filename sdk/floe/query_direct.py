"""Where a client sends a dataset's queries: straight to a query agent, or through the control plane.

The control plane forwards every QueryService call to a query agent: two gRPC hops, each ~1 ms
when the processes were idle, which is a large part of a small query. With a grant
(``IssueQueryGrant``) the client sends ExecuteQuery straight to the agent instead: the control
plane authorizes the caller for the dataset once and returns the agent's address and a token
signed for that dataset, which the client reuses until shortly before it expires. The client's
own credential never goes to the agent.

Going direct is an optimisation, never a requirement: whenever it cannot work — the control plane
issues no grants (``query_grant_ttl`` 0) or predates them, no agent is connected, the agent's
address is unreachable from here or its TLS certificate cannot be verified, the agent restarted
(its grants died with it) — the call goes through the control plane as before, which answers
with the canonical error if there is one, and the dataset is not tried directly again for
``RETRY_DIRECT_AFTER`` seconds.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from floe.client import open_channel
from floe.v1 import query_pb2, query_pb2_grpc

if TYPE_CHECKING:
    from floe.client import AsyncClient

__all__ = ["GRANT_HEADER", "Route", "Routes", "after_failure"]

GRANT_HEADER = "x-floe-query-grant"
#: After going direct failed for a dataset, how long its queries go through the control plane
#: (the agent unreachable, or the control plane issues no grants).
RETRY_DIRECT_AFTER = 60.0
#: ... and after the control plane refused a grant for a passing reason (no agent connected yet,
#: the dataset not created yet): the same query through it gives the reason to the caller.
_RETRY_GRANT_AFTER = 2.0
#: Refusals of a grant that will not change soon.
_LASTING = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED})
#: How long a first connection to an agent may take before the control plane is used instead.
CONNECT_TIMEOUT = 3.0
#: A grant is renewed when less than this part of its life is left (clocks may differ a little).
_RENEW_AT = 0.2
#: Errors from an agent (before any response) after which the call goes through the control
#: plane: the agent is unreachable or gone, or restarted (UNAUTHENTICATED: its grants are void).
#: Not DEADLINE_EXCEEDED: that is the caller's own deadline, which running again would not meet.
_FALL_BACK = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED})


def _ready_blocking(channel: grpc.Channel) -> bool:
    """Connect ``channel``: True once it is ready; False at its first failure (refused, TLS not
    verified) or after ``CONNECT_TIMEOUT`` (an address that swallows packets)."""
    outcome: queue.Queue[bool] = queue.Queue()

    def watch(state: grpc.ChannelConnectivity) -> None:
        if state is grpc.ChannelConnectivity.READY:
            outcome.put(True)
        elif state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
            outcome.put(False)

    channel.subscribe(watch, try_to_connect=True)
    try:
        return outcome.get(timeout=CONNECT_TIMEOUT)
    except queue.Empty:
        return False
    finally:
        channel.unsubscribe(watch)


async def _ready(channel: grpc.aio.Channel) -> bool:
    """``_ready_blocking`` for an asyncio channel."""

    async def settle() -> bool:
        state = channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
                return False
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=True)
        return True

    try:
        return await asyncio.wait_for(settle(), CONNECT_TIMEOUT)
    except TimeoutError:
        return False


def after_failure(*, direct: bool, started: bool, code: grpc.StatusCode, last: bool) -> str:
    """What a query client does when an attempt fails: ``"fall back"`` (a direct attempt that
    cannot work: the control plane next, at once), ``"retry"`` (UNAVAILABLE before any
    response, attempts left: after a backoff) or ``"raise"``."""
    if direct and not started and code in _FALL_BACK:
        return "fall back"
    if started or code != grpc.StatusCode.UNAVAILABLE or last:
        return "raise"
    return "retry"


@dataclass(frozen=True)
class Route:
    """Where one call goes: the agent's ExecuteQuery and the metadata carrying the grant."""

    dataset: str
    endpoint: str
    tls: bool
    metadata: tuple[tuple[str, str], ...]
    #: time.monotonic() after which the grant is renewed before use.
    renew_after: float


class Routes:
    """The grants and agent channels of one client (thread-safe: the blocking client calls from
    any thread; the async one from its loop). ``enabled`` False: always the control plane."""

    def __init__(self, client: AsyncClient, enabled: bool) -> None:
        self._client = client
        self.enabled = enabled
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}
        #: dataset -> time.monotonic() until which its queries go through the control plane.
        self._avoid: dict[str, float] = {}
        #: (endpoint, tls) -> the channel to that agent and its stub.
        self._sync: dict[tuple[str, bool], tuple[grpc.Channel, query_pb2_grpc.QueryServiceStub]] = {}
        self._aio: dict[tuple[str, bool], tuple[grpc.aio.Channel, query_pb2_grpc.QueryServiceStub]] = {}

    # -- routes --------------------------------------------------------------------------------

    def _cached(self, dataset: str) -> tuple[bool, Route | None]:
        """Whether the route is known without asking the control plane, and the route if there
        is one (known and None: the dataset goes through the control plane for now)."""
        if not self.enabled:
            return True, None
        now = time.monotonic()
        with self._lock:
            until = self._avoid.get(dataset)
            if until is not None:
                if now < until:
                    return True, None
                del self._avoid[dataset]
            route = self._routes.get(dataset)
        if route is not None and now < route.renew_after:
            return True, route
        return False, None

    def _learn(self, dataset: str, response: query_pb2.IssueQueryGrantResponse) -> Route:
        granted = response.grant
        life = granted.expire_time.ToSeconds() - time.time()
        route = Route(
            dataset=dataset,
            endpoint=granted.endpoint,
            tls=granted.tls,
            metadata=((GRANT_HEADER, granted.token),),
            renew_after=time.monotonic() + max(0.0, life * (1 - _RENEW_AT)),
        )
        with self._lock:
            self._routes[dataset] = route
        return route

    def avoid(self, dataset: str, seconds: float = RETRY_DIRECT_AFTER) -> None:
        """Send ``dataset``'s queries through the control plane for ``seconds`` (and forget its grant)."""
        with self._lock:
            self._routes.pop(dataset, None)
            if len(self._avoid) > 10_000:
                self._avoid.clear()
            self._avoid[dataset] = time.monotonic() + seconds

    def _refused(self, dataset: str, exc: grpc.RpcError) -> None:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        self.avoid(dataset, RETRY_DIRECT_AFTER if code in _LASTING else _RETRY_GRANT_AFTER)

    def route_blocking(self, dataset: str) -> Route | None:
        """The route for ``dataset`` (asking the control plane for a grant and connecting to the
        agent on the caller's thread when needed), or None: call the control plane."""
        known, route = self._cached(dataset)
        if not known:
            c = self._client
            try:
                response = query_pb2_grpc.QueryServiceStub(c.sync_channel()).IssueQueryGrant(
                    query_pb2.IssueQueryGrantRequest(dataset=dataset), metadata=c.metadata, timeout=c.timeout
                )
            except grpc.RpcError as exc:
                self._refused(dataset, exc)  # the control plane says why on the call that follows
                return None
            route = self._learn(dataset, response)
        if route is None:
            return None
        if not self._connected_blocking(route):
            self.avoid(dataset)
            return None
        return route

    async def route(self, dataset: str) -> Route | None:
        """``route_blocking`` for the async client."""
        known, route = self._cached(dataset)
        if not known:
            c = self._client
            try:
                response = await query_pb2_grpc.QueryServiceStub(c.channel).IssueQueryGrant(
                    query_pb2.IssueQueryGrantRequest(dataset=dataset), metadata=c.metadata, timeout=c.timeout
                )
            except grpc.RpcError as exc:
                self._refused(dataset, exc)
                return None
            route = self._learn(dataset, response)
        if route is None:
            return None
        if not await self._connected(route):
            self.avoid(dataset)
            return None
        return route

    # -- channels ------------------------------------------------------------------------------

    def _open(self, route: Route, api: Any) -> Any:
        """A channel to the route's agent from ``api`` (``grpc`` or ``grpc.aio``): over TLS with
        the client's own credentials (its CA verifies the agent too), or the system's CAs when
        the client talks to the control plane without TLS."""
        c = self._client
        creds = (c.credentials or grpc.ssl_channel_credentials()) if route.tls else None
        return open_channel(api, route.endpoint, creds, c.options)

    def _connected_blocking(self, route: Route) -> bool:
        key = (route.endpoint, route.tls)
        with self._lock:
            if key in self._sync:
                return True
        channel = self._open(route, grpc)
        if not _ready_blocking(channel):
            channel.close()
            return False
        with self._lock:
            if key in self._sync:
                channel.close()
            else:
                self._sync[key] = (channel, query_pb2_grpc.QueryServiceStub(channel))
        return True

    async def _connected(self, route: Route) -> bool:
        key = (route.endpoint, route.tls)
        if key in self._aio:
            return True
        channel = self._open(route, grpc.aio)
        if not await _ready(channel):
            await channel.close()
            return False
        if key in self._aio:
            await channel.close()
        else:
            self._aio[key] = (channel, query_pb2_grpc.QueryServiceStub(channel))
        return True

    def stub_blocking(self, route: Route) -> query_pb2_grpc.QueryServiceStub:
        with self._lock:
            return self._sync[(route.endpoint, route.tls)][1]

    def stub(self, route: Route) -> query_pb2_grpc.QueryServiceStub:
        return self._aio[(route.endpoint, route.tls)][1]

    async def close(self) -> None:
        with self._lock:
            sync, self._sync = list(self._sync.values()), {}
        for channel, _ in sync:
            channel.close()
        aio, self._aio = list(self._aio.values()), {}
        for achannel, _ in aio:
            await achannel.close()
