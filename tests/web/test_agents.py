"""The Agents page: the live list (an agent started while the page is open appears without a
reload and goes offline when stopped), filters, the detail of the ``floe up`` proxy with its
components and config versions, and commands (Retry DLQ, Reload) with their results."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from floe.v1 import common_pb2, keys_pb2
from tests.integration.agentkit import AgentProcess
from tests.web.conftest import Stack, shot, sign_in


@pytest.fixture
def extra_proxy(stack: Stack, tmp_path: Path) -> Iterator[AgentProcess]:
    """A second proxy (``fleet-extra``) with its own agent key, not started yet. No dataset is
    assigned to it, so it never forwards anything (its receiver URL is never used)."""
    with stack.client() as client:
        key, secret = client.keys.create(
            common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE, display_name="fleet web test"
        )
    agent = AgentProcess(
        "proxy",
        "fleet-extra",
        tmp_path,
        "--receivers",
        "http://127.0.0.1:9",
        "--labels",
        "site=lab",
        control_url=stack.grpc,
        key=secret,
    )
    try:
        yield agent
    finally:
        agent.kill()
        with stack.client() as client:
            client.keys.revoke(key.name)


def test_an_agent_appears_live_and_goes_offline(signed_in: Page, extra_proxy: AgentProcess) -> None:
    page = signed_in
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Agents").click()
    expect(page.get_by_role("heading", name="Agents", exact=True)).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    local = page.get_by_role("row").filter(has=page.get_by_role("link", name="local", exact=True))
    expect(local).to_contain_text("Proxy")
    expect(local).to_contain_text("Healthy")
    extra = page.get_by_role("row").filter(has=page.get_by_role("link", name="fleet-extra", exact=True))
    expect(extra).to_have_count(0)

    extra_proxy.start()  # while the page is open: the row arrives through the watch stream
    expect(extra).to_be_visible()
    expect(extra).to_contain_text("Healthy")
    expect(extra).to_contain_text(re.compile(r"Connected (just now|\d+s ago)"))
    shot(page, "agents")

    # Filters: by kind, and by text (labels too).
    page.get_by_label("Kind").select_option("Piper")
    expect(local).to_have_count(0)
    expect(extra).to_have_count(0)
    page.get_by_label("Kind").select_option("Proxy")
    expect(local).to_be_visible()
    page.get_by_label("Filter").fill("site=lab")
    expect(extra).to_be_visible()
    expect(local).to_have_count(0)
    page.get_by_label("Filter").fill("no-such-agent")
    expect(page.get_by_role("heading", name="No agent matches the filter")).to_be_visible()
    page.get_by_role("button", name="Clear the filter").click()
    expect(local).to_be_visible()

    extra_proxy.stop()  # a clean stop ends its stream: offline at once, still without a reload
    expect(extra).to_contain_text("Offline")
    expect(extra).to_contain_text("Disconnected")

    # The overview lists it as a problem, linking to its detail.
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Overview").click()
    problems = page.get_by_role("region", name="Problems")
    expect(problems.get_by_role("link", name="fleet-extra")).to_be_visible()
    problems.get_by_role("link", name="fleet-extra").click()
    expect(page.get_by_role("heading", name="fleet-extra", level=1)).to_be_visible()
    expect(page.get_by_role("region", name="About")).to_contain_text("site=lab")
    expect(page.get_by_role("button", name="Retry DLQ")).to_be_disabled()  # commands reach connected agents only


def test_agent_detail_components_configs_and_commands(signed_in: Page, stack: Stack) -> None:
    page = signed_in
    page.goto(stack.url + "#/agents")
    page.get_by_role("link", name="local", exact=True).click()
    expect(page.get_by_role("heading", name="local", level=1)).to_be_visible()

    components = page.get_by_role("region", name="Components")
    for name in ("batcher", "forwarder", "spool"):
        expect(components.get_by_role("cell", name=re.compile(f"^{name}"))).to_be_visible()
    expect(components).to_contain_text("proxy.forwarder")

    configs = page.get_by_role("region", name="Config versions")
    row = configs.get_by_role("row").filter(has_text="datasets")
    expect(row).to_contain_text("Applied")
    with stack.client() as client:
        agent = client.agents.get("local")
    desired = next(c.desired_version for c in agent.configs if c.config_type == "datasets")
    expect(row).to_contain_text(desired[:12])

    # Retry DLQ asks first, then shows the agent's answer beside the button.
    page.get_by_role("button", name="Retry DLQ").click()
    confirm = page.get_by_role("group", name="Move every dead-lettered batch back to the queue?")
    expect(confirm).to_be_visible()
    confirm.get_by_role("button", name="No").click()
    expect(page.get_by_text(re.compile(r"Moved \d+ batch"))).to_have_count(0)
    page.get_by_role("button", name="Retry DLQ").click()
    confirm.get_by_role("button", name="Yes").click()
    expect(page.get_by_text(re.compile(r"Moved \d+ batch\(es\) from the DLQ back to the queue"))).to_be_visible()
    expect(page.get_by_role("region", name="Commands")).to_contain_text("moved")  # the result's details

    page.get_by_role("button", name="Reload").click()
    expect(page.get_by_text(re.compile(r"Reloaded: \d+ listener"))).to_be_visible()
    shot(page, "agent-detail")

    page.set_viewport_size({"width": 420, "height": 800})
    page.get_by_role("link", name="All agents").click()
    expect(page.get_by_role("link", name="local", exact=True)).to_be_visible()
    shot(page, "agents-narrow")


def test_unknown_agent_explains(signed_in: Page, stack: Stack) -> None:
    page = signed_in
    page.goto(stack.url + "#/agents/no-such-agent")
    expect(page.get_by_role("heading", name="No agent named no-such-agent")).to_be_visible()
    page.get_by_role("link", name="See all agents").click()
    expect(page.get_by_role("heading", name="Agents", exact=True)).to_be_visible()


def test_the_stream_reconnects_after_failures(page: Page, stack: Stack) -> None:
    """Two watch attempts fail (as when the control plane restarts): the page says so once, keeps
    the last known list, and goes live again by itself."""
    failures = {"left": 2}

    def watch(route: Route) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            # A trailers-only gRPC-web answer, as the bridge sends for a failed call.
            route.fulfill(
                status=200,
                headers={
                    "content-type": "application/grpc-web+proto",
                    "grpc-status": "14",
                    "grpc-message": "the control plane is restarting",
                },
                body=b"",
            )
        else:
            route.continue_()

    page.route("**/floe.v1.FleetService/WatchAgents", watch)
    sign_in(page, stack)
    page.goto(stack.url + "#/agents")
    expect(page.get_by_role("alert")).to_contain_text("Live updates stopped: the control plane is restarting")
    expect(page.get_by_role("alert")).to_have_count(1)  # one note, not one per attempt
    expect(page.get_by_role("status").filter(has_text="Reconnecting")).to_be_visible()
    expect(page.get_by_role("link", name="local", exact=True)).to_be_visible()  # the list still loads
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    assert failures["left"] == 0
