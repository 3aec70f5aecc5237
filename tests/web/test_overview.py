"""The Overview (landing page): agents by status, a row per pipeline stage whose rates come alive
when syslog flows through the ``floe up`` proxy, the control plane's health, and problems."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from floe.v1 import common_pb2, health_pb2, keys_pb2
from tests.helpers import eventually
from tests.integration.agentkit import AgentProcess, free_port, send_udp, udp_dataset
from tests.web.conftest import Stack, shot

TENANT = "overview-acme"
STAGES = ("Proxy", "Receiver", "Piper", "Packer", "Query", "Connector")


@pytest.fixture
def syslog_traffic(stack: Stack, tmp_path: Path) -> Iterator[None]:
    """A proxy of this test's own (so no other test's datasets on the shared ``local`` proxy can
    hold up its config), a syslog/UDP dataset on it, and a sender feeding it until the test ends."""
    port = free_port()
    receiver = json.loads((stack.data_dir / "agents" / "receiver" / "agent.json").read_text())["webhook"]
    with stack.client() as client:
        _, key = client.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE, display_name="overview")
        client.tenants.create(TENANT)
        client.datasets.create(TENANT, "syslog", udp_dataset(port, agent="overview-edge"))
    edge = AgentProcess(
        "proxy", "overview-edge", tmp_path, "--receivers", f"http://{receiver}", control_url=stack.grpc, key=key
    ).start()
    done = threading.Event()

    def send() -> None:
        while not done.is_set():
            for _ in range(20):
                send_udp(port)
            done.wait(0.05)

    sender = threading.Thread(target=send, daemon=True)
    try:
        with stack.client() as client:
            eventually(lambda: client.agents.get("overview-edge").status == health_pb2.HEALTH_STATUS_HEALTHY, 30)
        sender.start()
        yield
    finally:
        done.set()
        if sender.is_alive():
            sender.join(5)
        edge.kill()


def test_overview_shows_status_counts_stages_and_control_plane(
    signed_in: Page, stack: Stack, syslog_traffic: None
) -> None:
    page = signed_in  # the landing page
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    expect(page.get_by_text("since this page opened")).to_be_visible()

    # Counts by status match what the SDK sees.
    with stack.client() as client:
        agents = client.agents.list()
    by_status = Counter(a.status for a in agents)
    for label, status in (
        ("Healthy", health_pb2.HEALTH_STATUS_HEALTHY),
        ("Degraded", health_pb2.HEALTH_STATUS_DEGRADED),
        ("Unhealthy", health_pb2.HEALTH_STATUS_UNHEALTHY),
        ("Offline", health_pb2.HEALTH_STATUS_OFFLINE),
    ):
        expect(page.get_by_label(re.compile(f"^{label}: "))).to_have_text(str(by_status[status]))

    # One row per stage, in data-path order, each with its agents.
    rows = page.get_by_role("region", name="Pipeline").get_by_role("row")
    expect(rows).to_have_count(len(STAGES) + 1)
    for i, stage in enumerate(STAGES, start=1):
        expect(rows.nth(i)).to_contain_text(stage)
        expect(rows.nth(i)).to_contain_text(re.compile(r"\d+ agents?"))
    dlq = page.get_by_role("link", name=re.compile("DLQ size"))
    expect(dlq).to_have_attribute("href", "#/dlq")

    # Syslog flows through the proxy: once two health reports have arrived, its rate is not zero
    # (rates come from counter deltas between reports, computed in the browser).
    proxy = page.get_by_role("row", name="Proxy")
    expect(proxy.get_by_role("img", name=re.compile("Proxy in per second"))).to_be_visible()
    expect(proxy).to_contain_text(re.compile(r"\b(0\.[1-9]|[1-9][\d.]*K?)/s"), timeout=60_000)
    expect(proxy.get_by_role("img", name=re.compile(r"Proxy in per second: now [1-9]"))).to_be_visible()

    cp = page.get_by_role("region", name="Control plane")
    expect(cp).to_contain_text("Healthy")
    expect(cp).to_contain_text("store")
    with stack.client() as client:
        version = client.health.get().version
    expect(cp).to_contain_text(version)
    expect(page.get_by_role("heading", name="Problems")).to_be_visible()
    shot(page, "overview")

    # A stage links to the agents of that kind.
    proxy.get_by_role("link", name="Proxy").click()
    expect(page.get_by_label("Kind")).to_have_value("1")
    expect(page.get_by_role("link", name="local", exact=True)).to_be_visible()
