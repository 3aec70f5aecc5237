"""The ``floe`` command as a user runs it: resource commands against the shared control plane
(table and JSON output, errors, credentials) and ``floe up`` in a fresh directory."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from floe import Client
from floe.v1 import datasets_pb2
from tests.helpers import ControlPlaneProcess, eventually
from tests.upkit import Up, clean_env, endpoint, run_floe


def table(stdout: str) -> list[dict[str, str]]:
    """Parse the CLI's aligned table: columns start where the header's titles start."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
    titles = [header[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for line in lines[1:]:
        cells = [line[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(titles, cells, strict=True)))
    return rows


class Cli:
    """Runs ``floe`` against the shared control plane with FLOE_CONTROL_URL / FLOE_API_KEY."""

    def __init__(self, cp: ControlPlaneProcess, cwd: Path) -> None:
        self.cp = cp
        self.cwd = cwd
        self.env = clean_env(FLOE_CONTROL_URL=cp.grpc, FLOE_API_KEY=cp.admin_key)

    def __call__(self, *args: str, ok: bool = True, key: str | None = None) -> subprocess.CompletedProcess[str]:
        env = self.env if key is None else {**self.env, "FLOE_API_KEY": key}
        result = run_floe(*args, env=env, cwd=self.cwd)
        if ok:
            assert result.returncode == 0, f"floe {' '.join(args)} failed:\n{result.stderr}"
            assert "Error" not in result.stderr
            assert "Traceback" not in result.stderr
        return result

    def json(self, *args: str, key: str | None = None) -> Any:
        return json.loads(self("-o", "json", *args, key=key).stdout)


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port with nothing listening on it (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def cli(control_plane: ControlPlaneProcess, tmp_path: Path) -> Cli:
    return Cli(control_plane, tmp_path)


# -- tenants ------------------------------------------------------------------------------------


def test_tenants_create_list_get_update_delete(cli: Cli, uid: Callable[[str], str]) -> None:
    tenant = uid("cli")
    created = table(cli("tenants", "create", tenant, "--display-name", "CLI Corp", "--label", "tier=gold").stdout)
    assert len(created) == 1
    assert created[0]["NAME"] == f"tenants/{tenant}"
    assert created[0]["DISPLAY NAME"] == "CLI Corp"
    assert created[0]["STATE"] == "active"
    assert created[0]["CREATED"].endswith("Z")

    listed = table(cli("tenants", "list").stdout)
    assert {"NAME": f"tenants/{tenant}", "DISPLAY NAME": "CLI Corp"}.items() <= next(
        r for r in listed if r["NAME"] == f"tenants/{tenant}"
    ).items()
    as_json = cli.json("tenants", "list")
    assert isinstance(as_json, list)
    mine = next(t for t in as_json if t["name"] == f"tenants/{tenant}")
    assert mine["displayName"] == "CLI Corp"
    assert mine["labels"] == {"tier": "gold"}
    assert mine["state"] == "STATE_ACTIVE"

    got = cli.json("tenants", "get", tenant)
    assert got == mine
    assert cli.json("tenants", "get", f"tenants/{tenant}") == got  # full names work too

    updated = cli.json("tenants", "update", tenant, "--display-name", "CLI Corporation", "--state", "suspended")
    assert updated["displayName"] == "CLI Corporation"
    assert updated["state"] == "STATE_SUSPENDED"
    assert updated["labels"] == {"tier": "gold"}  # untouched by the mask
    assert updated["etag"] != got["etag"]
    assert updated["createTime"] == got["createTime"]
    assert table(cli("tenants", "get", tenant).stdout)[0]["STATE"] == "suspended"

    nothing = cli("tenants", "update", tenant, ok=False)
    assert nothing.returncode != 0
    assert "Nothing to update" in nothing.stderr

    assert cli("tenants", "delete", tenant).stdout.strip() == f"Deleted tenants/{tenant}"
    gone = cli("tenants", "get", tenant, ok=False)
    assert gone.returncode == 1
    assert gone.stderr.startswith("Error: NOT_FOUND")
    assert f"tenants/{tenant}" in gone.stderr


def test_output_flag_is_accepted_after_the_command(cli: Cli, uid: Callable[[str], str]) -> None:
    tenant = uid("late-o")
    cli("tenants", "create", tenant)
    before = json.loads(cli("-o", "json", "tenants", "get", tenant).stdout)
    after = json.loads(cli("tenants", "get", tenant, "-o", "json").stdout)
    assert before == after
    assert after["name"] == f"tenants/{tenant}"


def test_invalid_request_exits_1_naming_the_field(cli: Cli, uid: Callable[[str], str]) -> None:
    bad = cli("tenants", "create", "Not_Valid!", ok=False)
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr.startswith("Error: INVALID_ARGUMENT")
    assert "\n  tenant_id: " in bad.stderr  # the field violation, on its own line

    tenant = uid("clibad")
    cli("tenants", "create", tenant)
    port = cli(
        "datasets", "create", f"{tenant}/fw", "--source-type", "syslog_udp", "--port", "99999", "--proxy", "edge",
        ok=False,
    )  # fmt: skip
    assert port.returncode == 1
    assert "INVALID_ARGUMENT" in port.stderr
    assert "dataset.source.port" in port.stderr
    cli("tenants", "delete", tenant)


# -- datasets -----------------------------------------------------------------------------------


def test_datasets_create_with_flags_then_list_and_get(cli: Cli, uid: Callable[[str], str]) -> None:
    tenant = uid("clids")
    cli("tenants", "create", tenant)
    created = table(
        cli(
            "datasets", "create", f"{tenant}/firewall",
            "--source-type", "syslog_udp", "--port", "5514", "--proxy", "edge-1",
            "--display-name", "Firewall", "--label", "env=prod",
        ).stdout
    )  # fmt: skip
    name = f"tenants/{tenant}/datasets/firewall"
    assert created == [
        {
            "NAME": name,
            "SOURCE": "syslog_udp",
            "PORT": "5514",
            "HINT": created[0]["HINT"],
            "PROXY": "edge-1",
            "ACTIVE": "yes",
            "STEPS": "0",
        }
    ]
    cli("datasets", "create", f"{tenant}/second", "--source-type", "syslog_udp", "--port", "5515", "--proxy", "edge-2")

    rows = table(cli("datasets", "list", "--tenant", f"tenants/{tenant}").stdout)
    assert [r["NAME"] for r in rows] == [name, f"tenants/{tenant}/datasets/second"]
    assert rows[1]["PORT"] == "5515"

    listed = cli.json("datasets", "list", "--tenant", f"tenants/{tenant}")
    first = listed[0]
    assert first["name"] == name
    assert first["source"]["type"] == "SOURCE_TYPE_SYSLOG_UDP"
    assert first["source"]["port"] == 5514
    assert first["proxy"] == {"agent": "edge-1"}
    assert first["displayName"] == "Firewall"
    assert first["labels"] == {"env": "prod"}
    assert first["active"] is True
    assert cli.json("datasets", "get", name) == first
    assert name in {d["name"] for d in cli.json("datasets", "list")}  # every visible tenant

    blocked = cli("tenants", "delete", tenant, ok=False)
    assert blocked.returncode == 1
    assert "FAILED_PRECONDITION" in blocked.stderr
    cli("tenants", "delete", tenant, "--force")
    assert cli.json("datasets", "list", "--tenant", f"tenants/{tenant}") == []


# -- keys and credentials -----------------------------------------------------------------------


def test_key_secret_is_shown_once_and_works(cli: Cli, uid: Callable[[str], str]) -> None:
    tenant = uid("clikey")
    cli("tenants", "create", tenant)
    out = cli("keys", "create", "--role", "viewer", "--tenant", tenant, "--display-name", "dash").stdout
    head, sep, tail = out.partition("Secret (shown once, store it now):")
    assert sep
    secret = tail.strip()
    assert re.fullmatch(r"floe_u_[a-z0-9]+_[A-Za-z0-9_-]{43}", secret), secret
    key = table(head)[0]
    assert key["ROLE"] == "viewer"
    assert key["TENANT"] == f"tenants/{tenant}"
    assert secret.startswith(key["PREFIX"] + "_")

    assert secret not in cli("keys", "get", key["NAME"]).stdout
    assert secret not in cli("-o", "json", "keys", "list", "--tenant", tenant).stdout
    assert secret.split("_", 3)[3] not in cli("-o", "json", "keys", "get", key["NAME"]).stdout

    me = table(cli("whoami", key=secret).stdout)[0]
    assert me == {"PRINCIPAL": key["NAME"], "ROLE": "viewer", "TENANT": f"tenants/{tenant}"}
    denied = cli("tenants", "create", uid("nope"), ok=False, key=secret)
    assert denied.returncode == 1
    assert "PERMISSION_DENIED" in denied.stderr

    created = cli.json("keys", "create", "--role", "editor", "--tenant", tenant)
    assert set(created) == {"apiKey", "secret"}
    assert created["apiKey"]["role"] == "ROLE_EDITOR"
    assert "secret" not in created["apiKey"]
    editor = cli.json("whoami", key=created["secret"])
    assert editor["principal"] == created["apiKey"]["name"]

    revoked = cli.json("keys", "revoke", created["apiKey"]["name"])
    assert revoked["revokeTime"]
    after = cli("whoami", ok=False, key=created["secret"])
    assert after.returncode == 1
    assert "UNAUTHENTICATED" in after.stderr
    cli("tenants", "delete", tenant, "--force")


def test_no_credential_exits_2_with_a_helpful_message(control_plane: ControlPlaneProcess, tmp_path: Path) -> None:
    result = run_floe("tenants", "list", env=clean_env(FLOE_CONTROL_URL=control_plane.grpc), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "No credential" in result.stderr
    assert "--api-key" in result.stderr
    assert "FLOE_API_KEY" in result.stderr
    assert "admin.key" in result.stderr


def test_default_credential_is_the_admin_key_in_the_data_dir(
    control_plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    env = clean_env(FLOE_CONTROL_URL=control_plane.grpc, FLOE_DATA_DIR=str(control_plane.data_dir))
    me = json.loads(run_floe("-o", "json", "whoami", env=env, cwd=tmp_path).stdout)
    assert me["role"] == "ROLE_ADMIN"


def test_flags_override_the_environment(control_plane: ControlPlaneProcess, tmp_path: Path) -> None:
    env = clean_env(FLOE_CONTROL_URL="127.0.0.1:1", FLOE_API_KEY="floe_u_wrongwrong_" + "x" * 43)
    result = run_floe(
        "--target", control_plane.grpc, "--api-key", control_plane.admin_key, "-o", "json", "whoami",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["role"] == "ROLE_ADMIN"


def test_unreachable_control_plane_exits_1(tmp_path: Path) -> None:
    with closed_port() as port:
        env = clean_env(FLOE_CONTROL_URL=f"127.0.0.1:{port}", FLOE_API_KEY="floe_u_abcdefghij_" + "x" * 43)
        result = run_floe("--timeout", "2", "health", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: UNAVAILABLE")


def test_users_create_with_password_from_stdin(cli: Cli, uid: Callable[[str], str]) -> None:
    user = uid("cliuser")
    result = run_floe(
        "users", "create", user, "--role", "viewer", "--display-name", "Cli User",
        env=cli.env, cwd=cli.cwd, stdin="a long enough password\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert table(result.stdout)[0]["NAME"] == f"users/{user}"
    with Client(cli.cp.grpc, retries=0) as anonymous:
        assert anonymous.auth.login(user, "a long enough password").access_token
    short = cli("users", "create", uid("cliuser"), "--role", "viewer", "--password", "short", ok=False)
    assert short.returncode == 1
    assert "password" in short.stderr
    assert cli("users", "delete", user).stdout.strip() == f"Deleted users/{user}"


def test_health(cli: Cli) -> None:
    row = table(cli("health").stdout)[0]
    assert row["STATUS"] == "healthy"
    assert row["CHECKS"] == "store=healthy"
    assert re.fullmatch(r"\d+s", row["UPTIME"])
    health = cli.json("health")
    assert health["status"] == "HEALTH_STATUS_HEALTHY"
    assert health["version"] == row["VERSION"]
    assert {"name": "store", "status": "HEALTH_STATUS_HEALTHY"}.items() <= health["checks"][0].items()


# -- floe up ------------------------------------------------------------------------------------


@pytest.fixture
def up_dir(tmp_path: Path) -> Iterator[tuple[Path, list[Up]]]:
    started: list[Up] = []
    yield tmp_path, started
    for up in started:  # whatever a failed test left behind
        up.kill()
        info = tmp_path / "floe-data" / "control-plane.json"
        if info.exists():
            pid = json.loads(info.read_text()).get("pid")
            if isinstance(pid, int):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_floe_up_serves_stops_on_ctrl_c_and_keeps_state(up_dir: tuple[Path, list[Up]]) -> None:
    cwd, started = up_dir
    data_dir = cwd / "floe-data"

    first = Up(cwd)
    started.append(first)
    banner = first.read_until("Press Ctrl-C")
    assert "Floe is up." in banner
    grpc_address = endpoint(banner, "control plane gRPC")
    http_address = endpoint(banner, "control plane HTTP")
    assert str(data_dir) in banner
    admin_key = (data_dir / "admin.key").read_text().strip()
    assert admin_key not in banner
    cp_pid = json.loads((data_dir / "control-plane.json").read_text())["pid"]

    with Client(grpc_address, api_key=admin_key, retries=0) as c:
        assert c.tenants.create("up-tenant", display_name="Up").name == "tenants/up-tenant"
    # The CLI in that directory finds ./floe-data/admin.key by itself.
    listed = run_floe("-o", "json", "tenants", "list", env=clean_env(FLOE_CONTROL_URL=grpc_address), cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)] == ["tenants/up-tenant"]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{http_address}/readyz", timeout=10) as resp:
        assert resp.status == 200

    # The proxy agent runs too: a dataset assigned to it gets a listener that counts syslog.
    assert (data_dir / "agent.key").stat().st_mode & 0o777 == 0o600
    proxy_api = endpoint(banner, "proxy agent")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Client(grpc_address, api_key=admin_key, retries=0) as c:
        ds = datasets_pb2.Dataset(
            source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_SYSLOG_UDP, bind_host="127.0.0.1", port=port),
            proxy=datasets_pb2.ProxyAssignment(agent="local"),
            active=True,
        )
        c.datasets.create("up-tenant", "syslog", ds)
        eventually(lambda: c.agents.get("local").connected and not c.agents.get("local").drift, timeout=10)

    def received() -> int:
        subprocess.run(["logger", "-d", "-n", "127.0.0.1", "-P", str(port), "floe up test"], check=True)
        with opener.open(f"http://{proxy_api}/healthz", timeout=5) as resp:
            health = json.loads(resp.read())
        comps = {c["name"]: c for c in health["health"]["components"]}
        return int(comps["source/tenants/up-tenant/datasets/syslog"].get("events_in", 0))

    eventually(received, timeout=10)

    assert first.stop(signal.SIGINT) == 0
    assert "Floe stopped." in "".join(first.stdout)
    assert not (data_dir / "control-plane.json").exists()
    eventually(lambda: not Path(f"/proc/{cp_pid}").exists(), timeout=10)
    assert admin_key not in first.stderr()

    second = Up(cwd)
    started.append(second)
    banner = second.read_until("Press Ctrl-C")
    grpc_address = endpoint(banner, "control plane gRPC")
    assert (data_dir / "admin.key").read_text().strip() == admin_key
    with Client(grpc_address, api_key=admin_key, retries=0) as c:
        assert c.tenants.get("up-tenant").display_name == "Up"
    assert second.stop(signal.SIGTERM) == 0
    assert "Floe stopped." in "".join(second.stdout)
    assert "Bootstrap admin key created" not in second.stderr()
