#!/usr/bin/env python3
"""Dashboard load: how quickly the pages an operator opens first are usable, in Debian's Chromium.

Starts a ``floe up`` in a temporary directory (control plane serving the committed ``web/dist``,
every agent), then, RUNS times in a fresh browser context (empty cache): load the sign-in page,
sign in and wait for the overview to show the live agent counts; then open the Agents page (a
lazily loaded chunk) and wait for its live rows. Reports the median and range of each step and the
bytes the browser received.

Usage:
    python scripts/bench/dashboard.py [--runs 7]
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Response, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.upkit import Up  # noqa: E402
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        up = Up(Path(tmp))
        try:
            banner = up.read_until("Press Ctrl-C to stop.", timeout=90)
            m = re.search(r"dashboard\s+(http://\S+)", banner)
            assert m, banner
            url = m.group(1)
            password = (Path(tmp) / "floe-data" / "admin.password").read_text().strip()
            times: dict[str, list[float]] = {"sign-in page": [], "sign in → overview live": [], "agents page live": []}
            received: list[int] = []
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for _ in range(args.runs):
                    context = browser.new_context(viewport={"width": 1280, "height": 800})
                    page = context.new_page()
                    sizes: list[int] = []

                    def on_response(resp: Response, sizes: list[int] = sizes) -> None:
                        if resp.url.startswith(url) and "/floe.v1." not in resp.url:
                            # On the wire: gzip-compressed assets carry their compressed length.
                            sizes.append(int(resp.headers.get("content-length") or len(resp.body())))

                    page.on("response", on_response)
                    t0 = time.perf_counter()
                    page.goto(url)
                    expect(page.get_by_label("Username")).to_be_editable()
                    t1 = time.perf_counter()
                    page.get_by_label("Username").fill("admin")
                    page.get_by_label("Password").fill(password)
                    page.get_by_role("button", name="Sign in").click()
                    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible(timeout=30_000)
                    expect(page.get_by_role("row").filter(has_text="Piper")).to_contain_text("1 agent")
                    t2 = time.perf_counter()
                    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Agents").click()
                    expect(page.get_by_role("link", name="receiver", exact=True)).to_be_visible()
                    t3 = time.perf_counter()
                    times["sign-in page"].append((t1 - t0) * 1000)
                    times["sign in → overview live"].append((t2 - t1) * 1000)
                    times["agents page live"].append((t3 - t2) * 1000)
                    received.append(sum(sizes))
                    context.close()
                browser.close()
        finally:
            up.stop(signal.SIGTERM)
    print(f"{'step':<26} {'median ms':>10} {'range ms':>16}")
    for step, values in times.items():
        print(f"{step:<26} {statistics.median(values):>10.0f} {min(values):>7.0f}-{max(values):<8.0f}")
    print(f"page and assets on the wire, first visit: {statistics.median(received):,.0f} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
