"""Shared fixtures: one control plane for the session, factories for tests that need their own."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from floe import Client
from tests.helpers import ControlPlaneProcess
from tests.pki import issue_pki

_counter = itertools.count()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    """A control plane shared by the session. Tests must use unique ids (see ``uid``).

    Its failed-authentication limit is raised so tests of bad credentials do not lock each
    other out; the limiter has its own test on a private server.
    """
    cp = ControlPlaneProcess(tmp_path_factory.mktemp("cp") / "data", "--auth-failure-burst", "100000")
    cp.start()
    yield cp
    cp.stop()


@pytest.fixture
def start_control_plane(tmp_path: Path) -> Iterator[Callable[..., ControlPlaneProcess]]:
    """Factory for a private control plane: ``start_control_plane("--flag", "value")``."""
    started: list[ControlPlaneProcess] = []

    def start(*extra: str, data_dir: Path | None = None, env: dict[str, str] | None = None) -> ControlPlaneProcess:
        cp = ControlPlaneProcess(data_dir or tmp_path / f"data{len(started)}", *extra, env=env)
        started.append(cp)
        return cp.start()

    yield start
    for cp in started:
        cp.kill()


@pytest.fixture
def admin(control_plane: ControlPlaneProcess) -> Iterator[Client]:
    """A blocking SDK client with the bootstrap admin key."""
    with Client(control_plane.grpc, api_key=control_plane.admin_key, retries=0) as c:
        yield c


@pytest.fixture
def uid() -> Callable[[str], str]:
    """Unique resource ids for the shared control plane: ``uid("acme")`` -> ``acme-3f2a-7``."""
    import os

    run = os.urandom(2).hex()

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{run}-{next(_counter)}"

    return make


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test CA with server and client certificates (``tests/pki.py``)."""
    return issue_pki(tmp_path_factory.mktemp("pki"))
