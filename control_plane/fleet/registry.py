"""The agent registry: who is connected, what each agent should run and runs, its status.

One ``AgentSession`` per open control stream; an ``AgentEntry`` per agent name outlives its
streams so an agent that reconnects keeps its history (a FAILED version stays held, never
resent in a loop, until the desired config changes). Store commits trigger one recomputation of
desired configs, debounced, after which only agents whose versions changed are sent anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Hashable
from dataclasses import dataclass, field

from control_plane.auth.principal import Principal
from control_plane.core.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    FloeError,
    NotFound,
    Unauthenticated,
)
from control_plane.core.keys import key_valid_at
from control_plane.core.resources import timestamp
from control_plane.fleet.configs import AgentIdentity, Snapshot, config_key, desired_configs, load_snapshot
from control_plane.store import Store
from floe.aio import cancel
from floe.v1 import agent_pb2, fleet_pb2, health_pb2, keys_pb2

__all__ = ["AgentEntry", "AgentRegistry", "AgentSession", "Close", "QueuedUpdate"]

log = logging.getLogger(__name__)
HS = health_pb2.HealthStatus
CS = agent_pb2.ConfigStatus
OFFLINE_AFTER_MISSED = 3
WATCH_QUEUE_LIMIT = 10_000
#: How often open streams' keys are checked for expiry and the end of a rotation's grace.
KEY_CHECK_INTERVAL_S = 2.0
#: Distinct agent identities whose desired configs are kept per snapshot (beyond: start afresh).
DESIRED_CACHE_LIMIT = 10_000


@dataclass
class Close:
    """Ends a session's outbound stream; ``error`` None ends it with OK."""

    error: FloeError | None = None


@dataclass(frozen=True)
class QueuedUpdate:
    """A ConfigUpdate waiting in a session's outbound queue, built when the stream takes it.

    A change that affects thousands of agents queues this (a reference to the shared desired
    message and this send's nonce) rather than thousands of full copies at once.
    """

    sequence: int
    desired: agent_pb2.ConfigUpdate
    nonce: str

    def build(self) -> agent_pb2.ConnectResponse:
        message = agent_pb2.ConnectResponse(sequence=self.sequence)
        message.config_update.CopyFrom(self.desired)
        message.config_update.nonce = self.nonce
        return message


@dataclass
class ConfigState:
    desired: agent_pb2.ConfigUpdate | None = None
    reported_version: str = ""
    effective_version: str = ""
    status: int = CS.CONFIG_STATUS_UNSPECIFIED
    errors: list[str] = field(default_factory=list)
    #: Version sent and not yet answered, with its nonce.
    pending_version: str = ""
    pending_nonce: str = ""
    #: A version the agent rejected; not resent until the desired version changes.
    failed_version: str = ""
    update_time: int = 0


@dataclass
class AgentEntry:
    """Everything known about one agent name, connected or not."""

    name: str
    agent: fleet_pb2.Agent
    configs: dict[str, ConfigState] = field(default_factory=dict)
    session: AgentSession | None = None
    last_seen: float = 0.0
    key_name: str = ""
    #: ``AgentHello.endpoints`` of the current stream (may hold secrets: never put in views).
    endpoints: dict[str, str] = field(default_factory=dict)


class AgentSession:
    """One open control stream."""

    def __init__(self, entry: AgentEntry, principal: Principal, ident: AgentIdentity, sequence: int) -> None:
        self.entry = entry
        self.principal = principal
        self.ident = ident
        self.outbound: asyncio.Queue[agent_pb2.ConnectResponse | QueuedUpdate | Close] = asyncio.Queue()
        self.expected_sequence = sequence + 1
        self.awaiting_full_state = False
        self._out_sequence = 0
        self.commands: dict[str, asyncio.Future[agent_pb2.CommandResult]] = {}
        self.closed = False

    def send(self, message: agent_pb2.ConnectResponse) -> None:
        if self.closed:
            return
        self._out_sequence += 1
        message.sequence = self._out_sequence
        self.outbound.put_nowait(message)

    def send_update(self, desired: agent_pb2.ConfigUpdate, nonce: str) -> None:
        """Send ``desired`` (not modified) with ``nonce``, in order with ``send``."""
        if self.closed:
            return
        self._out_sequence += 1
        self.outbound.put_nowait(QueuedUpdate(self._out_sequence, desired, nonce))

    def close(self, error: FloeError | None = None) -> None:
        if not self.closed:
            self.closed = True
            self.outbound.put_nowait(Close(error))
            for future in self.commands.values():
                if not future.done():
                    future.set_exception(FailedPrecondition("The agent disconnected before answering."))


class AgentRegistry:
    """All agents of this control plane. Methods run on the event loop; none block."""

    def __init__(self, store: Store, *, heartbeat_interval: float, health_interval: float) -> None:
        self._store = store
        self.heartbeat_interval = heartbeat_interval
        self.health_interval = health_interval
        self.entries: dict[str, AgentEntry] = {}
        self._snapshot: Snapshot | None = None
        # Desired configs of the current snapshot by config_key: a dataset change that affects
        # thousands of agents is computed (and hashed) once per distinct key, not per agent, and
        # agents share the resulting messages (read-only) instead of holding a copy each.
        self._desired: dict[Hashable, dict[str, agent_pb2.ConfigUpdate]] = {}
        self._loading: asyncio.Lock = asyncio.Lock()
        self._generation = 0  # store changes seen; tells ensure_snapshot a write raced its load
        self._watchers: set[asyncio.Queue[fleet_pb2.WatchAgentsResponse | None]] = set()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._set_snapshot(await load_snapshot(self._store))
        self._store.add_listener(self._on_store_change)
        self._tasks = [
            asyncio.create_task(self._refresh_loop(), name="fleet-refresh"),
            asyncio.create_task(self._monitor_loop(), name="fleet-monitor"),
        ]

    async def stop(self) -> None:
        for entry in self.entries.values():
            if entry.session is not None:
                entry.session.close()
        await cancel(*self._tasks)
        for q in list(self._watchers):
            q.put_nowait(None)

    def _on_store_change(self, collections: frozenset[str]) -> None:
        if collections & {"tenants", "datasets", "keys", "exports"}:
            self._generation += 1
            self._dirty.set()

    def _set_snapshot(self, snapshot: Snapshot | None) -> None:
        self._snapshot = snapshot
        self._desired.clear()

    def _desired_for(self, ident: AgentIdentity) -> dict[str, agent_pb2.ConfigUpdate]:
        assert self._snapshot is not None
        key = config_key(ident)
        found = self._desired.get(key)
        if found is None:
            if len(self._desired) >= DESIRED_CACHE_LIMIT:
                self._desired.clear()
            found = self._desired[key] = desired_configs(ident, self._snapshot)
        return found

    async def ensure_snapshot(self) -> None:
        """Reload desired-config inputs if writes happened while no agent was connected."""
        if self._snapshot is not None:
            return
        # One load for a storm of connecting agents, not one each.
        async with self._loading:
            if self._snapshot is None:
                generation = self._generation
                self._set_snapshot(await load_snapshot(self._store))
                if self._generation != generation:
                    # A write landed during the load, and the refresh loop may have seen no
                    # session to update: have it reload once this agent is registered.
                    self._dirty.set()

    async def _refresh_loop(self) -> None:
        while True:
            await self._dirty.wait()
            # Coalesce a burst of writes into one recomputation.
            await asyncio.sleep(0.05)
            self._dirty.clear()
            if not any(e.session is not None for e in self.entries.values()):
                # Nobody to tell: reload lazily when the next agent connects.
                self._set_snapshot(None)
                continue
            try:
                self._set_snapshot(await load_snapshot(self._store))
            except Exception:
                log.exception("Could not reload the fleet's desired configs; retrying")
                self._dirty.set()
                await asyncio.sleep(1)
                continue
            for entry in list(self.entries.values()):
                if entry.session is not None:
                    self.sync(entry.session)

    async def _monitor_loop(self) -> None:
        last_key_check = 0.0
        while True:
            await asyncio.sleep(min(1.0, self.heartbeat_interval / 2))
            now = time.monotonic()
            if now - last_key_check >= KEY_CHECK_INTERVAL_S:
                last_key_check = now
                try:
                    await self._close_expired_keys()
                except Exception:
                    log.exception("Could not check agents' keys")
            for entry in list(self.entries.values()):
                session = entry.session
                if session is None:
                    continue
                if now - entry.last_seen > OFFLINE_AFTER_MISSED * self.heartbeat_interval:
                    log.warning("Agent missed three heartbeats; closing its stream", extra={"agent": entry.name})
                    self.disconnect(session)
                    session.close()

    # -- connections -------------------------------------------------------------------------

    def connect(self, hello: agent_pb2.AgentHello, principal: Principal, sequence: int) -> AgentSession:
        name = f"agents/{hello.agent_name}"
        entry = self.entries.get(name)
        if entry is not None and entry.session is not None:
            if entry.agent.instance_id != hello.instance_id:
                raise AlreadyExists(
                    f"{name} is already connected from instance {entry.agent.instance_id}; "
                    "give each agent its own agent_name.",
                    reason="AGENT_NAME_IN_USE",
                )
            # The same process reconnected before its old stream was noticed gone.
            entry.session.close()
        if entry is None:
            entry = AgentEntry(name, fleet_pb2.Agent(name=name))
            self.entries[name] = entry
        ident = AgentIdentity(hello.kind, hello.agent_name, tuple(sorted(hello.labels.items())), principal.tenant)
        session = AgentSession(entry, principal, ident, sequence)
        entry.session = session
        entry.key_name = principal.name
        entry.last_seen = time.monotonic()
        agent = entry.agent
        agent.kind = hello.kind
        agent.instance_id = hello.instance_id
        agent.version = hello.version
        agent.labels.clear()
        agent.labels.update(hello.labels)
        del agent.capabilities[:]
        agent.capabilities.extend(hello.capabilities)
        agent.api_address = hello.api_address
        agent.hostname = hello.hostname
        agent.tenant = f"tenants/{principal.tenant}" if principal.tenant else ""
        agent.key = principal.name
        agent.connected = True
        agent.connect_time.CopyFrom(timestamp(time.time_ns()))
        agent.heartbeat_interval.FromNanoseconds(int(self.heartbeat_interval * 1e9))
        welcome = agent_pb2.Welcome(agent=name)
        welcome.heartbeat_interval.FromNanoseconds(int(self.heartbeat_interval * 1e9))
        welcome.health_interval.FromNanoseconds(int(self.health_interval * 1e9))
        session.send(agent_pb2.ConnectResponse(welcome=welcome))
        self.apply_hello(session, hello)
        log.info("Agent connected", extra={"agent": name, "kind": hello.kind, "instance": hello.instance_id})
        return session

    def apply_hello(self, session: AgentSession, hello: agent_pb2.AgentHello) -> None:
        """Take the agent's full state (first hello, or after RequestFullState) and resync."""
        entry = session.entry
        entry.endpoints = dict(hello.endpoints)
        reported = {applied.config_type for applied in hello.applied}
        for config_type, state in entry.configs.items():
            if config_type not in reported:
                # The hello is the agent's full state: it runs nothing of this type (a new data
                # dir, a lost cache, a cached config it could not start), whatever an earlier
                # stream said. Forget that so the desired version is sent again.
                state.reported_version = state.effective_version = ""
                state.status = CS.CONFIG_STATUS_UNSPECIFIED
                state.errors = []
                state.failed_version = state.pending_version = state.pending_nonce = ""
        for applied in hello.applied:
            state = entry.configs.setdefault(applied.config_type, ConfigState())
            state.reported_version = applied.version
            state.effective_version = applied.effective_version or (
                applied.version if applied.status == CS.CONFIG_STATUS_APPLIED else ""
            )
            state.status = applied.status
            state.errors = list(applied.errors)
            # Held only while the agent itself says it rejected that version.
            state.failed_version = applied.version if applied.status == CS.CONFIG_STATUS_FAILED else ""
            # Whatever was in flight before is superseded by what the agent says it has.
            state.pending_version = state.pending_nonce = ""
        session.awaiting_full_state = False
        self.sync(session)

    def disconnect(self, session: AgentSession) -> None:
        entry = session.entry
        if entry.session is not session:
            return
        entry.session = None
        entry.agent.connected = False
        log.info("Agent disconnected", extra={"agent": entry.name})
        self._publish(entry)

    async def _close_expired_keys(self) -> None:
        """End streams whose key expired or whose rotation grace ended since they connected.

        Revocation closes streams at once (``close_key``); expiry and grace ends are times, so
        they are checked here, with a point read per connected key.
        """
        now = time.time_ns()
        for key_name in {e.session.principal.name for e in self.entries.values() if e.session is not None}:
            if not key_name.startswith("keys/"):
                continue
            record = await self._store.get(key_name)
            if record is None:
                self.close_key(key_name, reason="KEY_INVALID", message="The agent's API key was deleted.")
                continue
            if not key_valid_at(keys_pb2.ApiKey.FromString(record.body), now):
                self.close_key(key_name, message="The agent's API key expired or was rotated out.")

    def close_key(self, key_name: str, *, reason: str = "KEY_REVOKED", message: str = "") -> None:
        """A key was revoked: end every stream it opened, at once."""
        for entry in list(self.entries.values()):
            if entry.session is not None and entry.session.principal.name == key_name:
                session = entry.session
                self.disconnect(session)
                session.close(Unauthenticated(message or "The agent's API key was revoked.", reason=reason))

    # -- config ------------------------------------------------------------------------------

    def sync(self, session: AgentSession) -> None:
        """Send every config type whose desired version the agent does not have."""
        if session.closed or self._snapshot is None or session.awaiting_full_state:
            return
        entry = session.entry
        changed = False
        for config_type, desired in self._desired_for(session.ident).items():
            state = entry.configs.setdefault(config_type, ConfigState())
            if state.desired is None or state.desired.version != desired.version:
                changed = True
            state.desired = desired  # shared between agents: never modified
            version = desired.version
            if state.status == CS.CONFIG_STATUS_APPLIED and state.reported_version == version:
                continue
            if version in (state.failed_version, state.pending_version):
                continue
            nonce = secrets.token_hex(8)
            state.pending_version, state.pending_nonce = version, nonce
            state.status = CS.CONFIG_STATUS_PENDING
            session.send_update(desired, nonce)
            changed = True
        if changed:
            self._publish(entry)

    def ack(self, session: AgentSession, ack: agent_pb2.ConfigAck) -> None:
        state = session.entry.configs.get(ack.config_type)
        if state is None or ack.nonce != state.pending_nonce:
            return  # an answer to a superseded send
        state.pending_version = state.pending_nonce = ""
        state.reported_version = ack.version
        state.status = ack.status
        state.errors = list(ack.errors)
        state.update_time = time.time_ns()
        if ack.status == CS.CONFIG_STATUS_APPLIED:
            state.effective_version = ack.version
            state.failed_version = ""
        elif ack.status == CS.CONFIG_STATUS_FAILED:
            state.failed_version = ack.version
            log.warning(
                "Agent rejected a config",
                extra={"agent": session.entry.name, "config_type": ack.config_type, "errors": list(ack.errors)},
            )
        self._publish(session.entry)
        # If the desired config moved on while this was in flight, send the newer one.
        self.sync(session)

    # -- health and commands -----------------------------------------------------------------

    def seen(self, session: AgentSession) -> None:
        session.entry.last_seen = time.monotonic()

    def health(self, session: AgentSession, report: agent_pb2.HealthReport) -> None:
        session.entry.agent.last_health.CopyFrom(report)
        self._publish(session.entry)

    def command_result(self, session: AgentSession, result: agent_pb2.CommandResult) -> None:
        future = session.commands.pop(result.id, None)
        if future is not None and not future.done():
            future.set_result(result)

    async def send_command(self, name: str, command: agent_pb2.Command, wait_seconds: float) -> agent_pb2.CommandResult:
        entry = self.entries.get(name)
        if entry is None:
            raise NotFound(f"{name} does not exist.")
        session = entry.session
        if session is None:
            raise FailedPrecondition(f"{name} is not connected.", reason="AGENT_OFFLINE")
        command.id = command.id or secrets.token_hex(8)
        future: asyncio.Future[agent_pb2.CommandResult] = asyncio.get_running_loop().create_future()
        session.commands[command.id] = future
        session.send(agent_pb2.ConnectResponse(command=command))
        try:
            return await asyncio.wait_for(future, wait_seconds)
        except TimeoutError:
            session.commands.pop(command.id, None)
            raise DeadlineExceeded(
                f"{name} did not answer the command within {wait_seconds:g}s.", reason="COMMAND_TIMEOUT"
            ) from None

    # -- views -------------------------------------------------------------------------------

    def view(self, entry: AgentEntry) -> fleet_pb2.Agent:
        """The Agent resource with derived status, drift and config states."""
        agent = fleet_pb2.Agent()
        agent.CopyFrom(entry.agent)
        online = entry.session is not None and (
            time.monotonic() - entry.last_seen <= OFFLINE_AFTER_MISSED * self.heartbeat_interval
        )
        seen_wall = time.time() - (time.monotonic() - entry.last_seen)
        agent.last_seen_time.CopyFrom(timestamp(int(seen_wall * 1e9)))
        agent.connected = entry.session is not None
        failed = drift = False
        for config_type, state in sorted(entry.configs.items()):
            desired = state.desired.version if state.desired is not None else ""
            agent.configs.add(
                config_type=config_type,
                desired_version=desired,
                reported_version=state.reported_version,
                effective_version=state.effective_version,
                status=state.status,
                errors=state.errors,
                update_time=timestamp(state.update_time) if state.update_time else None,
            )
            failed |= state.status == CS.CONFIG_STATUS_FAILED
            drift |= bool(desired) and state.effective_version != desired
        agent.drift = drift
        agent.config_failed = failed
        if not online:
            agent.status = HS.HEALTH_STATUS_OFFLINE
            agent.status_message = "not connected" if entry.session is None else "missed three heartbeats"
        else:
            reported = agent.last_health.status or HS.HEALTH_STATUS_HEALTHY
            agent.status = reported
            agent.status_message = agent.last_health.message
            if failed and reported == HS.HEALTH_STATUS_HEALTHY:
                agent.status = HS.HEALTH_STATUS_DEGRADED
                agent.status_message = "config failed: " + "; ".join(
                    e for s in entry.configs.values() for e in s.errors
                )
        return agent

    def services(self) -> list[health_pb2.ServiceHealth]:
        """Every agent as a HealthService ServiceHealth."""
        out = []
        for agent in self.views():
            kind = agent_pb2.AgentKind.Name(agent.kind).removeprefix("AGENT_KIND_").lower()
            out.append(
                health_pb2.ServiceHealth(
                    name=agent.name,
                    kind=kind,
                    status=agent.status,
                    message=agent.status_message,
                    last_report_time=agent.last_seen_time,
                )
            )
        return out

    def serving(self, kind: int, endpoint: str, tenant: str) -> list[tuple[AgentEntry, int]]:
        """Connected agents of ``kind`` advertising ``endpoint`` that may serve ``tenant`` (their
        credential is unbound or bound to it), with their status, healthiest first."""
        out: list[tuple[AgentEntry, int]] = []
        for entry in self.entries.values():
            if entry.session is None or entry.agent.kind != kind or not entry.endpoints.get(endpoint):
                continue
            if entry.agent.tenant not in ("", f"tenants/{tenant}"):
                continue
            status = self.view(entry).status
            if status in (HS.HEALTH_STATUS_HEALTHY, HS.HEALTH_STATUS_DEGRADED):
                out.append((entry, status))
        out.sort(key=lambda pair: pair[1])
        return out

    def views(self, principal: Principal | None = None) -> list[fleet_pb2.Agent]:
        return [self.view(e) for _, e in sorted(self.entries.items()) if visible(e, principal)]

    # -- watchers ----------------------------------------------------------------------------

    def watch(self) -> asyncio.Queue[fleet_pb2.WatchAgentsResponse | None]:
        q: asyncio.Queue[fleet_pb2.WatchAgentsResponse | None] = asyncio.Queue(WATCH_QUEUE_LIMIT)
        self._watchers.add(q)
        return q

    def unwatch(self, q: asyncio.Queue[fleet_pb2.WatchAgentsResponse | None]) -> None:
        self._watchers.discard(q)

    def _publish(self, entry: AgentEntry) -> None:
        if not self._watchers:
            return
        event = fleet_pb2.WatchAgentsResponse(
            type=fleet_pb2.WatchAgentsResponse.EVENT_TYPE_CHANGED, agent=self.view(entry)
        )
        for q in list(self._watchers):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                # A watcher that cannot keep up is ended rather than slowing the fleet down.
                self._watchers.discard(q)
                with contextlib.suppress(asyncio.QueueFull):
                    q.put_nowait(None)


def visible(entry: AgentEntry, principal: Principal | None) -> bool:
    """Tenant-bound principals see only agents whose credential is bound to their tenant."""
    if principal is None or principal.tenant is None:
        return True
    return entry.agent.tenant == f"tenants/{principal.tenant}"
