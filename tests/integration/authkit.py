"""Helpers for the key, auth and grpcurl tests: expected-error assertions, raw gRPC calls with
arbitrary metadata, clients for a credential, and a record of every secret a module created
so a final test can check that none of them reached the control plane's log."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message, timestamp_pb2

from floe import Client, RpcError
from floe.errors import from_grpc_error
from floe.v1 import common_pb2, keys_pb2, tenants_pb2

ADMIN = common_pb2.ROLE_ADMIN
EDITOR = common_pb2.ROLE_EDITOR
VIEWER = common_pb2.ROLE_VIEWER
AGENT = common_pb2.ROLE_AGENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT


def expect_error(
    call: Callable[..., Any], *args: Any, code: grpc.StatusCode, reason: str | None = None, **kwargs: Any
) -> RpcError:
    """Run ``call`` and assert it fails with ``code`` (and ``reason`` when given)."""
    with pytest.raises(RpcError) as info:
        call(*args, **kwargs)
    err = info.value
    assert err.code == code, f"expected {code.name}, got {err}"
    if reason is not None:
        assert err.reason == reason, f"expected reason {reason}, got {err}"
    return err


def fails_with(call: Callable[[], Any], code: grpc.StatusCode, reason: str | None = None) -> bool:
    """For ``eventually``: whether ``call`` now fails with ``code`` (and ``reason``)."""
    try:
        call()
    except RpcError as err:
        return err.code == code and (reason is None or err.reason == reason)
    return False


def violation_fields(err: RpcError) -> set[str]:
    return {v.field for v in err.violations}


@contextlib.contextmanager
def client_for(target: str, credential: str | None = None, *, token: bool = False) -> Iterator[Client]:
    """A blocking client authenticated with an API key (or, with ``token``, an access token)."""
    kwargs: dict[str, Any] = {"retries": 0, "timeout": 10.0}
    if credential is not None:
        kwargs["token" if token else "api_key"] = credential
    with Client(target, **kwargs) as c:
        yield c


def raw_call(
    target: str,
    method: str,
    request: message.Message,
    response_type: type[Any],
    metadata: tuple[tuple[str, str], ...] = (),
) -> Any:
    """A unary call with exactly the metadata given (the SDK always sends a well-formed header).

    Raises ``RpcError`` like the SDK does.
    """
    with grpc.insecure_channel(target) as channel:
        stub = channel.unary_unary(
            method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        try:
            return stub(request, metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            raise from_grpc_error(exc) from None


def list_tenants_raw(target: str, metadata: tuple[tuple[str, str], ...] = ()) -> tenants_pb2.ListTenantsResponse:
    response: tenants_pb2.ListTenantsResponse = raw_call(
        target,
        "/floe.v1.TenantService/ListTenants",
        tenants_pb2.ListTenantsRequest(),
        tenants_pb2.ListTenantsResponse,
        metadata,
    )
    return response


def create_key_expiring(admin: Client, expire_unix: float, **fields: Any) -> tuple[keys_pb2.ApiKey, str]:
    """CreateApiKey with an ``expire_time`` (the SDK helper does not take one)."""
    key = keys_pb2.ApiKey(**fields)
    key.expire_time.CopyFrom(timestamp_pb2.Timestamp(seconds=int(expire_unix), nanos=int(expire_unix % 1 * 1e9)))
    resp = admin.call(admin.stubs.keys.CreateApiKey, keys_pb2.CreateApiKeyRequest(api_key=key))
    return resp.api_key, resp.secret


def jwt_segments(token: str) -> list[str]:
    parts = token.split(".")
    assert len(parts) == 3, "an access token is a compact JWS"
    return parts


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(b64url_decode(jwt_segments(token)[1]))
    return claims


def flip_char(segment: str, index: int) -> str:
    """Replace one base64url character with a different one (which changes the decoded bytes
    as long as ``index`` is not the last character of a segment)."""
    old = segment[index]
    new = "A" if old != "A" else "B"
    return segment[:index] + new + segment[index + 1 :]


class SecretLedger:
    """Every secret a test module handled, checked against a server log at the end."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def add(self, *values: str) -> None:
        for value in values:
            assert value, "an empty secret cannot be tracked"
            self.values.append(value)
            # An API key's public prefix may be logged; the random part never.
            if value.startswith("floe_") and value.count("_") >= 3:
                self.values.append(value.split("_", 3)[3])

    def assert_not_in(self, log: str) -> None:
        assert self.values, "the module should have recorded the secrets it created"
        leaked = [v[:12] + "..." for v in self.values if v in log]
        assert not leaked, f"{len(leaked)} secret(s) found in the control plane log: {leaked}"
