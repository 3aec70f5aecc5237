"""Signing in and out, the tenants page, and the layout at 1280x800 and on a narrow window."""

from __future__ import annotations

import re
import stat

from playwright.sync_api import Page, expect

from tests.web.conftest import Stack, shot, sign_in


def test_sign_in_refuses_a_wrong_password_then_signs_in_and_out(page: Page, stack: Stack) -> None:
    # floe up made the user admin with a random password only its owner can read.
    assert stat.S_IMODE((stack.data_dir / "admin.password").stat().st_mode) == 0o600
    page.goto(stack.url)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Enter your username.")).to_be_visible()  # checked before sending
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Username or password is incorrect.")
    shot(page, "sign-in-error")
    sign_in(page, stack)
    page.reload()  # the session survives a reload of the tab
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Floe")).to_be_visible()
    shot(page, "sign-in")
    page.reload()
    expect(page.get_by_role("heading", name="Sign in to Floe")).to_be_visible()


def test_tenants_create_validate_and_suspend(signed_in: Page, stack: Stack) -> None:
    page = signed_in
    page.get_by_role("link", name="Tenants").click()
    page.get_by_role("button", name="New tenant").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Tenant id").fill("Not_Valid")
    dialog.get_by_role("button", name="Create tenant").click()
    expect(dialog.get_by_text(re.compile("lowercase letters, digits and '-', starting"))).to_be_visible()
    dialog.get_by_label("Tenant id").fill("shell-acme")
    dialog.get_by_label("Display name").fill("Shell ACME")
    dialog.get_by_role("button", name="Create tenant").click()
    row = page.get_by_role("row").filter(has_text="Shell ACME")
    expect(row).to_be_visible()
    # The server's own refusal (a taken id) is shown beside the form too.
    page.get_by_role("button", name="New tenant").click()
    dialog.get_by_label("Tenant id").fill("shell-acme")
    dialog.get_by_role("button", name="Create tenant").click()
    expect(dialog.get_by_role("alert")).to_contain_text("already exists")
    dialog.get_by_role("button", name="Close").click()
    row.get_by_role("button", name="Suspend").click()
    expect(row.get_by_text("Suspended")).to_be_visible()
    shot(page, "tenants")
    with stack.client() as client:
        assert client.tenants.get("shell-acme").state == 2  # SUSPENDED, as the SDK sees it


def test_keyboard_and_narrow_window(signed_in: Page) -> None:
    page = signed_in
    page.keyboard.press("Tab")  # the skip link comes first
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.set_viewport_size({"width": 420, "height": 800})
    nav = page.get_by_role("navigation", name="Sections")
    expect(nav).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(nav).to_be_visible()
    nav.get_by_role("link", name="Tenants").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Tenants")).to_be_visible()
    expect(nav).to_be_hidden()  # the menu folds after choosing
    shot(page, "narrow-tenants")
