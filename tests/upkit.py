"""``floe`` as a user runs it, for tests: the CLI in a child process and ``floe up`` in a fresh
directory with its banner read line by line."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

__all__ = ["FLOE", "Up", "clean_env", "endpoint", "floe_argv", "run_floe"]

FLOE = shutil.which("floe", path=str(Path(sys.executable).parent)) or shutil.which("floe")


def floe_argv() -> list[str]:
    return [FLOE] if FLOE else [sys.executable, "-m", "floe.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
    env.update(extra)
    return env


def run_floe(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*floe_argv(), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        input=stdin,
        timeout=timeout,
        check=False,
    )


class Up:
    """``floe up`` in a directory, its stdout read line by line on a thread."""

    def __init__(self, cwd: Path, **env: str) -> None:
        self.cwd = cwd
        self.stderr_path = cwd / f"up-{time.monotonic_ns()}.stderr"
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [*floe_argv(), "up", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
                stdout=subprocess.PIPE,
                stderr=err,
                env=clean_env(**env),
                cwd=cwd,
                text=True,
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def read_until(self, marker: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} from floe up:\n{''.join(self.stdout)}\n{self.stderr()}"
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, f"floe up ended before {marker!r}:\n{''.join(self.stdout)}\n{self.stderr()}"
            self.stdout.append(line)
            if marker in line:
                return "".join(self.stdout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: signal.Signals, timeout: float = 30) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        while (line := self.lines.get(timeout=10)) is not None:  # the rest, up to end of file
            self.stdout.append(line)
        self._reader.join(timeout=5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def endpoint(banner: str, label: str) -> str:
    m = re.search(rf"{label}\s+(?:http://)?(\S+)", banner)
    assert m, banner
    return m.group(1)
