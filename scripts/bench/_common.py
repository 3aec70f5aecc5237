"""Helpers shared by the benchmarks in scripts/bench (Linux only: they read /proc).

The scripts are run as files (``python scripts/bench/NAME.py``) and import this module as
``scripts.bench._common`` after putting the repository root on ``sys.path``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CLK_TCK",
    "CpuSample",
    "Server",
    "channel_options",
    "error_code",
    "loadavg",
    "machine_cpu",
    "memory_kib",
    "percentile",
    "sample_cpu",
    "split",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- /proc sampling --------------------------------------------------------------------------


def _stat_cpu_ticks(path: Path) -> int:
    """utime + stime (clock ticks) from a /proc/.../stat file."""
    raw = path.read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return int(fields[11]) + int(fields[12])


@dataclass
class CpuSample:
    process: float
    main_thread: float
    threads: dict[int, tuple[str, float]]


def machine_cpu() -> tuple[int, int, int]:
    """(busy, total, steal) jiffies over all cores, from the first line of /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total, values[7]


def sample_cpu(pid: int) -> CpuSample:
    """CPU seconds (user + system) of a process, its main thread and each of its threads."""
    base = Path(f"/proc/{pid}")
    threads: dict[int, tuple[str, float]] = {}
    for task in (base / "task").iterdir():
        try:
            raw = (task / "stat").read_text()
        except OSError:  # thread exited while listing
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        threads[int(task.name)] = (comm, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return CpuSample(
        process=_stat_cpu_ticks(base / "stat") / CLK_TCK,
        main_thread=threads.get(pid, ("", 0.0))[1],
        threads=threads,
    )


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS), RssAnon... of a process in KiB, from /proc/PID/status."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith(("Vm", "Rss")) and value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


# -- statistics and small utilities ----------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as possible, larger shares first."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def channel_options(distinct: bool) -> list[tuple[str, Any]]:
    """Client channel options; ``distinct`` makes each channel its own TCP connection."""
    # gRPC shares subchannels (connections) between channels with the same target and
    # arguments unless each channel has a local subchannel pool.
    opts: list[tuple[str, Any]] = [("grpc.enable_retries", 0)]
    if distinct:
        opts.append(("grpc.use_local_subchannel_pool", 1))
    return opts


def error_code(exc: BaseException) -> tuple[str, str]:
    """(status code name, detail) of a gRPC error, or (exception type, message)."""
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    name = code().name if callable(code) else type(exc).__name__
    return name, (details() if callable(details) else str(exc))[:300]


# -- server process --------------------------------------------------------------------------


class Server:
    """``floe control-plane`` in a temporary data dir, 127.0.0.1 with OS-assigned ports."""

    def __init__(self, data_dir: Path, extra: list[str]) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.log_path = data_dir.parent / "control-plane.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.grpc = ""
        self.pid = 0

    def start(self, timeout: float = 60.0) -> None:
        argv = [
            sys.executable, "-m", "floe.cli", "control-plane",
            "--data-dir", str(self.data_dir),
            "--grpc-listen", "127.0.0.1:0",
            "--http-listen", "127.0.0.1:0",
            "--log-format", "json",
            "--auth-failure-burst", "100000",
            *self.extra,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        endpoints = self.data_dir / "control-plane.json"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"control plane exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                info = json.loads(endpoints.read_text())
                if info.get("pid") == self.proc.pid:
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"control plane did not start within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)
        self.grpc, self.pid = str(info["grpc"]), self.proc.pid

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
