"""``floe up``: run every Floe component with embedded defaults, as child processes.

The supervisor starts the control plane, waits until it is serving, prints where everything
is, and on Ctrl-C or SIGTERM stops every child gracefully (SIGTERM, then SIGKILL after a grace
period). If a component exits on its own, the others are stopped and ``floe up`` fails.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

__all__ = ["run_up"]

STOP_GRACE_S = 35.0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)


def _cp_endpoints(data_dir: Path, pid: int) -> dict[str, str] | None:
    try:
        info = json.loads((data_dir / "control-plane.json").read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("pid") == pid else None


def run_up(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    cp_argv = [sys.executable, "-m", "floe.cli", "control-plane", "--data-dir", str(data_dir)]
    for flag in ("grpc_listen", "http_listen", "log_level"):
        value = getattr(args, flag)
        if value:
            cp_argv += ["--" + flag.replace("_", "-"), value]
    children = [Child("control-plane", cp_argv)]

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    for child in children:
        child.proc = subprocess.Popen(child.argv)
    cp = children[0]
    assert cp.proc is not None
    deadline = time.monotonic() + 60
    endpoints = None
    while not stopping and time.monotonic() < deadline:
        endpoints = _cp_endpoints(data_dir, cp.proc.pid)
        if endpoints or cp.proc.poll() is not None:
            break
        time.sleep(0.1)
    if endpoints is None:
        print("floe up: the control plane did not start; see its log above.", file=sys.stderr)
        _stop_all(children)
        return 1

    print(
        "\nFloe is up.\n"
        f"  control plane gRPC   {endpoints['grpc']}\n"
        f"  control plane HTTP   http://{endpoints['http']}  (/healthz, /metrics)\n"
        f"  data directory       {data_dir}\n"
        f"  admin API key        {data_dir / 'admin.key'}  (mode 0600; the CLI reads it from here)\n"
        "\nTry:  floe tenants create acme --display-name ACME\n"
        f'      grpcurl -plaintext -H "authorization: Bearer $(cat {data_dir / "admin.key"})" '
        f"{endpoints['grpc']} floe.v1.TenantService/ListTenants\n"
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
