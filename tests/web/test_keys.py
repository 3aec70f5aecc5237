"""The API keys page: create (secret shown once, usable with the SDK, gone after a reload),
revoke (the SDK is refused at once) and rotate (new secret, old one valid through its grace)."""

from __future__ import annotations

import re

import grpc
import pytest
from playwright.sync_api import Page, expect

from floe import Client
from floe.errors import RpcError
from floe.v1 import common_pb2
from tests.web.conftest import Stack, shot


def _scope(page: Page, stack: Stack, tenant: str) -> None:
    """Reload so the top bar lists the tenant made through the SDK, pick it, open the keys page."""
    page.reload()
    page.get_by_role("combobox", name="Tenant").select_option(tenant)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys", level=1)).to_be_visible()


def test_create_shows_the_secret_once_and_revoke_refuses_it(signed_in: Page, stack: Stack) -> None:
    page = signed_in
    with stack.client() as admin:
        admin.tenants.create("keys-acme", display_name="Keys ACME")
    _scope(page, stack, "keys-acme")
    expect(page.get_by_role("heading", name="No API keys yet")).to_be_visible()
    shot(page, "keys-empty")

    page.get_by_role("button", name="New API key").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Create key").click()  # checked before sending
    expect(dialog.get_by_text("Give the key a name that says who or what uses it.")).to_be_visible()
    expect(dialog.get_by_text("Choose a role.")).to_be_visible()
    dialog.get_by_label("Display name").fill("CI exporter")
    dialog.get_by_label("Role").select_option(label="Admin")
    expect(dialog.get_by_label("Tenant")).to_be_disabled()  # admin keys are never tenant-bound
    dialog.get_by_label("Role").select_option(label="Editor")
    expect(dialog.get_by_label("Tenant")).to_have_value("keys-acme")  # the top bar's tenant
    dialog.get_by_role("button", name="Create key").click()

    expect(dialog).to_be_hidden()
    panel = page.get_by_role("region", name=re.compile("CI exporter.*created"))
    expect(panel).to_contain_text("Store it now — it cannot be shown again.")
    secret = panel.get_by_label("Secret").inner_text().strip()
    assert secret.startswith("floe_"), secret
    panel.get_by_role("button", name="Copy secret").click()
    expect(panel.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    row = page.get_by_role("row").filter(has_text="CI exporter")
    expect(row).to_contain_text("Editor")
    expect(row).to_contain_text("keys-acme")
    expect(row.get_by_text("Active")).to_be_visible()
    shot(page, "key-created")

    # The secret works: the SDK calls as the new key.
    with Client(stack.grpc, api_key=secret) as c:
        me = c.auth.whoami()
    assert me.role == common_pb2.ROLE_EDITOR
    assert me.tenant == "tenants/keys-acme"
    key_name = me.principal

    # Only component state held it: a reload forgets it, the row stays.
    page.reload()
    expect(row).to_be_visible()
    expect(page.get_by_role("region", name=re.compile("created"))).to_have_count(0)
    assert secret not in page.content()

    row.get_by_role("button", name="Revoke").click()
    row.get_by_role("button", name="Yes").click()
    expect(row).to_have_count(0)  # revoked keys are hidden by default
    page.get_by_label("Show revoked and expired").check()
    expect(row.get_by_text("Revoked")).to_be_visible()
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    shot(page, "keys")

    with Client(stack.grpc, api_key=secret) as c, pytest.raises(RpcError) as refused:
        c.auth.whoami()
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    with stack.client() as admin:
        assert admin.keys.get(key_name).HasField("revoke_time")


def test_rotate_shows_the_new_secret_and_keeps_the_old_through_its_grace(signed_in: Page, stack: Stack) -> None:
    page = signed_in
    with stack.client() as admin:
        admin.tenants.create("keys-rot", display_name="Keys Rotation")
        old, old_secret = admin.keys.create(
            role=common_pb2.ROLE_VIEWER, tenant="tenants/keys-rot", display_name="Dash reader"
        )
    _scope(page, stack, "keys-rot")
    row = page.get_by_role("row").filter(has_text="Dash reader")
    expect(row.get_by_text("Viewer")).to_be_visible()
    row.get_by_role("button", name="Rotate Dash reader").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Grace period").select_option(label="1 hour")
    dialog.get_by_role("button", name="Rotate key").click()

    panel = page.get_by_role("region", name=re.compile("rotated"))
    expect(panel).to_contain_text("Store it now — it cannot be shown again.")
    expect(panel).to_contain_text(re.compile(r"stays valid until .*grace period"))
    secret = panel.get_by_label("Secret").inner_text().strip()
    assert secret != old_secret
    expect(row.get_by_text("Retiring")).to_be_visible()  # the old key, within its grace
    expect(page.get_by_role("row").filter(has_text="Dash reader")).to_have_count(2)
    shot(page, "key-rotated")

    with Client(stack.grpc, api_key=secret) as c:
        assert c.auth.whoami().role == common_pb2.ROLE_VIEWER
    with Client(stack.grpc, api_key=old_secret) as c:
        assert c.auth.whoami().principal == old.name
    panel.get_by_role("button", name="I have stored it").click()
    expect(panel).to_have_count(0)


def test_keys_page_on_a_narrow_window(signed_in: Page, stack: Stack) -> None:
    page = signed_in
    page.set_viewport_size({"width": 420, "height": 800})
    page.goto(stack.url + "#/keys")
    expect(page.get_by_role("heading", name="API keys", level=1)).to_be_visible()
    expect(page.get_by_role("button", name="New API key")).to_be_visible()
    # The table scrolls inside its frame; the page itself does not scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "keys-narrow")
