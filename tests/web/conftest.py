"""The dashboard in a real browser: Debian's Chromium driven by Playwright against a whole
``floe up`` stack (control plane serving the built bundle, and every agent).

Screenshots go to ``test-artifacts/screenshots/`` (CI keeps that folder). ``FLOE_TEST_WEB_DIR``
serves another build of the dashboard than the committed ``web/dist`` (while developing).
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect, sync_playwright

from floe import Client
from tests.upkit import Up, endpoint

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
# Headless in a closed network: no background fetches to Google's hosts, no sandbox as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
expect.set_options(timeout=15_000)


@dataclass
class Stack:
    url: str  # the dashboard, e.g. http://127.0.0.1:41234/
    grpc: str
    data_dir: Path
    password: str
    admin_key: str

    def client(self) -> Client:
        return Client(self.grpc, api_key=self.admin_key)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cwd = tmp_path_factory.mktemp("web-stack")
    web_dir = os.environ.get("FLOE_TEST_WEB_DIR", str(ROOT / "web" / "dist"))
    up = Up(cwd, FLOE_WEB_DIR=web_dir)
    try:
        banner = up.read_until("Press Ctrl-C to stop.", timeout=90)
        m = re.search(r"dashboard\s+(http://\S+)", banner)
        assert m, banner
        data = cwd / "floe-data"
        yield Stack(
            url=m.group(1),
            grpc=endpoint(banner, "control plane gRPC"),
            data_dir=data,
            password=(data / "admin.password").read_text().strip(),
            admin_key=(data / "admin.key").read_text().strip(),
        )
    finally:
        if up.proc.poll() is None:
            up.stop(signal.SIGTERM)
        up.kill()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does).")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    """A fresh browser context (no session) at 1280x800. The test fails on any script error or
    console error the dashboard logs."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=stack.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    pg = context.new_page()
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            problems.append(f"console: {msg.text}")

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    yield pg
    context.close()
    assert not problems, "\n".join(problems)


def sign_in(page: Page, stack: Stack, username: str = "admin", password: str | None = None) -> None:
    page.goto(stack.url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(stack.password if password is None else password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


@pytest.fixture
def signed_in(page: Page, stack: Stack) -> Page:
    sign_in(page, stack)
    return page


def shot(page: Page, name: str) -> Path:
    """Save a screenshot of the whole page as a test artifact."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
