"""Running the control plane: HTTP probes and metrics, graceful shutdown, restarts, crash
recovery, the bootstrap admin key, secrets at rest, migrations and start-up errors.

Every test runs real ``floe control-plane`` processes on loopback with OS-assigned ports.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from control_plane.store.sqlite import migrations
from floe import Client
from floe.errors import RpcError
from floe.v1 import common_pb2, datasets_pb2, keys_pb2, tenants_pb2
from tests.helpers import ROOT, ControlPlaneProcess, eventually, metric_value

StartCP = Callable[..., ControlPlaneProcess]

# No proxy from the environment may sit between the tests and loopback.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(address: str, path: str) -> tuple[int, str, bytes]:
    """GET ``http://address/path``: (status, content type, body), for error statuses too."""
    try:
        with _opener.open(f"http://{address}{path}", timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def http_json(address: str, path: str) -> tuple[int, Any]:
    status, ctype, body = http_get(address, path)
    assert ctype.startswith("application/json"), (path, ctype)
    return status, json.loads(body)


def client(cp: ControlPlaneProcess, key: str | None = None, *, token: str | None = None) -> Client:
    if token is not None:
        return Client(cp.grpc, token=token, retries=0)
    return Client(cp.grpc, api_key=key or cp.admin_key, retries=0)


def syslog_dataset(port: int, agent: str = "edge-1") -> datasets_pb2.Dataset:
    return datasets_pb2.Dataset(
        source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_SYSLOG_UDP, port=port),
        proxy=datasets_pb2.ProxyAssignment(agent=agent),
        active=True,
    )


def db_bytes(data_dir: Path) -> bytes:
    """Raw bytes of the SQLite database and its WAL (when one is left)."""
    files = [data_dir / "control-plane.db", data_dir / "control-plane.db-wal"]
    assert files[0].exists()
    return b"".join(f.read_bytes() for f in files if f.exists())


def sqlite_rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(data_dir / "control-plane.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def run_control_plane(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``floe control-plane ARGS`` to completion (for runs that must fail at start-up)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
    base.update(env or {})
    argv = [sys.executable, "-m", "floe.cli", "control-plane", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=base, cwd=ROOT, timeout=timeout, check=False)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_of(cp: ControlPlaneProcess) -> int:
    assert cp.proc is not None
    return cp.proc.pid


# -- HTTP port on the shared server -------------------------------------------------------------


def test_liveness_readiness_and_startup_probes(control_plane: ControlPlaneProcess) -> None:
    assert http_json(control_plane.http, "/livez") == (200, {"status": "ok"})
    assert http_json(control_plane.http, "/readyz") == (200, {"status": "ready"})
    assert http_json(control_plane.http, "/startupz") == (200, {"status": "ready"})


def test_healthz_reports_service_version_uptime_and_store(control_plane: ControlPlaneProcess) -> None:
    from importlib.metadata import version

    status, body = http_json(control_plane.http, "/healthz")
    assert status == 200
    assert set(body) >= {"status", "service", "version", "uptime_seconds", "store"}
    assert body["status"] == "healthy"
    assert body["service"] == "floe-control-plane"
    assert body["version"] == version("floe")
    assert isinstance(body["uptime_seconds"], int)
    assert body["uptime_seconds"] >= 0
    assert body["store"]["healthy"] is True
    assert isinstance(body["store"]["latency_ms"], int | float)
    assert 0 <= body["store"]["latency_ms"] < 5000
    assert "error" not in body["store"]


def test_unknown_http_path_is_404(control_plane: ControlPlaneProcess) -> None:
    status, _, _ = http_get(control_plane.http, "/no-such-page")
    assert status == 404


def test_metrics_count_calls_by_method_and_code(
    control_plane: ControlPlaneProcess, admin: Client, uid: Callable[[str], str]
) -> None:
    status, ctype, body = http_get(control_plane.http, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain")
    assert b"# TYPE grpc_server_handled_total counter" in body
    assert b"# TYPE grpc_server_started_total counter" in body
    assert b"# TYPE grpc_server_handling_seconds histogram" in body

    labels = {"grpc_service": "floe.v1.TenantService", "grpc_method": "GetTenant"}
    ok = {**labels, "grpc_code": "OK"}
    unauthenticated = {**labels, "grpc_code": "UNAUTHENTICATED"}
    not_found = {**labels, "grpc_code": "NOT_FOUND"}
    before = {
        "ok": metric_value(control_plane.http, "grpc_server_handled_total", **ok),
        "unauth": metric_value(control_plane.http, "grpc_server_handled_total", **unauthenticated),
        "missing": metric_value(control_plane.http, "grpc_server_handled_total", **not_found),
        "seconds": metric_value(control_plane.http, "grpc_server_handling_seconds_count", **labels),
    }

    tenant = uid("metrics")
    admin.tenants.create(tenant)
    admin.tenants.get(tenant)
    with pytest.raises(RpcError) as missing:
        admin.tenants.get(uid("absent"))
    assert missing.value.code == grpc.StatusCode.NOT_FOUND
    with client(control_plane, "floe_u_abcdefghij_" + "x" * 43) as stranger, pytest.raises(RpcError) as denied:
        stranger.tenants.get(tenant)
    assert denied.value.code == grpc.StatusCode.UNAUTHENTICATED

    after = {
        "ok": metric_value(control_plane.http, "grpc_server_handled_total", **ok),
        "unauth": metric_value(control_plane.http, "grpc_server_handled_total", **unauthenticated),
        "missing": metric_value(control_plane.http, "grpc_server_handled_total", **not_found),
        "seconds": metric_value(control_plane.http, "grpc_server_handling_seconds_count", **labels),
    }
    assert after["ok"] - before["ok"] == 1
    assert after["unauth"] - before["unauth"] == 1
    assert after["missing"] - before["missing"] == 1
    assert after["seconds"] - before["seconds"] == 3
    create = {"grpc_service": "floe.v1.TenantService", "grpc_method": "CreateTenant", "grpc_code": "OK"}
    assert metric_value(control_plane.http, "grpc_server_handled_total", **create) >= 1


# -- lifecycle ----------------------------------------------------------------------------------


def test_sigterm_exits_zero_and_removes_the_endpoints_file(start_control_plane: StartCP, tmp_path: Path) -> None:
    # Also precedence end to end: flags (--log-format json, --grpc-listen 127.0.0.1:0) beat env
    # and file, env (7s) beats file (3s).
    config = tmp_path / "cp.yaml"
    config.write_text("drain_timeout: 3s\nlog_format: text\ngrpc_listen: 127.0.0.1:1\n")
    cp = start_control_plane(env={"FLOE_CONFIG": str(config), "FLOE_LOG_FORMAT": "text", "FLOE_DRAIN_TIMEOUT": "7s"})
    endpoints = cp.data_dir / "control-plane.json"
    info = json.loads(endpoints.read_text())
    assert info == {"grpc": cp.grpc, "http": cp.http, "pid": pid_of(cp)}
    assert not cp.grpc.endswith(":1")
    assert http_get(cp.http, "/readyz")[0] == 200

    started = time.monotonic()
    assert cp.stop(timeout=15) == 0
    assert time.monotonic() - started < 10
    assert not endpoints.exists()
    with pytest.raises(OSError):
        http_get(cp.http, "/livez")

    lines = [json.loads(line) for line in cp.log().splitlines() if line.strip()]
    messages = [line["msg"] for line in lines]
    assert "Control plane started" in messages
    assert messages[-1] == "Control plane stopped"
    stopping = next(line for line in lines if line["msg"] == "Control plane stopping")
    assert stopping["drain_timeout_s"] == 7.0


def test_call_in_flight_at_sigterm_completes(start_control_plane: StartCP) -> None:
    cp = start_control_plane()
    pid = pid_of(cp)
    with client(cp) as c:
        c.keys.list()  # connected, and the admin key verified and cached

        # CreateApiKey spends ~0.1 s of CPU in argon2; with four at once on two cores the
        # server is busy well past the signal.
        cpu_before = cpu_seconds(pid)

        def create(i: int) -> tuple[tuple[keys_pb2.ApiKey, str], float]:
            return c.keys.create(common_pb2.ROLE_VIEWER, display_name=f"inflight-{i}"), time.monotonic()

        with ThreadPoolExecutor(4) as pool:
            calls = [pool.submit(create, i) for i in range(4)]
            # All four are inside their handlers (not merely queued: a call the server has not
            # taken up yet is cancelled at shutdown, which is gRPC's contract, not a lost call).
            started = {"grpc_service": "floe.v1.KeyService", "grpc_method": "CreateApiKey"}
            eventually(lambda: metric_value(cp.http, "grpc_server_started_total", **started) == 4, interval=0.005)
            eventually(lambda: cpu_seconds(pid) - cpu_before >= 0.03, timeout=10, interval=0.005)
            assert not any(f.done() for f in calls), "calls finished before the signal"
            signalled = time.monotonic()
            assert cp.proc is not None
            cp.proc.terminate()
            results = [f.result(timeout=30) for f in calls]

        assert max(done for _, done in results) > signalled
        assert cp.proc.wait(timeout=30) == 0
        with pytest.raises(RpcError) as after:
            c.keys.list()
        assert after.value.code == grpc.StatusCode.UNAVAILABLE

    created = [(key, secret) for (key, secret), _ in results]
    cp.start()
    with client(cp) as c:
        names = {k.name for k in c.keys.list()}
        for key, secret in created:
            assert key.name in names
            with client(cp, secret) as own:
                assert own.auth.whoami().principal == key.name
    assert cp.stop() == 0


def test_restart_keeps_tenants_datasets_keys_and_tokens(start_control_plane: StartCP) -> None:
    cp = start_control_plane()
    signing_key = (cp.data_dir / "jwt-signing.pem").read_bytes()
    with client(cp) as c:
        tenant = c.tenants.create("acme", display_name="ACME", labels={"tier": "gold"})
        dataset = c.datasets.create("acme", "firewall", syslog_dataset(5514))
        key, secret = c.keys.create(common_pb2.ROLE_EDITOR, tenant="acme", display_name="ci")
        c.users.create("alice", "correct horse battery staple", role=common_pb2.ROLE_VIEWER)
        login = c.auth.login("alice", "correct horse battery staple")
        assert login.access_token

    cp.restart()

    assert (cp.data_dir / "jwt-signing.pem").read_bytes() == signing_key
    with client(cp) as c:
        assert c.tenants.get("acme") == tenant
        assert c.datasets.get(dataset.name) == dataset
        assert c.keys.get(key.name).prefix == key.prefix
        assert [t.name for t in c.tenants.list()] == ["tenants/acme"]
    with client(cp, secret) as own:
        me = own.auth.whoami()
        assert (me.principal, me.role, me.tenant) == (key.name, common_pb2.ROLE_EDITOR, "tenants/acme")
        assert own.datasets.get(dataset.name).source.port == 5514
    with client(cp, token=login.access_token) as alice:
        me = alice.auth.whoami()
        assert (me.principal, me.role) == ("users/alice", common_pb2.ROLE_VIEWER)
    with Client(cp.grpc, retries=0) as anonymous:  # the refresh session survived too
        assert anonymous.auth.refresh(login.refresh_token).access_token
    assert cp.stop() == 0


def test_bootstrap_admin_key_is_private_created_once_and_never_logged(start_control_plane: StartCP) -> None:
    cp = start_control_plane("--log-level", "debug")
    key_file = cp.data_dir / "admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cp.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((cp.data_dir / "jwt-signing.pem").stat().st_mode) == 0o600
    secret = cp.admin_key
    assert secret.startswith("floe_u_")
    random_part = secret.split("_", 3)[3]
    with client(cp) as c:
        me = c.auth.whoami()
        assert me.role == common_pb2.ROLE_ADMIN
        assert c.keys.get(me.principal).display_name == "bootstrap admin"
    first_contents = key_file.read_bytes()
    first_inode = key_file.stat().st_ino

    cp.restart()
    cp.restart()

    assert key_file.read_bytes() == first_contents
    assert key_file.stat().st_ino == first_inode  # not even rewritten
    with client(cp) as c:
        admins = [k for k in c.keys.list() if k.role == common_pb2.ROLE_ADMIN]
        assert [k.name for k in admins] == [me.principal]
    assert cp.stop() == 0
    log = cp.log()
    assert "Bootstrap admin key created" in log
    assert log.count("Bootstrap admin key created") == 1
    assert secret not in log
    assert random_part not in log


def test_database_holds_no_plaintext_secrets(start_control_plane: StartCP) -> None:
    cp = start_control_plane()
    password = "Tr0ub4dor&3-plaintext-canary"
    with client(cp) as c:
        c.tenants.create("canary-tenant")
        key, secret = c.keys.create(common_pb2.ROLE_VIEWER, display_name="canary")
        c.users.create("bob", password, role=common_pb2.ROLE_VIEWER)
        login = c.auth.login("bob", password)
        c.users.set_password("bob", password + "-changed")
    admin_secret = cp.admin_key
    # While running, the WAL holds the recent writes.
    running = db_bytes(cp.data_dir)
    assert cp.stop() == 0
    stopped = db_bytes(cp.data_dir)

    for raw in (running, stopped):
        assert b"canary-tenant" in raw  # the right files: resources are there
        assert key.prefix.encode() in raw  # the public prefix may be stored
        for value in (secret, admin_secret, password, password + "-changed", login.refresh_token):
            assert value.encode() not in raw
        for value in (secret, admin_secret):
            assert value.split("_", 3)[3].encode() not in raw
        assert login.refresh_token.split(".", 1)[1].encode() not in raw
        assert b"$argon2id$" in raw  # hashes are what is stored


def test_restart_does_not_reapply_migrations_and_keeps_data(start_control_plane: StartCP) -> None:
    cp = start_control_plane()
    with client(cp) as c:
        c.tenants.create("kept")
    assert cp.stop() == 0

    expected = [version for version, _ in migrations()]
    assert expected == sorted(expected)
    assert expected[0] == 1
    first = sqlite_rows(cp.data_dir, "SELECT version, applied_time FROM schema_migrations ORDER BY version")
    assert [v for v, _ in first] == expected  # one row per migration
    assert sqlite_rows(cp.data_dir, "SELECT max(version) FROM schema_migrations") == [(expected[-1],)]

    cp.start()
    with client(cp) as c:
        assert c.tenants.get("kept").name == "tenants/kept"
        c.tenants.create("after-restart")
    assert cp.stop() == 0

    assert sqlite_rows(cp.data_dir, "SELECT version, applied_time FROM schema_migrations ORDER BY version") == first
    names = {r[0] for r in sqlite_rows(cp.data_dir, "SELECT name FROM resources WHERE collection = 'tenants'")}
    assert names == {"tenants/kept", "tenants/after-restart"}
    assert sqlite_rows(cp.data_dir, "PRAGMA integrity_check") == [("ok",)]


def test_database_left_by_sigkill_keeps_every_acknowledged_write(start_control_plane: StartCP) -> None:
    cp = start_control_plane()
    acknowledged: list[str] = []
    with client(cp) as c:
        c.tenants.create("crash")
        for i in range(10):
            acknowledged.append(c.datasets.create("crash", f"ds-{i}", syslog_dataset(6000 + i)).name)
        key, secret = c.keys.create(common_pb2.ROLE_EDITOR, tenant="crash")
        updated = c.tenants.update(tenants_pb2.Tenant(name="tenants/crash", display_name="v2"), ["display_name"])
        assert updated.display_name == "v2"
    cp.kill()  # SIGKILL: no drain, no checkpoint
    assert cp.proc is not None
    assert cp.proc.returncode == -9
    assert (cp.data_dir / "control-plane.json").exists()  # stale, from the killed process

    cp.start()
    with client(cp) as c:
        assert c.tenants.get("crash").display_name == "v2"
        assert sorted(d.name for d in c.datasets.list("crash")) == sorted(acknowledged)
        assert c.keys.get(key.name).tenant == "tenants/crash"
    with client(cp, secret) as own:
        assert own.auth.whoami().principal == key.name
    assert cp.stop() == 0
    assert sqlite_rows(cp.data_dir, "PRAGMA integrity_check") == [("ok",)]


# -- start-up errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "yaml_text", "setting"),
    [
        (["--grpc-listen", "nonsense"], {}, None, "grpc_listen (flag --grpc-listen)"),
        ([], {"FLOE_ACCESS_TOKEN_TTL": "abc"}, None, "access_token_ttl (env FLOE_ACCESS_TOKEN_TTL)"),
        ([], {}, "grpc_listen: 127.0.0.1:0\nno_such_setting: 1\n", "no_such_setting (file "),
        (["--log-level", "loud"], {"FLOE_LOG_FORMAT": "xml"}, None, "log_format"),
    ],
    ids=["flag", "env", "yaml-unknown-key", "cross-field"],
)
def test_invalid_configuration_exits_2_naming_the_setting(
    tmp_path: Path, args: list[str], env: dict[str, str], yaml_text: str | None, setting: str
) -> None:
    data_dir = tmp_path / "data"
    if yaml_text is not None:
        config = tmp_path / "cp.yaml"
        config.write_text(yaml_text)
        args = [*args, "--config", str(config)]
    result = run_control_plane("--data-dir", str(data_dir), *args, env=env)
    assert result.returncode == 2, result.stderr
    assert "Invalid configuration" in result.stderr
    assert setting in result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()  # nothing touched before the settings are valid


@pytest.mark.parametrize("busy", ["grpc_listen", "http_listen"])
def test_port_in_use_fails_naming_the_setting(tmp_path: Path, busy: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        listen = {"grpc_listen": "127.0.0.1:0", "http_listen": "127.0.0.1:0", busy: f"127.0.0.1:{port}"}
        data_dir = tmp_path / "data"
        result = run_control_plane(
            "--data-dir", str(data_dir),
            "--grpc-listen", listen["grpc_listen"],
            "--http-listen", listen["http_listen"],
        )  # fmt: skip
    assert result.returncode != 0
    assert busy in result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (data_dir / "control-plane.json").exists()


@pytest.mark.parametrize("busy", ["grpc_listen", "http_listen"])
def test_second_control_plane_on_a_port_in_use_fails_and_the_first_keeps_serving(
    control_plane: ControlPlaneProcess, tmp_path: Path, busy: str
) -> None:
    # gRPC binds with SO_REUSEPORT by default: a second server on the same port would silently
    # share it (and its calls) with the first instead of failing.
    listen = {"grpc_listen": "127.0.0.1:0", "http_listen": "127.0.0.1:0"}
    listen[busy] = control_plane.grpc if busy == "grpc_listen" else control_plane.http
    result = run_control_plane(
        "--data-dir", str(tmp_path / "other"),
        "--grpc-listen", listen["grpc_listen"],
        "--http-listen", listen["http_listen"],
        timeout=60,
    )  # fmt: skip
    assert result.returncode != 0, result.stderr
    assert busy in result.stderr
    assert "Traceback" not in result.stderr
    assert http_json(control_plane.http, "/readyz") == (200, {"status": "ready"})
    with client(control_plane) as c:
        assert c.health.get().version
