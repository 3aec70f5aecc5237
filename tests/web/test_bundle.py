"""The committed dashboard bundle (web/dist) is what its sources build to, and the control plane
serves it with the headers a page that holds tokens needs."""

from __future__ import annotations

import filecmp
import gzip
import http.client
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ControlPlaneProcess

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_committed_bundle_matches_the_sources(tmp_path: Path) -> None:
    npx = shutil.which("npx")
    if npx is None or not (WEB / "node_modules" / ".bin" / "vite").exists():
        pytest.fail("web/node_modules is missing: run `npm ci` in web/ (scripts/test does).")
    out = tmp_path / "dist"
    done = subprocess.run(
        [npx, "--no-install", "tsc", "--noEmit"], check=False, cwd=WEB, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"TypeScript errors in web/src:\n{done.stdout}{done.stderr}"
    done = subprocess.run(
        [npx, "--no-install", "vite", "build", "--outDir", str(out), "--emptyOutDir", "--logLevel", "error"],
        check=False,
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    committed = WEB / "dist"
    built, have = _files(out), _files(committed)
    stale = sorted(built ^ have) + sorted(
        n for n in built & have if not filecmp.cmp(out / n, committed / n, shallow=False)
    )
    assert not stale, f"web/dist is stale ({', '.join(stale)}): run `npm run build` in web/ and commit web/dist."


def _get(address: str, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_control_plane_serves_the_dashboard(control_plane: ControlPlaneProcess) -> None:
    status, headers, body = _get(control_plane.http, "/")
    assert status == 200 and b'<div id="root">' in body
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-cache" and headers["x-content-type-options"] == "nosniff"
    asset = next(p.name for p in (WEB / "dist" / "assets").iterdir() if p.suffix == ".js")
    status, headers, body = _get(control_plane.http, f"/assets/{asset}")
    assert status == 200 and "immutable" in headers["cache-control"]
    assert headers["content-type"].startswith(("application/javascript", "text/javascript"))
    plain = body
    status, headers, body = _get(control_plane.http, f"/assets/{asset}", **{"Accept-Encoding": "gzip, br"})
    assert status == 200 and headers["content-encoding"] == "gzip" and gzip.decompress(body) == plain
    assert len(body) < len(plain) / 2
    assert headers["content-type"].startswith(("application/javascript", "text/javascript"))
    for path in ("/assets/missing.js", "/assets/..%2Findex.html", "/assets/.hidden"):
        status, headers, body = _get(control_plane.http, path)
        assert status == 404 and headers["content-type"].startswith("application/json"), path
