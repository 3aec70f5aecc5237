"""The dead-letters page against the ``floe up`` stack: the proxy's empty DLQ, batches a receiver
refused, and retrying them (selected, then all) once the cause is fixed.

Batches are dead-lettered the way they are in production: records reach the proxy for a dataset
whose tenant is then suspended while they wait in the proxy's batcher (it seals a batch one second
after its first record), so the receiver, already told of the suspension, answers 410 and the
proxy moves the batch to its DLQ. Once the tenant is active again the retried batches are taken.
"""

from __future__ import annotations

import re
import socket
import time
from functools import partial
from typing import Any

from playwright.sync_api import Page, expect

from floe import Client
from floe.v1 import agent_pb2, datasets_pb2, fleet_pb2, tenants_pb2
from tests.helpers import eventually
from tests.integration.agentkit import free_port, healthz_component, http_get
from tests.web.conftest import Stack, shot

PROXY = "local"  # the proxy `floe up` runs
RECEIVER = "receiver"
ATTEMPTS = 3


def config_state(agent: fleet_pb2.Agent, config_type: str) -> fleet_pb2.AgentConfigState | None:
    return next((c for c in agent.configs if c.config_type == config_type), None)


def applied(client: Client, agent: str, config_type: str, not_version: str = "") -> str:
    """The version ``agent`` runs of ``config_type`` once it is the desired one (and not
    ``not_version``); else ""."""
    state = config_state(client.agents.get(agent), config_type)
    if state is None or state.desired_version in ("", not_version) or state.effective_version != state.desired_version:
        return ""
    return str(state.effective_version)


def source_events(proxy_api: str, dataset: str) -> int | None:
    status, body = http_get(proxy_api, "/healthz")
    assert status == 200, body
    comp: dict[str, Any] | None = healthz_component(body, dataset)
    return None if comp is None else int(comp.get("events_in", 0))


def listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def send_lines(port: int, tag: str, count: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"".join(b"%s line %d\n" % (tag.encode(), i) for i in range(count)))


def set_state(client: Client, tenant: str, state: tenants_pb2.Tenant.State.ValueType) -> None:
    client.tenants.update(tenants_pb2.Tenant(name=f"tenants/{tenant}", state=state), ["state"])


def dead_letter_once(client: Client, tenant: str, ports: dict[str, int]) -> list[agent_pb2.DlqItem]:
    """Records to each dataset of ``tenant``, then the tenant suspended while they wait in the
    proxy's batcher; the proxy's DLQ items of ``tenant`` once one more per dataset is there."""
    proxy_api = client.agents.get(PROXY).api_address
    before = len(client.agents.dlq(PROXY, tenant=tenant))
    names = {ds: f"tenants/{tenant}/datasets/{ds}" for ds in ports}
    for port in ports.values():  # the listeners are bound (again)
        eventually(partial(listening, port), 20)
    seen = {ds: source_events(proxy_api, names[ds]) or 0 for ds in ports}
    for ds, port in ports.items():
        send_lines(port, ds, 3)

    def all_read() -> bool:
        return all((source_events(proxy_api, names[ds]) or 0) >= seen[ds] + 3 for ds in ports)

    def settled() -> list[agent_pb2.DlqItem]:
        items: list[agent_pb2.DlqItem] = client.agents.dlq(PROXY, tenant=tenant)
        return items if len(items) >= before + len(ports) else []

    eventually(all_read)
    # Within the batcher's second: the receiver learns of the suspension in milliseconds.
    set_state(client, tenant, tenants_pb2.Tenant.STATE_SUSPENDED)
    return eventually(settled, 15)


def dead_letter(client: Client, tenant: str, ports: dict[str, int]) -> list[agent_pb2.DlqItem]:
    """One dead-lettered batch per dataset of ``tenant`` on the proxy; the proxy's DLQ items."""
    for _ in range(ATTEMPTS - 1):
        try:
            return dead_letter_once(client, tenant, ports)
        except AssertionError:
            # A loaded machine let a batch through before the receiver heard: try again.
            set_state(client, tenant, tenants_pb2.Tenant.STATE_ACTIVE)
    return dead_letter_once(client, tenant, ports)


def test_dlq_empty_list_and_retry(signed_in: Page, stack: Stack) -> None:
    page = signed_in
    tenant = f"dlq-{int(time.time() * 1000) % 10**8}"
    ports = {"fw": free_port(socket.SOCK_STREAM), "web": free_port(socket.SOCK_STREAM)}
    with stack.client() as client:
        client.tenants.create(tenant, display_name="DLQ test")
        for ds, port in ports.items():
            dataset = datasets_pb2.Dataset(
                source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_RAW_TCP, bind_host="127.0.0.1", port=port),
                active=True,
            )
            dataset.proxy.agent = PROXY
            client.datasets.create(tenant, ds, dataset)

        # The tenant picker learns of the new tenant on a fresh load.
        page.reload()
        page.get_by_role("navigation", name="Sections").get_by_role("link", name="Dead letters").click()
        expect(page.get_by_role("heading", name="Dead letters", level=1)).to_be_visible()
        page.get_by_label("Tenant").select_option(tenant)
        agents = page.get_by_role("table", name="Agents with a dead-letter queue")
        for name in (PROXY, RECEIVER, "connector"):
            expect(agents.get_by_role("link", name=name, exact=True)).to_be_visible()
        agents.get_by_role("link", name=PROXY, exact=True).click()
        expect(page).to_have_url(re.compile(r"#/dlq\?agent=local$"))
        expect(page.get_by_role("heading", name=f"Dead letters on {PROXY}")).to_be_visible()
        expect(page.get_by_role("heading", name="Nothing dead-lettered")).to_be_visible()
        expect(page.get_by_text("Batches land here after a receiver refuses them (4xx)")).to_be_visible()
        shot(page, "dlq-empty")

        items = dead_letter(client, tenant, ports)
        assert {i.dataset for i in items} == {f"tenants/{tenant}/datasets/{ds}" for ds in ports}
        page.get_by_role("button", name="Refresh").click()
        table = page.get_by_role("table", name=re.compile("Dead-lettered batches on local"))
        rows = table.get_by_role("row").filter(has=page.get_by_role("checkbox"))
        expect(rows).to_have_count(len(items) + 1)  # and the header's "select every" box
        first = table.get_by_role("row").filter(has_text=items[0].id)
        expect(first).to_contain_text(re.compile(r"answered 410: Tenant '.+' is suspended"))
        expect(first).to_contain_text(tenant)
        expect(page.get_by_text(re.compile(rf"{len(items)} batches of tenant {tenant}"))).to_be_visible()
        shot(page, "dlq")
        page.set_viewport_size({"width": 420, "height": 800})
        expect(first).to_be_visible()  # the table scrolls sideways inside its frame
        shot(page, "dlq-narrow")
        page.set_viewport_size({"width": 1280, "height": 800})

        # The cause fixed (the tenant active again, as the receiver knows), retry one, then all.
        version = applied(client, RECEIVER, "tenants")
        set_state(client, tenant, tenants_pb2.Tenant.STATE_ACTIVE)
        eventually(lambda: applied(client, RECEIVER, "tenants", not_version=version), 20)

        first.get_by_role("checkbox", name=f"Select batch {items[0].id}").check()
        page.get_by_role("button", name="Retry selected (1)").click()
        page.get_by_role("group", name="Retry 1 selected batch?").get_by_role("button", name="Yes").click()
        expect(page.get_by_role("status").filter(has_text="Moved 1 batch(es)")).to_be_visible()
        eventually(lambda: [i.id for i in client.agents.dlq(PROXY, tenant=tenant)] == [i.id for i in items[1:]])
        page.get_by_role("button", name="Refresh").click()
        expect(table.get_by_role("row").filter(has_text=items[0].id)).to_have_count(0)

        page.get_by_role("button", name="Retry all").click()
        question = f"Retry the {len(items) - 1} listed batch{'' if len(items) == 2 else 'es'} of {tenant}?"
        page.get_by_role("group", name=question).get_by_role("button", name="Yes").click()
        expect(page.get_by_role("status").filter(has_text=f"Moved {len(items) - 1} batch(es)")).to_be_visible()
        eventually(lambda: client.agents.dlq(PROXY, tenant=tenant) == [])
        page.get_by_role("button", name="Refresh").click()
        expect(page.get_by_role("heading", name="Nothing dead-lettered")).to_be_visible()

        # An agent that is not there is named as such.
        page.goto(stack.url + "#/dlq?agent=nowhere")
        expect(page.get_by_role("alert")).to_contain_text("There is no proxy, receiver or connector named nowhere.")
        client.tenants.delete(tenant, force=True)
