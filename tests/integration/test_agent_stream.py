"""The agent control stream end to end: real ``floe control-plane`` and ``floe agent proxy``
processes on loopback (heartbeat and health intervals of 1s).

Config changes reach only the assigned proxy, within a second; a rejected config is held, not
resent, and the previous listeners keep running; agents ride out a control-plane crash and
restart from their cache; revoked keys end streams at once; silent agents go offline; work
leases hand items to exactly one holder; malformed streams are refused with the right code;
WatchAgents and SendCommand; local-only and hybrid config modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import pytest
import yaml
from google.protobuf import json_format

from floe import AsyncClient, Client, RpcError
from floe.errors import from_grpc_error
from floe.v1 import agent_pb2, agent_pb2_grpc, common_pb2, datasets_pb2, fleet_pb2, health_pb2, work_pb2
from tests.helpers import ROOT, ControlPlaneProcess, eventually
from tests.integration.agentkit import (
    AgentProcess,
    free_port,
    healthz_component,
    send_udp,
    udp_dataset,
)
from tests.integration.scripted_receiver import ScriptedReceiver

T = TypeVar("T")
HS = health_pb2.HealthStatus
CS = agent_pb2.ConfigStatus
Code = grpc.StatusCode
Event = fleet_pb2.WatchAgentsResponse
UidFn = Callable[[str], str]
StartCP = Callable[..., ControlPlaneProcess]
MakeAgent = Callable[..., AgentProcess]

#: Heartbeats and health reports every second, so offline detection takes ~3s, not 30s.
FAST = ("--agent-heartbeat-interval", "1s", "--agent-health-interval", "1s")
HEARTBEAT_S = 1.0
#: How fast a committed dataset change must be running on its proxy.
APPLY_WITHIN_S = 1.0
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    """A control plane with fast heartbeats shared by this module (tests use unique names).

    Its failed-authentication limit is raised: a revoked agent keeps retrying from 127.0.0.1.
    """
    proc = ControlPlaneProcess(
        tmp_path_factory.mktemp("agent-stream") / "data", *FAST, "--auth-failure-burst", "100000"
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def api(cp: ControlPlaneProcess) -> Iterator[Client]:
    """An admin client of the module's control plane."""
    with Client(cp.grpc, api_key=cp.admin_key, retries=0) as c:
        yield c


@dataclass(frozen=True)
class Shared:
    """Made once per module: an agent key (not bound to a tenant), a tenant, and a receiver the
    proxies forward what they collect to (so they report healthy)."""

    agent_key: str
    tenant: str
    receiver_url: str


@pytest.fixture(scope="module")
def shared(api: Client) -> Iterator[Shared]:
    _, secret = api.keys.create(common_pb2.ROLE_AGENT, display_name="agent stream tests")
    tenant = api.tenants.create(f"agents-{time.time_ns() % 10**8:x}", display_name="Agent tests")
    receiver = ScriptedReceiver().start()
    try:
        yield Shared(str(secret), str(tenant.name), receiver.url)
    finally:
        receiver.stop()


@dataclass
class Fleet:
    """What most tests here need: the module's control plane, an admin client, an agent key, a
    tenant, the agent factory and unique ids."""

    cp: ControlPlaneProcess
    api: Client
    agent_key: str
    tenant: str
    agents: MakeAgent
    uid: UidFn
    receiver_url: str

    def proxy(self, *extra: str, name: str = "", **kwargs: Any) -> AgentProcess:
        """Start a proxy connected to the module's control plane with the shared agent key."""
        kwargs.setdefault("key", self.agent_key)
        return self.agents(name or self.uid("edge"), "--receivers", self.receiver_url, *extra, cp=self.cp, **kwargs)


@pytest.fixture
def fleet(cp: ControlPlaneProcess, api: Client, shared: Shared, agents: MakeAgent, uid: UidFn) -> Fleet:
    return Fleet(cp, api, shared.agent_key, shared.tenant, agents, uid, shared.receiver_url)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[MakeAgent]:
    """Factory of agent processes, killed at the end of the test.

    ``agents(name, cp=..., key=...)`` starts a proxy connected to ``cp``; ``start=False`` only
    builds it.
    """
    made: list[AgentProcess] = []

    def make(
        name: str,
        *extra: str,
        cp: ControlPlaneProcess | None = None,
        key: str = "",
        config_mode: str = "",
        start: bool = True,
    ) -> AgentProcess:
        agent = AgentProcess(
            "proxy",
            name,
            tmp_path / "agents",
            *extra,
            control_url=cp.grpc if cp is not None else "",
            key=key,
            config_mode=config_mode,
        )
        made.append(agent)
        return agent.start() if start else agent

    yield make
    for agent in made:
        agent.kill()


# -- helpers -------------------------------------------------------------------------------------


def datasets_state(agent: fleet_pb2.Agent) -> fleet_pb2.AgentConfigState:
    for state in agent.configs:
        if state.config_type == "datasets":
            return state
    raise AssertionError(f"{agent.name} has no datasets config state: {agent}")


def wait_for(check: Callable[[], T | None], timeout: float = 10.0) -> T:
    """``eventually`` for checks that return a value or None."""
    value = eventually(check, timeout)
    assert value is not None
    return value


def agent_when(
    api: Client, name: str, predicate: Callable[[fleet_pb2.Agent], bool], timeout: float = 10.0
) -> fleet_pb2.Agent:
    """GetAgent until ``predicate`` holds; that view."""

    def check() -> fleet_pb2.Agent | None:
        agent = api.agents.get(name)
        return agent if predicate(agent) else None

    return wait_for(check, timeout)


def synced(api: Client, name: str, *, not_version: str = "") -> fleet_pb2.Agent | None:
    """The agent when connected and running its desired datasets config (other than
    ``not_version``) with no drift and no failure; else None."""
    agent = api.agents.get(name)
    state = datasets_state(agent)
    ok = (
        agent.connected
        and state.status == CS.CONFIG_STATUS_APPLIED
        and state.desired_version not in ("", not_version)
        and state.effective_version == state.desired_version
        and state.reported_version == state.desired_version
        and not agent.drift
        and not agent.config_failed
    )
    return agent if ok else None


def wait_synced(api: Client, name: str, *, not_version: str = "", timeout: float = 10.0) -> fleet_pb2.Agent:
    return wait_for(lambda: synced(api, name, not_version=not_version), timeout=timeout)


def events_in(agent: AgentProcess, dataset: str) -> int | None:
    """Events counted by ``dataset``'s listener on ``agent``; None when it has no listener."""
    comp = healthz_component(agent.healthz(), dataset)
    return None if comp is None else int(comp.get("events_in", 0))


def receiving(agent: AgentProcess, port: int, dataset: str, above: int = 0) -> int:
    """Send one datagram to ``port``; the listener's count once it is above ``above``, else 0."""
    send_udp(port)
    count = events_in(agent, dataset)
    return count if count is not None and count > above else 0


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def source_components(agent: AgentProcess) -> list[str]:
    return [c["name"] for c in agent.healthz()["health"].get("components", []) if c["name"].startswith("source/")]


# -- 1. config reaches the assigned proxy only ---------------------------------------------------


def test_dataset_lifecycle_reaches_only_the_assigned_proxy(fleet: Fleet) -> None:
    api, tenant, uid = fleet.api, fleet.tenant, fleet.uid
    edge = fleet.proxy()
    bystander = fleet.proxy()
    empty = datasets_state(wait_synced(api, edge.name)).desired_version
    bystander_agent = wait_synced(api, bystander.name)
    # Both start with the same (empty) datasets config: versions are content hashes.
    assert datasets_state(bystander_agent).desired_version == empty
    assert bystander.healthz()["configs"]["datasets"] == {
        "version": empty,
        "effective_version": empty,
        "status": "applied",
        "errors": [],
    }
    assert bystander.count_log("Config applied") == 1

    # Created: the listener is bound and counting within a second.
    port = free_port()
    ds = api.datasets.create(tenant, uid("fw"), udp_dataset(port, agent=edge.name))
    eventually(lambda: synced(api, edge.name, not_version=empty) and receiving(edge, port, ds.name), APPLY_WITHIN_S)
    created = datasets_state(wait_synced(api, edge.name, not_version=empty)).desired_version
    assert edge.healthz()["configs"]["datasets"]["effective_version"] == created
    assert (edge.state_dir / "config" / "datasets.pb").exists()

    # Updated (new port): the listener moves within a second and the old port is let go.
    new_port = free_port()
    ds.source.port = new_port
    ds = api.datasets.update(ds, ["source.port"])
    eventually(
        lambda: synced(api, edge.name, not_version=created) and receiving(edge, new_port, ds.name), APPLY_WITHIN_S
    )
    moved = datasets_state(api.agents.get(edge.name)).desired_version
    assert moved not in (empty, created)
    assert port_free(port)

    # Updated (same port, every address): the agent's own listener on the port is no obstacle.
    ds.source.bind_host = "0.0.0.0"
    api.datasets.update(ds, ["source.bind_host"])
    eventually(lambda: synced(api, edge.name, not_version=moved) and receiving(edge, new_port, ds.name), APPLY_WITHIN_S)
    updated = datasets_state(api.agents.get(edge.name)).desired_version
    comp = healthz_component(edge.healthz(), ds.name)
    assert comp is not None and comp["message"] == f"listening on UDP 0.0.0.0:{new_port}"

    # Deleted: the listener stops within a second; the config is the empty one again.
    api.datasets.delete(ds.name)
    eventually(lambda: synced(api, edge.name, not_version=updated) and events_in(edge, ds.name) is None, APPLY_WITHIN_S)
    assert datasets_state(api.agents.get(edge.name)).desired_version == empty
    assert port_free(new_port)
    assert source_components(edge) == []
    assert edge.count_log("Config applied") == 5

    # The bystander was sent nothing the whole time.
    after = api.agents.get(bystander.name)
    state = datasets_state(after)
    assert after.connected and state.desired_version == state.effective_version == empty
    assert bystander.healthz()["configs"]["datasets"]["version"] == empty
    assert source_components(bystander) == []
    assert bystander.count_log("Config applied") == 1


# -- 2. a rejected config is held, the old one keeps running ------------------------------------


def test_failed_config_is_held_and_old_listener_keeps_running(fleet: Fleet) -> None:
    api, tenant, uid = fleet.api, fleet.tenant, fleet.uid
    edge = fleet.proxy()
    empty = datasets_state(wait_synced(api, edge.name)).desired_version
    good_port = free_port()
    good = api.datasets.create(tenant, uid("good"), udp_dataset(good_port, agent=edge.name))
    eventually(lambda: synced(api, edge.name, not_version=empty) and receiving(edge, good_port, good.name))
    good_version = datasets_state(api.agents.get(edge.name)).desired_version

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        bad_port = blocker.getsockname()[1]
        bad = api.datasets.create(tenant, uid("bad"), udp_dataset(bad_port, agent=edge.name))

        agent = agent_when(
            api,
            edge.name,
            lambda a: (
                datasets_state(a).status == CS.CONFIG_STATUS_FAILED
                and datasets_state(a).desired_version != good_version
            ),
        )
        state = datasets_state(agent)
        assert state.reported_version == state.desired_version
        assert state.effective_version == good_version  # still running the last good one
        assert agent.config_failed and agent.drift and agent.connected
        assert len(state.errors) == 1, state.errors
        assert bad.name in state.errors[0] and f"127.0.0.1:{bad_port}" in state.errors[0], state.errors
        assert good.name not in state.errors[0]
        agent = agent_when(api, edge.name, lambda a: a.status == HS.HEALTH_STATUS_DEGRADED)
        assert bad.name in agent.status_message

        # The agent says the same on its API port, and its old listener still counts.
        health = edge.healthz()
        assert health["status"] == "degraded"
        assert health["configs"]["datasets"]["status"] == "failed"
        assert health["configs"]["datasets"]["effective_version"] == good_version
        assert bad.name in health["configs"]["datasets"]["errors"][0]
        count = eventually(lambda: receiving(edge, good_port, good.name))
        eventually(lambda: receiving(edge, good_port, good.name, above=count))
        assert events_in(edge, bad.name) is None

        # Held, not resent: three more health reports arrive on the live stream, no second try.
        seen = agent.last_health.report_time.ToNanoseconds()
        eventually(
            lambda: api.agents.get(edge.name).last_health.report_time.ToNanoseconds() >= seen + 3 * HEARTBEAT_S * 1e9,
            timeout=10,
        )
        assert edge.count_log("Config rejected") == 1
        rejected = [line for line in fleet.cp.log().splitlines() if "Agent rejected a config" in line]
        assert sum(1 for line in rejected if f'"agents/{edge.name}"' in line) == 1
        assert api.agents.get(edge.name).connected

        # Fixed by deleting the bad dataset: the good version is sent again and applied.
        api.datasets.delete(bad.name)
        agent = wait_synced(api, edge.name, timeout=5)
        assert datasets_state(agent).desired_version == good_version
        agent = agent_when(api, edge.name, lambda a: a.status == HS.HEALTH_STATUS_HEALTHY)
        assert not agent.config_failed and not agent.drift
        assert edge.healthz()["configs"]["datasets"]["status"] == "applied"
        assert edge.count_log("Config rejected") == 1
        eventually(lambda: receiving(edge, good_port, good.name, above=count))
    api.datasets.delete(good.name)


# -- 3. the control plane goes away --------------------------------------------------------------


def test_agent_rides_out_control_plane_crash_and_restarts_from_cache(
    start_control_plane: StartCP, agents: MakeAgent, uid: UidFn
) -> None:
    grpc_port = free_port(socket.SOCK_STREAM)
    cp = start_control_plane(*FAST, "--grpc-listen", f"127.0.0.1:{grpc_port}")
    with Client(cp.grpc, api_key=cp.admin_key, retries=0) as admin:
        _, key = admin.keys.create(common_pb2.ROLE_AGENT, display_name="crash test")
        tenant = admin.tenants.create(uid("crash")).name
        edge = agents(uid("edge"), cp=cp, key=key)
        port = free_port()
        ds = admin.datasets.create(tenant, "fw", udp_dataset(port, agent=edge.name))
        eventually(lambda: receiving(edge, port, ds.name))
        wanted = datasets_state(wait_synced(admin, edge.name))

    def rejoined(client: Client) -> fleet_pb2.Agent | None:
        agent = synced(client, edge.name)
        return agent if agent and datasets_state(agent).desired_version == wanted.desired_version else None

    # SIGKILL: the data path does not notice; the agent keeps counting on its listener.
    applied = edge.count_log("Config applied")
    cp.kill()
    eventually(lambda: not edge.healthz()["control_plane"]["connected"])
    count = eventually(lambda: receiving(edge, port, ds.name))
    eventually(lambda: receiving(edge, port, ds.name, above=count))
    assert edge.readyz() == 200

    # Back on the same data dir and port: the agent reconnects and has nothing to catch up on.
    cp.start()
    assert cp.grpc == f"127.0.0.1:{grpc_port}"
    with Client(cp.grpc, api_key=cp.admin_key, retries=0) as admin:
        agent = wait_for(lambda: rejoined(admin))
        assert agent.status != HS.HEALTH_STATUS_OFFLINE
        assert edge.healthz()["control_plane"]["connected"]
        assert edge.count_log("Config applied") == applied  # nothing was resent

    # Down again, and the agent restarts meanwhile: it runs its cached config.
    cp.kill()
    edge.restart()
    eventually(lambda: edge.count_log("Started from cached config", since_start=True) == 1)
    assert edge.readyz() == 200
    count = eventually(lambda: receiving(edge, port, ds.name))
    health = edge.healthz()
    assert not health["control_plane"]["connected"]
    assert health["configs"]["datasets"]["effective_version"] == wanted.desired_version

    cp.start()
    with Client(cp.grpc, api_key=cp.admin_key, retries=0) as admin:
        wait_for(lambda: rejoined(admin))
    assert edge.count_log("Config applied", since_start=True) == 0
    eventually(lambda: receiving(edge, port, ds.name, above=count))


def test_agent_without_a_usable_cache_is_sent_its_config_again(fleet: Fleet) -> None:
    """A hello is the agent's full state: what it does not report running is sent again, even
    when an earlier stream of the same agent had applied it."""
    api = fleet.api
    edge = fleet.proxy()
    port = free_port()
    ds = api.datasets.create(fleet.tenant, fleet.uid("fw"), udp_dataset(port, agent=edge.name))
    eventually(lambda: receiving(edge, port, ds.name))
    version = datasets_state(wait_synced(api, edge.name)).desired_version

    # Re-provisioned: same name, empty data dir.
    edge.stop()
    shutil.rmtree(edge.state_dir)
    edge.start()
    eventually(lambda: receiving(edge, port, ds.name))
    assert datasets_state(wait_synced(api, edge.name)).desired_version == version
    assert edge.count_log("Config applied", since_start=True) == 1
    assert edge.readyz() == 200

    # Restarted while something else holds its port: it reports what it runs (nothing), the
    # config is sent, and rejected with the reason.
    edge.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind(("127.0.0.1", port))
        edge.start()
        agent = agent_when(api, edge.name, lambda a: datasets_state(a).status == CS.CONFIG_STATUS_FAILED)
        state = datasets_state(agent)
        assert state.desired_version == state.reported_version == version and state.effective_version == ""
        assert agent.drift and agent.config_failed
        assert ds.name in state.errors[0] and f"127.0.0.1:{port}" in state.errors[0], state.errors
        assert edge.count_log("Cached config cannot start here", since_start=True) == 1
        assert source_components(edge) == []

    # Restarted once the port is free: it runs its cached config and says so; nothing is resent.
    edge.restart()
    eventually(lambda: receiving(edge, port, ds.name))
    assert edge.count_log("Started from cached config", since_start=True) == 1
    agent = wait_synced(api, edge.name)
    assert datasets_state(agent).desired_version == version
    agent_when(api, edge.name, lambda a: a.status == HS.HEALTH_STATUS_HEALTHY)
    assert edge.count_log("Config applied", since_start=True) == 0
    api.datasets.delete(ds.name)


def test_listener_that_cannot_be_rebound_is_rolled_back(fleet: Fleet) -> None:
    """A change that passes validation but fails to bind leaves the previous listener running."""
    api = fleet.api
    edge = fleet.proxy()
    port = free_port()
    ds = api.datasets.create(fleet.tenant, fleet.uid("fw"), udp_dataset(port, agent=edge.name))
    eventually(lambda: receiving(edge, port, ds.name))
    version = datasets_state(wait_synced(api, edge.name)).desired_version

    # Another address on the same port is taken: moving to 0.0.0.0 cannot bind, which only
    # shows when the agent's own listener on 127.0.0.1 has been let go.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind(("127.0.0.2", port))
        ds.source.bind_host = "0.0.0.0"
        api.datasets.update(ds, ["source.bind_host"])
        agent = agent_when(api, edge.name, lambda a: datasets_state(a).status == CS.CONFIG_STATUS_FAILED)
        state = datasets_state(agent)
        assert state.effective_version == version and agent.drift
        assert ds.name in state.errors[0] and f"0.0.0.0:{port}" in state.errors[0], state.errors
        count = eventually(lambda: receiving(edge, port, ds.name))
        comp = healthz_component(edge.healthz(), ds.name)
        assert comp is not None and comp["message"] == f"listening on UDP 127.0.0.1:{port}"
        eventually(lambda: receiving(edge, port, ds.name, above=count))
    api.datasets.delete(ds.name)


# -- 4. revoking the agent's key ------------------------------------------------------------------


def test_revoked_key_ends_the_stream_and_blocks_reconnects(fleet: Fleet) -> None:
    api = fleet.api
    key, secret = api.keys.create(common_pb2.ROLE_AGENT, display_name="to revoke")
    edge = fleet.proxy(key=secret)
    agent = wait_synced(api, edge.name)
    assert agent.key == key.name

    api.keys.revoke(key.name)
    eventually(lambda: not api.agents.get(edge.name).connected, timeout=1.0)

    def refusals() -> list[dict[str, Any]]:
        return [
            r
            for r in edge.log_records()
            if r.get("msg") == "Control stream failed" and str(r.get("error", "")).startswith("UNAUTHENTICATED")
        ]

    # The stream's end and at least two reconnect attempts, each refused for the revoked key.
    found = wait_for(lambda: refusals() if len(refusals()) >= 3 else None, timeout=10)
    assert all("KEY_REVOKED" in r["error"] and r["level"] == "error" for r in found), found
    agent = api.agents.get(edge.name)
    assert not agent.connected and agent.status == HS.HEALTH_STATUS_OFFLINE
    health = edge.healthz()
    assert not health["control_plane"]["connected"]
    assert "KEY_REVOKED" in health["control_plane"]["last_error"]
    edge.stop()


def test_rotation_grace_end_ends_the_stream(fleet: Fleet) -> None:
    api = fleet.api
    key, secret = api.keys.create(common_pb2.ROLE_AGENT, display_name="to rotate")
    edge = fleet.proxy(key=secret)
    wait_synced(api, edge.name)
    api.keys.rotate(key.name, grace_seconds=2)
    # Still connected during the grace period, closed soon after it ends (checked every 2 s).
    assert api.agents.get(edge.name).connected
    eventually(lambda: not api.agents.get(edge.name).connected, timeout=8)

    def refused() -> bool:
        return any(
            r.get("msg") == "Control stream failed" and "UNAUTHENTICATED" in str(r.get("error", ""))
            for r in edge.log_records()
        )

    eventually(refused, timeout=10)
    edge.stop()


# -- 5. silent agents go offline -----------------------------------------------------------------


def test_silent_agent_goes_offline_after_three_heartbeats(fleet: Fleet) -> None:
    api = fleet.api
    frozen = fleet.proxy()
    killed = fleet.proxy()
    for edge in (frozen, killed):
        wait_synced(api, edge.name)
        agent_when(api, edge.name, lambda a: a.status == HS.HEALTH_STATUS_HEALTHY)

    # SIGSTOP: the TCP connection stays open but nothing more arrives.
    frozen.signal(signal.SIGSTOP)
    start = time.monotonic()
    # SIGKILL: the connection breaks and the agent is offline at once.
    killed.signal(signal.SIGKILL)
    gone = agent_when(api, killed.name, lambda a: not a.connected, timeout=1.0)
    assert gone.status == HS.HEALTH_STATUS_OFFLINE and gone.status_message == "not connected"

    assert api.agents.get(frozen.name).connected  # an open connection is not enough...
    agent = agent_when(api, frozen.name, lambda a: a.status == HS.HEALTH_STATUS_OFFLINE, timeout=3 * HEARTBEAT_S + 3)
    assert time.monotonic() - start >= HEARTBEAT_S  # ...but it is given its three intervals
    assert agent.status_message in ("missed three heartbeats", "not connected")
    # The control plane then closes the stream it considers dead.
    eventually(lambda: not api.agents.get(frozen.name).connected, timeout=3)

    # Resumed, the frozen agent reconnects and is healthy again.
    frozen.signal(signal.SIGCONT)
    agent_when(api, frozen.name, lambda a: a.connected and a.status == HS.HEALTH_STATUS_HEALTHY)


# -- 6. work leases -------------------------------------------------------------------------------


def _aborted(call: Callable[[], Any]) -> RpcError:
    with pytest.raises(RpcError) as info:
        call()
    assert info.value.code == Code.ABORTED, info.value
    return info.value


def test_work_leases_go_to_exactly_one_holder(fleet: Fleet) -> None:
    api, cp, agent_key = fleet.api, fleet.cp, fleet.agent_key
    prefix = f"intake/{fleet.uid('work')}"
    item = f"{prefix}/a--1700000000--syslog.zst"
    with Client(cp.grpc, api_key=agent_key, retries=0) as w:
        first = w.work.claim([item], "piper-a", ttl_seconds=1)
        assert [(lease.item, lease.holder, lease.generation) for lease in first.leases] == [(item, "piper-a", 1)]
        assert not first.done
        lease_a = first.leases[0]
        assert lease_a.expire_time.ToNanoseconds() > time.time_ns()
        second = w.work.claim([item], "piper-b", ttl_seconds=30)
        assert not second.leases and not second.done

        # Expired after 1s: the next claim wins with a higher generation (a fencing token).
        lease_b = eventually(lambda: w.work.claim([item], "piper-b", ttl_seconds=30).leases, timeout=5)[0]
        assert lease_b.holder == "piper-b" and lease_b.generation == 2

        # The old holder lost it: renew, complete and release are refused.
        err = _aborted(lambda: w.work.renew(lease_a, ttl_seconds=30))
        assert err.reason == "LEASE_LOST" and item in err.message
        _aborted(lambda: w.work.complete(lease_a))
        _aborted(lambda: w.work.release(lease_a))

        # The holder renews and completes; the item is done for everyone after that.
        renewed = w.work.renew(lease_b, ttl_seconds=60)
        assert renewed.generation == 2 and renewed.expire_time.ToNanoseconds() > lease_b.expire_time.ToNanoseconds()
        w.work.complete(renewed)
        later = w.work.claim([item, f"{prefix}/fresh"], "piper-c")
        assert list(later.done) == [item]
        assert [lease.item for lease in later.leases] == [f"{prefix}/fresh"]
        _aborted(lambda: w.work.renew(renewed))
        _aborted(lambda: w.work.complete(renewed))

        # A released item can be claimed again at once, with the next generation.
        fresh = later.leases[0]
        w.work.release(fresh)
        again = w.work.claim([fresh.item], "piper-d").leases
        assert [(lease.holder, lease.generation) for lease in again] == [("piper-d", 2)]

    # Racing: eight workers with their own connections claim the same items at once.
    race_items = [f"{prefix}/race-{i}" for i in range(5)]
    holders = [f"worker-{i}" for i in range(8)]
    barrier = threading.Barrier(len(holders))

    def claim(holder: str) -> work_pb2.ClaimWorkResponse:
        with Client(cp.grpc, api_key=agent_key, retries=0) as c:
            c.work.claim([f"{prefix}/warm-up-{holder}"], holder)  # connected before the starting line
            barrier.wait(timeout=10)
            response: work_pb2.ClaimWorkResponse = c.work.claim(race_items, holder, ttl_seconds=30)
            return response

    with ThreadPoolExecutor(len(holders)) as pool:
        results = list(pool.map(claim, holders))
    won = [(lease.item, lease.holder) for r in results for lease in r.leases]
    assert sorted(item for item, _ in won) == race_items, won
    for r in results:
        assert all(lease.generation == 1 for lease in r.leases)

    # Leases are for agents (and admins): a user key is refused.
    _, editor = api.keys.create(common_pb2.ROLE_EDITOR, display_name="not a worker")
    with Client(cp.grpc, api_key=editor, retries=0) as c, pytest.raises(RpcError) as info:
        c.work.claim([f"{prefix}/x"], "me")
    assert info.value.code == Code.PERMISSION_DENIED


# -- 7. malformed streams -------------------------------------------------------------------------


def hello(name: str, instance: str = "i-1", **kwargs: Any) -> agent_pb2.ConnectRequest:
    return agent_pb2.ConnectRequest(
        sequence=1,
        hello=agent_pb2.AgentHello(
            kind=agent_pb2.AGENT_KIND_PROXY, agent_name=name, instance_id=instance, version="test", **kwargs
        ),
    )


class RawStream:
    """One ``AgentService/Connect`` call driven message by message."""

    def __init__(self, channel: grpc.aio.Channel, key: str) -> None:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        self.call = stub.Connect(metadata=(("authorization", f"Bearer {key}"),), timeout=30)

    async def send(self, msg: agent_pb2.ConnectRequest) -> None:
        await self.call.write(msg)

    async def read(self) -> agent_pb2.ConnectResponse:
        msg = await asyncio.wait_for(self.call.read(), 10)
        assert msg is not grpc.aio.EOF, "the stream ended"
        return cast(agent_pb2.ConnectResponse, msg)

    async def read_kind(self, kind: str) -> agent_pb2.ConnectResponse:
        """Read until a message of ``kind`` (skipping others)."""
        while True:
            msg = await self.read()
            if msg.WhichOneof("message") == kind:
                return msg

    async def error(self) -> RpcError:
        """Read until the call fails; its error."""
        while True:
            try:
                msg = await asyncio.wait_for(self.call.read(), 10)
            except grpc.aio.AioRpcError as exc:
                return from_grpc_error(exc)
            assert msg is not grpc.aio.EOF, "the stream ended without an error"

    def close(self) -> None:
        self.call.cancel()


def test_malformed_streams_are_refused(fleet: Fleet) -> None:
    api, cp, agent_key = fleet.api, fleet.cp, fleet.agent_key
    _, user_key = api.keys.create(common_pb2.ROLE_EDITOR, display_name="not an agent")
    name = fleet.uid("raw")

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(cp.grpc) as channel:
            # The first message must be hello.
            s = RawStream(channel, agent_key)
            await s.send(agent_pb2.ConnectRequest(sequence=1, heartbeat=agent_pb2.Heartbeat()))
            err = await s.error()
            assert err.code == Code.INVALID_ARGUMENT, err
            assert [v.field for v in err.violations] == ["hello"] and "heartbeat" in err.violations[0].description

            # A hello with nothing valid in it names every bad field.
            s = RawStream(channel, agent_key)
            await s.send(agent_pb2.ConnectRequest(sequence=1, hello=agent_pb2.AgentHello(agent_name="Bad Name")))
            err = await s.error()
            assert err.code == Code.INVALID_ARGUMENT, err
            assert {v.field for v in err.violations} == {"hello.agent_name", "hello.kind", "hello.instance_id"}

            # A message that sets nothing, after a good hello.
            s = RawStream(channel, agent_key)
            await s.send(hello(f"{name}-empty"))
            assert (await s.read()).welcome.agent == f"agents/{name}-empty"
            await s.send(agent_pb2.ConnectRequest(sequence=2))
            err = await s.error()
            assert err.code == Code.INVALID_ARGUMENT, err
            assert [v.field for v in err.violations] == ["message"]

            # Bigger than the 4 MiB limit.
            s = RawStream(channel, agent_key)
            await s.send(hello(f"{name}-big", hostname="x" * (MAX_MESSAGE_BYTES + 1)))
            err = await s.error()
            assert err.code == Code.RESOURCE_EXHAUSTED, err

            # Not an agent key.
            s = RawStream(channel, user_key)
            await s.send(hello(f"{name}-user"))
            err = await s.error()
            assert err.code == Code.PERMISSION_DENIED, err
            assert "agent key" in err.message

            # A sequence gap: the server asks for full state and ignores messages until it has it.
            s = RawStream(channel, agent_key)
            await s.send(hello(f"{name}-gap"))
            await s.read_kind("welcome")
            update = (await s.read_kind("config_update")).config_update
            await s.send(
                agent_pb2.ConnectRequest(
                    sequence=2,
                    config_ack=agent_pb2.ConfigAck(
                        config_type=update.config_type,
                        version=update.version,
                        nonce=update.nonce,
                        status=CS.CONFIG_STATUS_APPLIED,
                    ),
                )
            )
            await s.send(agent_pb2.ConnectRequest(sequence=5, health=agent_pb2.HealthReport(message="after a gap")))
            assert (await s.read()).WhichOneof("message") == "request_full_state"
            await s.send(agent_pb2.ConnectRequest(sequence=6, heartbeat=agent_pb2.Heartbeat()))
            full = hello(f"{name}-gap")
            full.sequence = 7
            full.hello.applied.add(
                config_type="datasets",
                version=update.version,
                status=CS.CONFIG_STATUS_APPLIED,
                effective_version=update.version,
            )
            await s.send(full)
            await s.send(agent_pb2.ConnectRequest(sequence=8, health=agent_pb2.HealthReport(message="resynced")))
            agent = await asyncio.to_thread(
                agent_when, api, f"{name}-gap", lambda a: a.last_health.message == "resynced"
            )
            assert synced(api, agent.name) is not None

            # The same agent_name from another instance while the first is connected.
            other = RawStream(channel, agent_key)
            await other.send(hello(f"{name}-gap", instance="i-2"))
            err = await other.error()
            assert err.code == Code.ALREADY_EXISTS and err.reason == "AGENT_NAME_IN_USE", err
            # The first stream is untouched and still answered.
            agent = api.agents.get(f"{name}-gap")
            assert agent.connected and agent.instance_id == "i-1"
            await s.send(agent_pb2.ConnectRequest(sequence=9, health=agent_pb2.HealthReport(message="still here")))
            await asyncio.to_thread(agent_when, api, f"{name}-gap", lambda a: a.last_health.message == "still here")
            s.close()

            # And the control plane keeps serving: a new stream is welcomed.
            s = RawStream(channel, agent_key)
            await s.send(hello(f"{name}-after"))
            assert (await s.read()).welcome.heartbeat_interval.ToNanoseconds() == int(HEARTBEAT_S * 1e9)
            s.close()

    asyncio.run(scenario())
    assert api.health.get() is not None
    eventually(lambda: not api.agents.get(f"{name}-gap").connected)


# -- 8. WatchAgents and SendCommand ---------------------------------------------------------------


def test_watch_agents_and_send_command(fleet: Fleet) -> None:
    api, cp, tenant, uid = fleet.api, fleet.cp, fleet.tenant, fleet.uid
    first = fleet.proxy()
    first_version = datasets_state(wait_synced(api, first.name)).desired_version
    second = fleet.proxy(start=False)
    first_name, second_name = f"agents/{first.name}", f"agents/{second.name}"

    async def scenario() -> None:
        async with AsyncClient(cp.grpc, api_key=cp.admin_key, retries=0) as c:
            events: asyncio.Queue[Event] = asyncio.Queue()
            received: list[Event] = []

            async def pump() -> None:
                stream = cast(AsyncGenerator[Event, None], c.agents.watch())
                async with contextlib.aclosing(stream):
                    async for event in stream:
                        events.put_nowait(event)
                        received.append(event)

            async def until(match: Callable[[Event], bool]) -> Event:
                """The next event that matches (within 10s)."""
                async with asyncio.timeout(10):
                    while True:
                        event = await events.get()
                        if match(event):
                            return event

            watcher = asyncio.create_task(pump())
            try:
                # The current agents come first, each once, before any change.
                existing = await until(lambda e: e.agent.name == first_name)
                assert existing.type == Event.EVENT_TYPE_EXISTING
                assert existing.agent.connected and datasets_state(existing.agent).status == CS.CONFIG_STATUS_APPLIED

                # A new agent connects, is sent its config and applies it.
                await asyncio.to_thread(second.start)
                joined = await until(lambda e: e.agent.name == second_name)
                assert joined.type == Event.EVENT_TYPE_CHANGED and joined.agent.connected
                await until(
                    lambda e: (
                        e.agent.name == second_name
                        and any(s.status == CS.CONFIG_STATUS_APPLIED for s in e.agent.configs)
                    )
                )

                # A dataset for the first agent: PENDING, then APPLIED with the new version.
                ds = await c.datasets.create(tenant, uid("watch"), udp_dataset(free_port(), agent=first.name))
                pending = await until(
                    lambda e: e.agent.name == first_name and datasets_state(e.agent).desired_version != first_version
                )
                assert pending.type == Event.EVENT_TYPE_CHANGED
                applied = await until(
                    lambda e: (
                        e.agent.name == first_name
                        and datasets_state(e.agent).effective_version == datasets_state(pending.agent).desired_version
                    )
                )
                assert datasets_state(applied.agent).status == CS.CONFIG_STATUS_APPLIED and not applied.agent.drift

                # A command and its result, over the agent's stream.
                result = await c.agents.send_command(
                    first_name, agent_pb2.Command(reload=agent_pb2.Reload()), wait_seconds=10
                )
                assert result.ok and result.id and result.message

                # The second agent stops: the watch shows it disconnected; commands to it fail.
                await asyncio.to_thread(second.stop)
                gone = await until(lambda e: e.agent.name == second_name and not e.agent.connected)
                assert gone.agent.status == HS.HEALTH_STATUS_OFFLINE
                with pytest.raises(RpcError) as info:
                    await c.agents.send_command(
                        second_name, agent_pb2.Command(reload=agent_pb2.Reload()), wait_seconds=5
                    )
                assert info.value.code == Code.FAILED_PRECONDITION and info.value.reason == "AGENT_OFFLINE"
                with pytest.raises(RpcError) as info:
                    await c.agents.send_command("agents/no-such-agent", agent_pb2.Command(reload=agent_pb2.Reload()))
                assert info.value.code == Code.NOT_FOUND
                await c.datasets.delete(ds.name)

                # Every agent once as EXISTING, all of them before the first change.
                types = [e.type for e in received]
                first_change = types.index(Event.EVENT_TYPE_CHANGED)
                assert set(types[:first_change]) == {Event.EVENT_TYPE_EXISTING}
                assert Event.EVENT_TYPE_EXISTING not in types[first_change:]
                initial = [e.agent.name for e in received[:first_change]]
                assert len(initial) == len(set(initial)) and first_name in initial
                assert second_name not in initial
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    asyncio.run(scenario())


# -- 9. local-only and hybrid config modes --------------------------------------------------------


def write_local_config(path: Path, datasets: dict[str, datasets_pb2.Dataset]) -> Path:
    items = []
    for name, ds in datasets.items():
        item = json_format.MessageToDict(ds)
        item["name"] = name
        items.append(item)
    path.write_text(yaml.safe_dump({"datasets": items}))
    return path


def test_local_only_mode_runs_without_a_control_plane(agents: MakeAgent, tmp_path: Path, uid: UidFn) -> None:
    port = free_port()
    local = "tenants/local/datasets/syslog"
    config = write_local_config(tmp_path / "local.yaml", {local: udp_dataset(port)})
    edge = agents(uid("edge"), "--config", str(config), config_mode="local-only")
    assert not edge.key_file.exists()
    assert edge.readyz() == 200
    eventually(lambda: receiving(edge, port, local))
    health = edge.healthz()
    assert health["config_mode"] == "local-only"
    assert health["configs"]["datasets"]["status"] == "applied"
    assert not health["control_plane"]["connected"]
    assert edge.count_log("Control stream failed") == 0


def test_hybrid_mode_local_dataset_wins_a_port(fleet: Fleet, tmp_path: Path) -> None:
    api, tenant, uid = fleet.api, fleet.tenant, fleet.uid
    name = uid("edge")
    shared_port, other_port = free_port(), free_port()
    clash = api.datasets.create(tenant, uid("clash"), udp_dataset(shared_port, agent=name))
    extra = api.datasets.create(tenant, uid("extra"), udp_dataset(other_port, agent=name))
    local = "tenants/local/datasets/mine"
    config = write_local_config(tmp_path / "hybrid.yaml", {local: udp_dataset(shared_port)})
    edge = fleet.proxy("--config", str(config), name=name, config_mode="hybrid")

    agent = wait_synced(api, name)
    assert not agent.config_failed and agent.status != HS.HEALTH_STATUS_DEGRADED
    eventually(lambda: receiving(edge, shared_port, local))
    eventually(lambda: receiving(edge, other_port, extra.name))
    assert sorted(source_components(edge)) == sorted([f"source/{local}", f"source/{extra.name}"])
    assert events_in(edge, clash.name) is None
    assert edge.healthz()["configs"]["datasets"]["status"] == "applied"
    assert edge.count_log("Config rejected") == 0
    api.datasets.delete(clash.name)
    api.datasets.delete(extra.name)


# -- the floe agents CLI ---------------------------------------------------------------------------


def test_floe_agents_cli_lists_and_drains_and_reloads_a_proxy(fleet: Fleet) -> None:
    api = fleet.api
    edge = fleet.proxy()
    port = free_port()
    ds = api.datasets.create(fleet.tenant, fleet.uid("cli"), udp_dataset(port, agent=edge.name))
    wait_synced(api, edge.name)
    env = {"FLOE_CONTROL_URL": fleet.cp.grpc, "FLOE_API_KEY": fleet.cp.admin_key, "PATH": "/usr/bin:/bin"}

    def floe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "floe.cli", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    listed = floe("-o", "json", "agents", "list", "--kind", "proxy")
    assert listed.returncode == 0, listed.stderr
    assert f"agents/{edge.name}" in {a["name"] for a in json.loads(listed.stdout)}
    table = floe("agents", "get", edge.name)
    assert table.returncode == 0 and "healthy" in table.stdout and "proxy" in table.stdout

    def bound() -> bool:
        return healthz_component(edge.healthz(), ds.name) is not None

    assert bound()
    drained = floe("agents", "command", edge.name, "drain")
    assert drained.returncode == 0, drained.stderr
    assert drained.stdout.startswith("ok: Drained")
    eventually(lambda: not bound(), timeout=5)
    # The port is free again while drained.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))
    reloaded = floe("agents", "command", edge.name, "reload")
    assert reloaded.returncode == 0 and "1 listener(s) bound" in reloaded.stdout, reloaded.stdout
    eventually(bound, timeout=5)

    missing = floe("agents", "command", "no-such-agent", "reload")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
