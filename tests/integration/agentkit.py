"""Helpers for the agent tests: a real ``floe agent KIND`` process (like ``ControlPlaneProcess``),
its HTTP API, free loopback ports, and datasets for proxies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa

from floe.v1 import datasets_pb2
from tests.helpers import ROOT

__all__ = ["AgentProcess", "free_port", "healthz_component", "http_get", "send_udp", "stored_messages", "udp_dataset"]

# No proxy from the environment may sit between the tests and loopback.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(address: str, path: str, timeout: float = 5.0) -> tuple[int, Any]:
    """GET ``http://address/path`` and decode its JSON body: (status, body), error statuses too."""
    try:
        with _opener.open(f"http://{address}{path}", timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def stored_messages(root: Path, tenant: str) -> list[str]:
    """The ``message`` of every record in ``tenant``'s raw zstd NDJSON objects under ``root``
    (an intake store directory)."""
    messages = []
    for path in (root / tenant).rglob("*.zst"):
        with pa.CompressedInputStream(pa.BufferReader(path.read_bytes()), "zstd") as stream:
            body = bytes(stream.read())
        messages += [json.loads(line)["message"] for line in body.splitlines() if line.strip()]
    return messages


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port the OS considers free on 127.0.0.1 now, for ``kind`` (UDP by default)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def send_udp(port: int, payload: bytes = b"<13>Jan  1 00:00:00 host test: hello\n") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(payload, ("127.0.0.1", port))


def udp_dataset(port: int, *, agent: str = "", active: bool = True) -> datasets_pb2.Dataset:
    """A syslog/UDP dataset on 127.0.0.1:``port``, assigned to proxy ``agent`` when given."""
    ds = datasets_pb2.Dataset(
        source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_SYSLOG_UDP, bind_host="127.0.0.1", port=port),
        active=active,
    )
    if agent:
        ds.proxy.agent = agent
    return ds


def healthz_component(health: dict[str, Any], dataset: str) -> dict[str, Any] | None:
    """The health component of ``dataset``'s listener in a /healthz body, or None."""
    for comp in health["health"].get("components", []):
        if comp["name"] == f"source/{dataset}":
            return dict(comp)
    return None


class AgentProcess:
    """``floe agent KIND`` as a child process on 127.0.0.1 with an OS-assigned API port.

    ``start`` waits for ``DATA_DIR/NAME/agent.json`` written by this very process; the log
    (JSON lines, stdout and stderr) accumulates across restarts in ``log_path``.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        data_dir: Path,
        *extra: str,
        control_url: str = "",
        key: str = "",
        config_mode: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.data_dir = data_dir
        self.extra = list(extra)
        self.control_url = control_url
        self.config_mode = config_mode
        self.env = env or {}
        self.key_file = data_dir / f"{name}.key"
        if key:
            self.set_key(key)
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = ""
        #: Every address in agent.json (``api``, and e.g. ``webhook`` for a receiver).
        self.addresses: dict[str, str] = {}
        self.log_path = data_dir / f"{name}-agent.log"
        self._log_offset = 0

    def set_key(self, key: str) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.key_file.write_text(key + "\n")
        self.key_file.chmod(0o600)

    @property
    def state_dir(self) -> Path:
        return self.data_dir / self.name

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        argv = [
            sys.executable, "-m", "floe.cli", "agent", self.kind,
            "--agent-name", self.name,
            "--data-dir", str(self.data_dir),
            "--api-listen", "127.0.0.1:0",
            "--log-format", "json",
            "--reconnect-max", "1s",
        ]  # fmt: skip
        if self.config_mode:
            argv += ["--config-mode", self.config_mode]
        if self.control_url:
            argv += ["--control-url", self.control_url]
        if self.key_file.exists():
            argv += ["--api-key-file", str(self.key_file)]
        return argv + self.extra

    def start(self, timeout: float = 20.0) -> AgentProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
        env.update(self.env)
        try:
            self._log_offset = self.log_path.stat().st_size
        except OSError:
            self._log_offset = 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log, env=env, cwd=ROOT)
        log.close()
        proc = self.proc
        info_file = self.state_dir / "agent.json"
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"agent {self.name} exited with {proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"agent {self.name} did not start within {timeout}s:\n{self.log()}")
            try:
                info = json.loads(info_file.read_text())
                if info.get("pid") == proc.pid:
                    assert info["name"] == self.name
                    self.api = str(info["api"])
                    self.addresses = {k: str(v) for k, v in info.items() if k not in ("pid", "name")}
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_records(self, *, since_start: bool = False) -> list[dict[str, Any]]:
        """The JSON log lines (of the current process only with ``since_start``)."""
        text = self.log()
        if since_start:
            text = text.encode()[self._log_offset :].decode(errors="replace")
        out = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def count_log(self, message: str, *, since_start: bool = False) -> int:
        """How many log records start with ``message``."""
        return sum(1 for r in self.log_records(since_start=since_start) if str(r.get("msg", "")).startswith(message))

    def healthz(self) -> dict[str, Any]:
        status, body = http_get(self.api, "/healthz")
        assert status == 200, (status, body)
        return dict(body)

    def component(self, name: str) -> dict[str, Any]:
        """The health component ``name`` from /healthz (AssertionError when there is none)."""
        for comp in self.healthz()["health"].get("components", []):
            if comp["name"] == name:
                return dict(comp)
        raise AssertionError(f"no health component {name!r}")

    def readyz(self) -> int:
        return http_get(self.api, "/readyz")[0]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (resuming a stopped process first) and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> AgentProcess:
        self.stop()
        return self.start()
