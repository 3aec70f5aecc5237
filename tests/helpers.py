"""Test helpers: a real control-plane process on loopback, an ``eventually`` poller and a reader
of one sample on a ``/metrics`` page."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def metric_value(address: str, name: str, **labels: str) -> float:
    """The value of one sample on ``http://address/metrics`` (0 when the series does not exist yet)."""
    return _metric(f"http://{address}/metrics", None, name, labels)


def metric_value_tls(address: str, ca: Path, name: str, **labels: str) -> float:
    """``metric_value`` over https, verified with ``ca``."""
    return _metric(f"https://{address}/metrics", ca, name, labels)


def _metric(url: str, ca: Path | None, name: str, labels: dict[str, str]) -> float:
    import ssl

    from prometheus_client.parser import text_string_to_metric_families

    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if ca is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(ca))))
    with urllib.request.build_opener(*handlers).open(url, timeout=10) as resp:
        body = resp.read().decode()
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def eventually(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Call ``check`` until it returns a truthy value without raising; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # keep polling until the deadline
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last error: {last!r})")
        time.sleep(interval)


class ControlPlaneProcess:
    """``floe control-plane`` as a child process on 127.0.0.1 with OS-assigned ports."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.extra = list(extra)
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.grpc = ""
        self.http = ""
        self.log_path = data_dir.parent / f"{data_dir.name}-control-plane.log"

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def start(self, timeout: float = 30.0) -> ControlPlaneProcess:
        argv = [
            sys.executable, "-m", "floe.cli", "control-plane",
            "--data-dir", str(self.data_dir),
            "--grpc-listen", "127.0.0.1:0",
            "--http-listen", "127.0.0.1:0",
            "--log-format", "json",
            *self.extra,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
        env.update(self.env)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=ROOT)
        log.close()
        endpoints = self.data_dir / "control-plane.json"
        proc = self.proc
        deadline = time.monotonic() + timeout
        info: dict[str, Any] | None = None
        while info is None:
            if proc.poll() is not None:
                raise AssertionError(f"control plane exited with {proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"control plane did not start within {timeout}s:\n{self.log()}")
            try:
                found: dict[str, Any] = json.loads(endpoints.read_text())
                info = found if found.get("pid") == proc.pid else None
            except (OSError, ValueError):
                pass
            if info is None:
                time.sleep(0.05)
        assert info is not None
        self.grpc, self.http = str(info["grpc"]), str(info["http"])
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> ControlPlaneProcess:
        self.stop()
        return self.start()
