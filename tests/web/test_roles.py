"""A tenant-bound viewer in the dashboard: only their tenant, nothing to change. (The server
enforces all of it; this checks the pages do not offer what would be refused or leak names.)"""

from __future__ import annotations

from playwright.sync_api import Page, expect

from floe.v1 import common_pb2, datasets_pb2
from tests.integration.agentkit import free_port
from tests.web.conftest import Stack, shot, sign_in

MINE, OTHER = "roles-mine", "roles-other"
PASSWORD = "viewer-password-123"


def _setup(stack: Stack) -> None:
    with stack.client() as admin:
        for tenant in (MINE, OTHER):
            admin.tenants.create(tenant, display_name=tenant.title())
            ds = datasets_pb2.Dataset(
                source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_HTTP, port=free_port()), active=True
            )
            admin.datasets.create(tenant, f"{tenant}-logs", ds)
        admin.users.create("roles-viewer", PASSWORD, role=common_pb2.ROLE_VIEWER, tenant=MINE, display_name="Vera")


def test_a_tenant_viewer_sees_only_their_tenant_and_cannot_change_it(page: Page, stack: Stack) -> None:
    _setup(stack)
    sign_in(page, stack, "roles-viewer", PASSWORD)
    nav = page.get_by_role("navigation", name="Sections")
    expect(page.get_by_text(f"Tenant: {MINE}")).to_be_visible()  # fixed, no picker
    expect(nav.get_by_role("link", name="Tenants")).to_have_count(0)

    nav.get_by_role("link", name="Datasets").click()
    expect(page.get_by_role("link", name=f"{MINE}-logs")).to_be_visible()
    expect(page.get_by_text(f"{OTHER}-logs")).to_have_count(0)
    expect(page.get_by_role("link", name="New dataset")).to_have_count(0)
    shot(page, "viewer-datasets")

    # Another tenant's dataset by address: not found, and its existence not confirmed.
    page.goto(f"{stack.url}#/datasets/{OTHER}/{OTHER}-logs")
    expect(page.get_by_role("alert")).to_contain_text("does not exist")

    nav.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="New API key")).to_have_count(0)
