"""``floe up``: run every Floe component with embedded defaults, as child processes.

The supervisor starts the control plane, waits until it serves, makes sure the agents have a
service key (``<data-dir>/agent.key``, mode 0600, created once with the admin key), starts the
agents that exist, prints where everything is, and on Ctrl-C or SIGTERM stops every child
gracefully (SIGTERM in reverse order, then SIGKILL after a grace period). If a component exits
on its own, the others are stopped and ``floe up`` fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["AGENTS", "run_up"]

STOP_GRACE_S = 35.0
START_TIMEOUT_S = 60.0
#: The agents `floe up` runs, in start order, with the name each registers under. The receiver
#: comes first: the proxy forwards to the address it reports.
AGENTS = (
    ("receiver", "receiver"),
    ("proxy", "local"),
    ("piper", "piper"),
    ("packer", "packer"),
    ("query", "query"),
    ("connector", "connector"),
)


@dataclass
class Child:
    name: str
    argv: list[str]
    ready_file: Path
    proc: subprocess.Popen[bytes] | None = None
    info: dict[str, Any] | None = None


def _read_ready(child: Child) -> dict[str, Any] | None:
    assert child.proc is not None
    try:
        info: dict[str, Any] = json.loads(child.ready_file.read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("pid") == child.proc.pid else None


def _start(child: Child, stopping: Callable[[], bool]) -> bool:
    """Start ``child`` and wait until it writes its ready file (with its own pid)."""
    # A user's own credential in the environment must not replace the agents' key file.
    env = {k: v for k, v in os.environ.items() if k not in ("FLOE_API_KEY", "FLOE_CONFIG")}
    child.proc = subprocess.Popen(child.argv, env=env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not stopping() and time.monotonic() < deadline:
        child.info = _read_ready(child)
        if child.info is not None:
            return True
        if child.proc.poll() is not None:
            break
        time.sleep(0.1)
    print(f"floe up: {child.name} did not start; see its log above.", file=sys.stderr)
    return False


def _ensure_agent_key(data_dir: Path, grpc_address: str) -> Path:
    """The agents' service key, created once with the bootstrap admin key."""
    path = data_dir / "agent.key"
    if path.exists():
        return path
    from floe.client import Client
    from floe.files import write_private_file
    from floe.v1 import common_pb2, keys_pb2

    admin = (data_dir / "admin.key").read_text().strip()
    with Client(grpc_address, api_key=admin) as client:
        _, secret = client.keys.create(
            common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE, display_name="floe up agents"
        )
    write_private_file(path, (secret + "\n").encode())
    return path


def _ensure_admin_user(data_dir: Path, grpc_address: str) -> Path:
    """The dashboard's first user, ``admin``, with a random password kept in ``admin.password``
    (mode 0600), created once with the bootstrap admin key. Change it with ``floe users``."""
    path = data_dir / "admin.password"
    if path.exists():
        return path
    import secrets

    import grpc

    from floe.client import Client
    from floe.errors import RpcError
    from floe.files import write_private_file
    from floe.v1 import common_pb2

    password = secrets.token_urlsafe(18)
    admin = (data_dir / "admin.key").read_text().strip()
    with Client(grpc_address, api_key=admin) as client:
        try:
            client.users.create("admin", password, role=common_pb2.ROLE_ADMIN, display_name="Administrator")
        except RpcError as exc:
            if exc.code != grpc.StatusCode.ALREADY_EXISTS:
                raise
            return path  # made by hand before: its password is not ours to know
    write_private_file(path, (password + "\n").encode())
    return path


def _role_args(kind: str, started: list[Child], any_port: bool) -> list[str]:
    """Flags that tie the embedded agents together."""
    if kind == "receiver":
        return ["--webhook-listen", "127.0.0.1:0" if any_port else "0.0.0.0:8080"]
    if kind == "proxy":
        receiver = next(c for c in started if c.name == "receiver agent")
        assert receiver.info is not None
        host, _, port = str(receiver.info["webhook"]).rpartition(":")
        host = "127.0.0.1" if host in ("0.0.0.0", "", "[::]") else host
        return ["--receivers", f"http://{host}:{port}"]
    if kind == "query" and any_port:
        return ["--query-grpc-listen", "127.0.0.1:0"]
    return []


def run_up(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m", "floe.cli"]
    log_args = ["--log-level", args.log_level] if args.log_level else []
    cp_argv = [*py, "control-plane", "--data-dir", str(data_dir), *log_args]
    for flag in ("grpc_listen", "http_listen"):
        value = getattr(args, flag)
        if value:
            cp_argv += ["--" + flag.replace("_", "-"), value]
    # Port 0 for the control plane means "pick free ports": do the same for the agents' API ports.
    any_port = bool(args.grpc_listen and args.grpc_listen.endswith(":0"))

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    children = [Child("control-plane", cp_argv, data_dir / "control-plane.json")]
    if not _start(children[0], lambda: stopping):
        _stop_all(children)
        return 1
    cp = children[0].info
    assert cp is not None
    try:
        key_file = _ensure_agent_key(data_dir, cp["grpc"])
        password_file = _ensure_admin_user(data_dir, cp["grpc"])
    except Exception as exc:  # the message is for a person; the control plane log has details
        print(f"floe up: could not create the agents' key or the admin user: {exc}", file=sys.stderr)
        _stop_all(children)
        return 1
    for kind, name in AGENTS:
        argv = [
            *py, "agent", kind,
            "--agent-name", name,
            "--control-url", cp["grpc"],
            "--api-key-file", str(key_file),
            "--data-dir", str(data_dir / "agents"),
            *log_args,
        ]  # fmt: skip
        if any_port:
            argv += ["--api-listen", "127.0.0.1:0"]
        argv += _role_args(kind, children, any_port)
        child = Child(f"{kind} agent", argv, data_dir / "agents" / name / "agent.json")
        children.append(child)
        if not _start(child, lambda: stopping):
            _stop_all(children)
            return 1

    agent_lines = "".join(
        f"  {c.name:<20} http://{c.info['api']}  (agents/{c.info['name']}; /healthz, /metrics)\n"
        for c in children[1:]
        if c.info
    )
    receiver = next((c.info for c in children if c.name == "receiver agent" and c.info), None)
    if receiver and "webhook" in receiver:
        agent_lines += f"  {'HTTP ingest':<20} http://{receiver['webhook']}/TENANT/DATASET  (Bearer API key)\n"
    print(
        "\nFloe is up.\n"
        f"  control plane gRPC   {cp['grpc']}\n"
        f"  dashboard            http://{cp['http']}/  (user admin, password in {password_file})\n"
        f"  control plane HTTP   http://{cp['http']}  (/healthz, /metrics)\n"
        f"{agent_lines}"
        f"  data directory       {data_dir}\n"
        f"  admin API key        {data_dir / 'admin.key'}  (mode 0600; the CLI reads it from here)\n"
        "\nTry:  floe tenants create acme --display-name ACME\n"
        "      floe datasets create acme/syslog --source-type syslog_udp --port 5514 --proxy local\n"
        "      floe agents list\n"
        "Press Ctrl-C to stop.\n",
        flush=True,
    )
    failed = None
    while not stopping:
        for child in children:
            assert child.proc is not None
            if child.proc.poll() is not None:
                failed = child
                stopping = True
                break
        time.sleep(0.2)
    _stop_all(children)
    if failed is not None:
        assert failed.proc is not None
        print(
            f"floe up: {failed.name} exited with code {failed.proc.returncode}; stopped the rest.",
            file=sys.stderr,
        )
        return 1
    print("Floe stopped.")
    return 0


def _stop_all(children: list[Child]) -> None:
    for child in reversed(children):
        if child.proc is not None and child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in reversed(children):
        if child.proc is None:
            continue
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()
