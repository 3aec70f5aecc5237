"""Helpers shared by the proxy input benchmarks (scripts/bench/proxy_udp.py, proxy_tcp.py):
a real ``floe agent proxy`` in local-only mode with one local dataset, and its counters.

The proxy's receivers are unreachable on purpose: its batches go to the disk spool, which still
runs the whole input path (receive, parse, encode, batch, compress, spool).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ProxyProcess", "settle"]

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ProxyProcess:
    """``floe agent proxy`` with one dataset of ``source_type`` on 127.0.0.1:``port``."""

    def __init__(self, workdir: Path, source_type: str, port: int, options: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.dataset = "tenants/bench/datasets/input"
        source: dict[str, Any] = {"type": source_type, "port": port, "bind_host": "127.0.0.1"}
        if options:
            source["options"] = options
        config = {
            "config_mode": "local-only",
            "agent_name": "bench-proxy",
            "data_dir": str(workdir / "data"),
            "api_listen": "127.0.0.1:0",
            "receivers": ["http://127.0.0.1:9"],  # discard port: nothing listens, batches spool
            "log_format": "json",
            "datasets": [{"name": self.dataset, "source": source}],
        }
        self.config = workdir / "proxy.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "proxy.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = ""

    def start(self, timeout: float = 30.0) -> ProxyProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
        argv = [sys.executable, "-m", "floe.cli", "agent", "proxy", "--config", str(self.config)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        info_file = self.workdir / "data" / "bench-proxy" / "agent.json"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                info = json.loads(info_file.read_text())
                if info.get("pid") == self.proc.pid:
                    self.api = str(info["api"])
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"proxy did not start within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)
        self.wait_listening()
        return self

    def wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.source() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the proxy's input did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def healthz(self) -> dict[str, Any]:
        with _opener.open(f"http://{self.api}/healthz", timeout=5) as resp:
            return dict(json.loads(resp.read()))

    def source(self) -> dict[str, Any] | None:
        for comp in self.healthz()["health"].get("components", []):
            if comp["name"] == f"source/{self.dataset}":
                return {
                    "events_in": int(comp.get("events_in", 0)),
                    "events_out": int(comp.get("events_out", 0)),
                    "dropped": {k: int(v) for k, v in comp.get("dropped", {}).items()},
                }
        return None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def settle(read: Any, quiet: float = 0.6, timeout: float = 30.0) -> Any:
    """Poll ``read()`` until its value has not changed for ``quiet`` seconds; that value."""
    last = read()
    since = time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
        if value != last:
            last, since = value, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last
