"""The issue's walk through the dashboard, in one browser session against a whole ``floe up``:
sign in, create a tenant, a dataset and an API key (its secret visible once and gone after a
reload), send records with that key, see an agent appear live, run a query that finds them, and
revoke the key (the receiver then refuses it)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from playwright.sync_api import Page, expect

from floe.v1 import common_pb2, keys_pb2
from tests.helpers import eventually
from tests.integration.agentkit import AgentProcess, free_port
from tests.web.conftest import Stack, shot, sign_in

TENANT, DATASET = "journey", "events"


def _post(stack: Stack, key: str, body: str) -> str:
    """POST NDJSON to the stack's receiver with ``key``; the HTTP status."""
    info = json.loads((stack.data_dir / "agents" / "receiver" / "agent.json").read_text())
    done = subprocess.run(
        [
            "curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}",
            "-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/x-ndjson",
            "--data-binary", body, f"http://{info['webhook']}/{TENANT}/{DATASET}",
        ],
        capture_output=True, text=True, check=True, timeout=10,
    )  # fmt: skip
    return done.stdout.strip()


def test_the_dashboard_walkthrough(page: Page, stack: Stack, tmp_path: Path) -> None:
    sign_in(page, stack)
    nav = page.get_by_role("navigation", name="Sections")

    # A tenant.
    nav.get_by_role("link", name="Tenants").click()
    page.get_by_role("button", name="New tenant").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Tenant id").fill(TENANT)
    dialog.get_by_label("Display name").fill("Journey Inc")
    dialog.get_by_role("button", name="Create tenant").click()
    expect(page.get_by_role("row").filter(has_text="Journey Inc")).to_be_visible()
    page.get_by_role("combobox", name="Tenant").select_option(TENANT)

    # A dataset taking HTTP records, collected at once (testing).
    nav.get_by_role("link", name="Datasets").click()
    expect(page.get_by_role("heading", name=re.compile(r"^No datasets in .* yet$"))).to_be_visible()
    page.get_by_role("link", name="New dataset").first.click()
    main = page.get_by_role("main")
    main.get_by_label("Dataset id").fill(DATASET)
    main.get_by_label("Source type").select_option(label="HTTP webhook (http)")
    main.get_by_label("Port").fill(str(free_port()))
    main.get_by_label("Testing").check()
    # Records go straight to the receiver with a key, so no proxy listens for this dataset.
    main.get_by_label("Not assigned (no proxy collects it)").check()
    main.get_by_role("button", name="Create dataset").click()
    expect(page.get_by_text(f"Created tenants/{TENANT}/datasets/{DATASET}.")).to_be_visible()

    # A key: its secret is on the page once.
    nav.get_by_role("link", name="API keys").click()
    page.get_by_role("button", name="New API key").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Display name").fill("journey ingest")
    dialog.get_by_label("Role").select_option(label="Editor")
    dialog.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("Secret").inner_text().strip()
    assert secret.startswith("floe_")
    shot(page, "journey-key")
    page.reload()
    expect(page.get_by_role("row").filter(has_text="journey ingest")).to_be_visible()
    assert secret not in page.content()

    # Records sent with that key (a new key reaches the receiver within about a second).
    body = "".join(json.dumps({"user": f"u{i}", "action": "login"}) + "\n" for i in range(5))
    eventually(lambda: _post(stack, secret, body) == "200", timeout=30, interval=0.5)

    # An agent appears live on the Agents page.
    nav.get_by_role("link", name="Agents").click()
    with stack.client() as admin:
        _, agent_key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE, display_name="journey")
    extra = AgentProcess("piper", "journey-piper", tmp_path, control_url=stack.grpc, key=agent_key)
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="journey-piper", exact=True))
    expect(row).to_have_count(0)
    extra.start()
    try:
        expect(row).to_contain_text("Healthy")
        shot(page, "journey-agents")
    finally:
        extra.kill()

    # A query finds the records, once the packer has written them (at once: a testing dataset).
    with stack.client() as admin:

        def packed() -> bool:
            rows = admin.query.rows("SELECT count(*) AS n FROM events", dataset=f"{TENANT}/{DATASET}")
            return bool(rows == [{"n": 5}])

        eventually(packed, timeout=90, interval=1)
    nav.get_by_role("link", name="Query").click()
    expect(page.get_by_label("Dataset", exact=True)).to_have_value(f"tenants/{TENANT}/datasets/{DATASET}")
    expect(page.get_by_role("button", name="user")).to_be_visible()  # the schema has loaded
    page.get_by_role("button", name="Run query").click()
    expect(page.get_by_label("Query summary")).to_contain_text("5")
    expect(page.get_by_role("cell", name="u3", exact=True)).to_be_visible()
    shot(page, "journey-query")

    # Revoked: the receiver refuses the key.
    nav.get_by_role("link", name="API keys").click()
    row = page.get_by_role("row").filter(has_text="journey ingest")
    row.get_by_role("button", name="Revoke").click()
    row.get_by_role("button", name="Yes").click()
    expect(row).to_have_count(0)
    eventually(lambda: _post(stack, secret, body) == "401", timeout=30, interval=0.5)
