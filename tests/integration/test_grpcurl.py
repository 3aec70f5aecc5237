"""The control plane through the real ``grpcurl`` binary: reflection lists and describes every
service, calls carry ``authorization: Bearer``, errors show their rich details, and the standard
health check needs no credential."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from floe import Client
from tests.helpers import ROOT, ControlPlaneProcess
from tests.integration.authkit import VIEWER, SecretLedger

GRPCURL = shutil.which("grpcurl")
SECRETS = SecretLedger()
# Exit status is 64 + the gRPC code when a call fails.
EXIT_INVALID_ARGUMENT = 64 + 3
EXIT_UNAUTHENTICATED = 64 + 16


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def grpcurl(target: str, *args: str, key: str | None = None, data: dict[str, Any] | None = None) -> Result:
    assert GRPCURL is not None, "grpcurl is not on PATH: it comes with pip install -e '.[dev]'"
    argv = [GRPCURL, "-plaintext", "-max-time", "20"]
    if key is not None:
        argv += ["-H", f"authorization: Bearer {key}"]
    if data is not None:
        argv += ["-d", json.dumps(data)]
    argv += [target, *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _proto_services() -> set[str]:
    """Every service declared in proto/floe/v1, read from the .proto sources themselves."""
    found = set()
    for path in (ROOT / "proto" / "floe" / "v1").glob("*.proto"):
        found |= {f"floe.v1.{name}" for name in re.findall(r"^service\s+(\w+)", path.read_text(), re.MULTILINE)}
    return found


def test_list_shows_every_service(control_plane: ControlPlaneProcess) -> None:
    result = grpcurl(control_plane.grpc, "list")
    assert result.returncode == 0, result.stderr
    listed = set(result.stdout.split())
    expected = _proto_services()
    assert {"floe.v1.TenantService", "floe.v1.KeyService", "floe.v1.HealthService"} <= expected
    assert expected <= listed, f"not served: {sorted(expected - listed)}"
    assert "grpc.health.v1.Health" in listed
    # Listing the methods of one service works too.
    methods = grpcurl(control_plane.grpc, "list", "floe.v1.KeyService")
    assert methods.returncode == 0, methods.stderr
    assert {f"floe.v1.KeyService.{m}" for m in ("CreateApiKey", "RevokeApiKey", "RotateApiKey")} <= set(
        methods.stdout.split()
    )


def test_describe_method_and_message(control_plane: ControlPlaneProcess) -> None:
    result = grpcurl(control_plane.grpc, "describe", "floe.v1.TenantService.CreateTenant")
    assert result.returncode == 0, result.stderr
    assert "floe.v1.TenantService.CreateTenant is a method" in result.stdout
    assert "rpc CreateTenant ( .floe.v1.CreateTenantRequest ) returns ( .floe.v1.CreateTenantResponse );" in (
        result.stdout
    )
    service = grpcurl(control_plane.grpc, "describe", "floe.v1.TenantService")
    assert service.returncode == 0, service.stderr
    assert "rpc ListTenants" in service.stdout and "rpc DeleteTenant" in service.stdout
    request = grpcurl(control_plane.grpc, "describe", "floe.v1.CreateTenantRequest")
    assert request.returncode == 0, request.stderr
    assert "string tenant_id = 1;" in request.stdout and ".floe.v1.Tenant tenant = 2;" in request.stdout


def test_create_tenant_and_read_it_back(
    admin: Client, control_plane: ControlPlaneProcess, uid: Callable[[str], str]
) -> None:
    tenant_id = uid("curl")
    key = control_plane.admin_key
    created = grpcurl(
        control_plane.grpc,
        "floe.v1.TenantService/CreateTenant",
        key=key,
        data={"tenant_id": tenant_id, "tenant": {"display_name": "Made with grpcurl", "labels": {"env": "ci"}}},
    )
    assert created.returncode == 0, created.stderr
    tenant = created.json()["tenant"]
    assert tenant["name"] == f"tenants/{tenant_id}"
    assert tenant["display_name"] == "Made with grpcurl"
    assert tenant["state"] == "STATE_ACTIVE"
    assert tenant["etag"]

    got = grpcurl(control_plane.grpc, "floe.v1.TenantService/GetTenant", key=key, data={"name": tenant["name"]})
    assert got.returncode == 0, got.stderr
    assert got.json()["tenant"] == tenant
    # The SDK sees the same tenant.
    assert admin.tenants.get(tenant_id).labels["env"] == "ci"

    listed = grpcurl(control_plane.grpc, "floe.v1.TenantService/ListTenants", key=key, data={"page_size": 1000})
    assert listed.returncode == 0, listed.stderr
    assert tenant["name"] in {t["name"] for t in listed.json()["tenants"]}


def test_key_created_with_grpcurl_works_with_grpcurl(
    admin: Client, control_plane: ControlPlaneProcess, uid: Callable[[str], str]
) -> None:
    tenant_id = uid("curlkey")
    admin.tenants.create(tenant_id)
    created = grpcurl(
        control_plane.grpc,
        "floe.v1.KeyService/CreateApiKey",
        key=control_plane.admin_key,
        data={"api_key": {"role": "ROLE_VIEWER", "tenant": f"tenants/{tenant_id}", "display_name": "curl"}},
    )
    assert created.returncode == 0, created.stderr
    body = created.json()
    secret = body["secret"]
    SECRETS.add(secret)
    assert secret.startswith(body["api_key"]["prefix"] + "_")
    assert body["api_key"]["role"] == "ROLE_VIEWER"
    who = grpcurl(control_plane.grpc, "floe.v1.AuthService/WhoAmI", key=secret)
    assert who.returncode == 0, who.stderr
    assert who.json() == {"principal": body["api_key"]["name"], "role": "ROLE_VIEWER", "tenant": f"tenants/{tenant_id}"}
    # The secret is in the create response only.
    got = grpcurl(
        control_plane.grpc, "floe.v1.KeyService/GetApiKey", key=secret, data={"name": body["api_key"]["name"]}
    )
    assert got.returncode == 0, got.stderr
    assert secret.split("_", 3)[3] not in got.stdout
    assert admin.keys.get(body["api_key"]["name"]).role == VIEWER


def test_invalid_argument_shows_error_details(control_plane: ControlPlaneProcess) -> None:
    result = grpcurl(
        control_plane.grpc,
        "floe.v1.TenantService/CreateTenant",
        key=control_plane.admin_key,
        data={"tenant_id": "Not_Valid", "tenant": {"display_name": "x" * 201}},
    )
    assert result.returncode == EXIT_INVALID_ARGUMENT, result
    err = result.stderr
    assert "Code: InvalidArgument" in err
    assert "tenant_id" in err and "tenant.display_name" in err
    details = _details(err)
    info = next(d for d in details if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
    assert info["reason"] == "INVALID_ARGUMENT"
    bad = next(d for d in details if d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
    fields = {v["field"] for v in bad.get("field_violations", bad.get("fieldViolations", []))}
    assert fields == {"tenant_id", "tenant.display_name"}


def test_missing_credential_is_explained(control_plane: ControlPlaneProcess) -> None:
    result = grpcurl(control_plane.grpc, "floe.v1.TenantService/ListTenants")
    assert result.returncode == EXIT_UNAUTHENTICATED, result
    assert "Code: Unauthenticated" in result.stderr
    assert "authorization: Bearer" in result.stderr
    assert [d["reason"] for d in _details(result.stderr)] == ["CREDENTIAL_MISSING"]


def test_standard_health_check_needs_no_credential(control_plane: ControlPlaneProcess) -> None:
    result = grpcurl(control_plane.grpc, "grpc.health.v1.Health/Check")
    assert result.returncode == 0, result.stderr
    assert result.json() == {"status": "SERVING"}
    # The Floe health service is not public.
    floe_health = grpcurl(control_plane.grpc, "floe.v1.HealthService/GetHealth")
    assert floe_health.returncode == EXIT_UNAUTHENTICATED, floe_health
    with_key = grpcurl(control_plane.grpc, "floe.v1.HealthService/GetHealth", key=control_plane.admin_key)
    assert with_key.returncode == 0, with_key.stderr
    assert with_key.json()["status"] == "HEALTH_STATUS_HEALTHY"


def _details(stderr: str) -> list[dict[str, Any]]:
    """The JSON of each ``N)\\t{...}`` line grpcurl prints under ``Details:``."""
    return [json.loads(m) for m in re.findall(r"^\s*\d+\)\s+(\{.*\})\s*$", stderr, re.MULTILINE)]


def test_zz_no_secret_in_control_plane_log(control_plane: ControlPlaneProcess) -> None:
    """Runs last in this module: the keys used and created above never reached the log."""
    SECRETS.add(control_plane.admin_key)
    SECRETS.assert_not_in(control_plane.log())
