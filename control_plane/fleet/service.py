"""floe.v1.AgentService (the control stream), floe.v1.FleetService and floe.v1.WorkService."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from control_plane.auth.principal import Principal
from control_plane.auth.ratelimit import FailureLimiter
from control_plane.core.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from control_plane.core.names import check_id, parse_name
from control_plane.core.pagination import page_request
from control_plane.core.resources import timestamp
from control_plane.fleet.registry import AgentRegistry, AgentSession, Close, QueuedUpdate, visible
from control_plane.services.common import principal, require
from control_plane.store import Lease, Store
from floe.v1 import agent_pb2, agent_pb2_grpc, common_pb2, fleet_pb2, fleet_pb2_grpc, work_pb2, work_pb2_grpc

__all__ = ["AgentServicer", "FleetServicer", "WorkServicer"]

log = logging.getLogger(__name__)
HELLO_TIMEOUT_S = 10.0
MAX_CLAIM_ITEMS = 1000
MAX_COMMAND_TIMEOUT_S = 300.0


def _require_agent(caller: Principal) -> None:
    if caller.role not in (common_pb2.ROLE_AGENT, common_pb2.ROLE_ADMIN):
        raise PermissionDenied(f"The control stream needs an agent key; this credential is {caller.describe()}.")


def _validate_hello(hello: agent_pb2.AgentHello) -> None:
    violations: list[FieldViolation | None] = [check_id(hello.agent_name, "hello.agent_name")]
    if hello.kind not in agent_pb2.AgentKind.values() or hello.kind == agent_pb2.AGENT_KIND_UNSPECIFIED:
        violations.append(FieldViolation("hello.kind", "is required: one of AGENT_KIND_PROXY, ..._CONNECTOR"))
    if not hello.instance_id or len(hello.instance_id) > 128:
        violations.append(FieldViolation("hello.instance_id", "is required (at most 128 characters)"))
    require(violations)


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, registry: AgentRegistry, connect_limiter: FailureLimiter) -> None:
        self._registry = registry
        # A token bucket shared by all connects: a reconnect storm is told to back off.
        self._connects = connect_limiter

    def Connect(self, request_iterator: AsyncIterator[agent_pb2.ConnectRequest], context: Any) -> Any:
        # A coroutine that writes with context.write, not an async generator (see _connect).
        return self._connect(request_iterator, context)

    async def _connect(self, request_iterator: AsyncIterator[agent_pb2.ConnectRequest], context: Any) -> None:
        caller = principal()
        _require_agent(caller)
        wait = self._connects.retry_after("*")
        if wait > 0:
            raise ResourceExhausted(
                f"Too many agents are connecting; retry in {wait:.1f}s.", reason="CONNECT_THROTTLED", retry_after=wait
            )
        self._connects.record_failure("*")
        try:
            first = await asyncio.wait_for(anext(aiter(request_iterator)), HELLO_TIMEOUT_S)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise InvalidArgument.from_violations(
                [FieldViolation("hello", f"must be the first message, within {HELLO_TIMEOUT_S:g}s")]
            ) from None
        if first.WhichOneof("message") != "hello":
            raise InvalidArgument.from_violations(
                [FieldViolation("hello", f"must be the first message; got {first.WhichOneof('message') or 'nothing'}")]
            )
        _validate_hello(first.hello)
        await self._registry.ensure_snapshot()
        session = self._registry.connect(first.hello, caller, first.sequence)
        reader = asyncio.create_task(self._read(session, request_iterator))
        try:
            while True:
                item = await session.outbound.get()
                if isinstance(item, Close):
                    if item.error is not None:
                        raise item.error
                    return
                # Built here, as each stream takes it: no full copies pile up in thousands of
                # queues. Written rather than yielded: grpc.aio holds on to a stream handler's
                # last yielded message until the next one, i.e. to a copy of each agent's config.
                await context.write(item.build() if isinstance(item, QueuedUpdate) else item)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._registry.disconnect(session)

    async def _read(self, session: AgentSession, request_iterator: AsyncIterator[agent_pb2.ConnectRequest]) -> None:
        registry = self._registry
        try:
            async for msg in request_iterator:
                registry.seen(session)
                kind = msg.WhichOneof("message")
                if kind is None:
                    raise InvalidArgument.from_violations(
                        [FieldViolation("message", "sets no field: send hello, config_ack, health, heartbeat...")]
                    )
                if kind == "hello":
                    # Full state: the sequence restarts from here.
                    session.expected_sequence = msg.sequence + 1
                    registry.apply_hello(session, msg.hello)
                    continue
                if msg.sequence != session.expected_sequence:
                    if not session.awaiting_full_state:
                        log.info(
                            "Sequence gap on a control stream; asking for full state",
                            extra={
                                "agent": session.entry.name,
                                "expected": session.expected_sequence,
                                "got": msg.sequence,
                            },
                        )
                        session.awaiting_full_state = True
                        session.send(agent_pb2.ConnectResponse(request_full_state=agent_pb2.RequestFullState()))
                    continue
                session.expected_sequence += 1
                if kind == "config_ack":
                    registry.ack(session, msg.config_ack)
                elif kind == "health":
                    registry.health(session, msg.health)
                elif kind == "command_result":
                    registry.command_result(session, msg.command_result)
            session.close()
        except asyncio.CancelledError:
            raise
        except InvalidArgument as exc:
            session.close(exc)
        except Exception as exc:  # the stream broke (client went away, cancelled): end quietly
            log.debug("Control stream reader ended", extra={"agent": session.entry.name, "error": repr(exc)})
            session.close()


class FleetServicer(fleet_pb2_grpc.FleetServiceServicer):
    def __init__(self, registry: AgentRegistry) -> None:
        self._registry = registry

    def _entry_view(self, name: str) -> fleet_pb2.Agent:
        parse_name(name, "agents")
        caller = principal()
        caller.require_read(caller.tenant or "", name)
        entry = self._registry.entries.get(name)
        if entry is None or not visible(entry, caller):
            raise NotFound(f"{name} does not exist.")
        return self._registry.view(entry)

    async def ListAgents(self, request: fleet_pb2.ListAgentsRequest, context: Any) -> Any:
        caller = principal()
        caller.require_read(caller.tenant or "", "agents")
        page = page_request(request.page_size, request.page_token, request.kind)
        agents = [a for a in self._registry.views(caller) if not request.kind or a.kind == request.kind]
        chunk, token = page.of(agents)
        return fleet_pb2.ListAgentsResponse(agents=chunk, next_page_token=token)

    async def GetAgent(self, request: fleet_pb2.GetAgentRequest, context: Any) -> Any:
        return fleet_pb2.GetAgentResponse(agent=self._entry_view(request.name))

    async def WatchAgents(self, request: fleet_pb2.WatchAgentsRequest, context: Any) -> Any:
        caller = principal()
        caller.require_read(caller.tenant or "", "agents")
        queue = self._registry.watch()
        try:
            for agent in self._registry.views(caller):
                if not request.kind or agent.kind == request.kind:
                    yield fleet_pb2.WatchAgentsResponse(
                        type=fleet_pb2.WatchAgentsResponse.EVENT_TYPE_EXISTING, agent=agent
                    )
            while True:
                event = await queue.get()
                if event is None:
                    raise ResourceExhausted("The watch fell behind; start it again.", reason="WATCH_OVERFLOW")
                if request.kind and event.agent.kind != request.kind:
                    continue
                entry = self._registry.entries.get(event.agent.name)
                if entry is not None and visible(entry, caller):
                    yield event
        finally:
            self._registry.unwatch(queue)

    async def SendCommand(self, request: fleet_pb2.SendCommandRequest, context: Any) -> Any:
        view = self._entry_view(request.agent)
        caller = principal()
        action = request.command.WhichOneof("action")
        # Listing dead letters only reads (viewers may); every other command changes the agent.
        if action != "list_dlq":
            caller.require_write(caller.tenant or "", request.agent)
        if action is None:
            raise InvalidArgument.from_violations(
                [FieldViolation("command", "sets no action: choose retry_dlq, list_dlq, reload or drain")]
            )
        timeout = request.timeout.ToNanoseconds() / 1e9 if request.HasField("timeout") else 30.0
        if not 0 < timeout <= MAX_COMMAND_TIMEOUT_S:
            raise InvalidArgument.from_violations([FieldViolation("timeout", "must be between 0 and 5m")])
        result = await self._registry.send_command(view.name, request.command, timeout)
        return fleet_pb2.SendCommandResponse(result=result)


def _lease(lease: Lease) -> work_pb2.Lease:
    return work_pb2.Lease(
        item=lease.item, holder=lease.holder, generation=lease.generation, expire_time=timestamp(lease.expire_time)
    )


def _ttl_ns(request: Any) -> int:
    if not request.HasField("ttl"):
        return 30_000_000_000
    ttl = request.ttl.ToNanoseconds()
    if not 1_000_000_000 <= ttl <= 3600_000_000_000:
        raise InvalidArgument.from_violations([FieldViolation("ttl", "must be between 1s and 1h")])
    return int(ttl)


def _check_holder(holder: str) -> None:
    if not holder or len(holder) > 200:
        raise InvalidArgument.from_violations([FieldViolation("holder", "is required (at most 200 characters)")])


class WorkServicer(work_pb2_grpc.WorkServiceServicer):
    def __init__(self, store: Store) -> None:
        self._store = store

    async def ClaimWork(self, request: work_pb2.ClaimWorkRequest, context: Any) -> Any:
        _require_agent(principal())
        _check_holder(request.holder)
        if not request.items or len(request.items) > MAX_CLAIM_ITEMS:
            raise InvalidArgument.from_violations([FieldViolation("items", f"must list 1-{MAX_CLAIM_ITEMS} items")])
        bad = [i for i, item in enumerate(request.items) if not item or len(item) > 1024]
        if bad:
            raise InvalidArgument.from_violations(
                [FieldViolation(f"items[{i}]", "must be 1-1024 characters") for i in bad]
            )
        won, done = await self._store.claim_work(list(dict.fromkeys(request.items)), request.holder, _ttl_ns(request))
        return work_pb2.ClaimWorkResponse(leases=[_lease(lease) for lease in won], done=done)

    async def RenewLease(self, request: work_pb2.RenewLeaseRequest, context: Any) -> Any:
        _require_agent(principal())
        _check_holder(request.holder)
        lease = await self._store.renew_lease(request.item, request.holder, request.generation, _ttl_ns(request))
        return work_pb2.RenewLeaseResponse(lease=_lease(lease))

    async def CompleteWork(self, request: work_pb2.CompleteWorkRequest, context: Any) -> Any:
        _require_agent(principal())
        _check_holder(request.holder)
        await self._store.finish_lease(request.item, request.holder, request.generation, done=True)
        return work_pb2.CompleteWorkResponse()

    async def ReleaseLease(self, request: work_pb2.ReleaseLeaseRequest, context: Any) -> Any:
        _require_agent(principal())
        _check_holder(request.holder)
        await self._store.finish_lease(request.item, request.holder, request.generation, done=False)
        return work_pb2.ReleaseLeaseResponse()
