"""floe.v1.KeyService. Secrets are generated here, returned once, and stored only as argon2."""

from __future__ import annotations

import logging
import time
from typing import Any

from control_plane.auth.authenticator import Authenticator
from control_plane.auth.principal import Principal
from control_plane.auth.secrets import generate_key, generate_key_id, hash_secret
from control_plane.core.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied
from control_plane.core.keys import key_valid_at
from control_plane.core.names import check_id, parse_name, parse_tenant_name
from control_plane.core.pagination import page_request
from control_plane.core.resources import from_record, timestamp, to_body
from control_plane.services.common import existing, fetch_page, principal, require
from control_plane.store import Record, Store
from floe.v1 import common_pb2, keys_pb2, keys_pb2_grpc

__all__ = ["KeyServicer", "create_key"]

log = logging.getLogger(__name__)
ApiKey = keys_pb2.ApiKey
MAX_GRACE_S = 7 * 86400


def _key_tenant(key: ApiKey) -> str | None:
    return key.tenant.removeprefix("tenants/") or None


def check_grant(caller: Principal, role: int, tenant: str | None, prefix: str) -> list[FieldViolation]:
    """What a caller may hand out: never more than it holds, never outside its tenant."""
    out = []
    if role not in common_pb2.Role.values() or role == common_pb2.ROLE_UNSPECIFIED:
        return [FieldViolation(f"{prefix}.role", "is required: ROLE_ADMIN, ROLE_EDITOR, ROLE_VIEWER or ROLE_AGENT")]
    if role == common_pb2.ROLE_ADMIN and tenant:
        out.append(FieldViolation(f"{prefix}.tenant", "must be empty for ROLE_ADMIN: admins are never tenant-bound"))
    if not caller.outranks_or_equals(role):
        raise PermissionDenied(
            f"A {caller.describe()} credential cannot grant {common_pb2.Role.Name(common_pb2.Role.ValueType(role))}."
        )
    if caller.tenant is not None and tenant != caller.tenant:
        raise PermissionDenied(f"A credential bound to tenants/{caller.tenant} can only grant access to that tenant.")
    if role == common_pb2.ROLE_AGENT and tenant is None and not caller.is_admin:
        raise PermissionDenied("Only an admin can create an agent key for every tenant; bind it to a tenant.")
    return out


async def create_key(store: Store, key: ApiKey, key_id: str = "") -> tuple[Record, str]:
    """Store a new key and return its record and secret (used by the service and bootstrap)."""
    key_id = key_id or generate_key_id()
    secret, prefix = generate_key(key_id, key.kind)
    key.prefix = prefix
    hashed = await hash_secret(secret)
    async with store.transaction() as tx:
        record = await tx.create(f"keys/{key_id}", "keys", key.tenant, to_body(key), credential=hashed)
    return record, secret


class KeyServicer(keys_pb2_grpc.KeyServiceServicer):
    def __init__(self, store: Store, authenticator: Authenticator) -> None:
        self._store = store
        self._auth = authenticator

    async def _visible(self, name: str) -> ApiKey:
        parse_name(name, "keys")
        caller = principal()
        record = await existing(self._store, name)
        key = from_record(record, ApiKey)
        tenant = _key_tenant(key)
        if caller.tenant is not None and tenant != caller.tenant:
            raise NotFound(f"{name} does not exist.")
        caller.require_read(tenant or caller.tenant or "", name)
        return key

    async def CreateApiKey(self, request: keys_pb2.CreateApiKeyRequest, context: Any) -> Any:
        caller = principal()
        # Creating a key is a write: a viewer (or agent) hands out no credential, not even its own role.
        caller.require_write(caller.tenant or "", "keys")
        key = ApiKey()
        key.CopyFrom(request.api_key)
        key.ClearField("revoke_time")
        key.ClearField("rotated_from")
        key.ClearField("prefix")
        if key.kind == keys_pb2.KEY_KIND_UNSPECIFIED:
            key.kind = keys_pb2.KEY_KIND_SERVICE if key.role == common_pb2.ROLE_AGENT else keys_pb2.KEY_KIND_USER
        violations: list[FieldViolation | None] = []
        if request.api_key_id:
            violations.append(check_id(request.api_key_id, "api_key_id"))
        if key.kind not in keys_pb2.KeyKind.values():
            violations.append(FieldViolation("api_key.kind", "is not a key kind"))
        if len(key.display_name) > 200:
            violations.append(FieldViolation("api_key.display_name", "must be at most 200 characters"))
        if key.HasField("expire_time") and key.expire_time.ToNanoseconds() <= time.time_ns():
            violations.append(FieldViolation("api_key.expire_time", "must be in the future"))
        tenant = None
        if key.tenant:
            tenant = parse_tenant_name(key.tenant, "api_key.tenant")
        elif caller.tenant is not None:
            tenant = caller.tenant
            key.tenant = f"tenants/{tenant}"
        violations += check_grant(caller, key.role, tenant, "api_key")
        require(violations)
        if tenant is not None and await self._store.get(f"tenants/{tenant}") is None:
            raise NotFound(f"tenants/{tenant} does not exist.")
        record, secret = await create_key(self._store, key, request.api_key_id)
        log.info("API key created", extra={"key": record.name, "by": caller.name})
        return keys_pb2.CreateApiKeyResponse(api_key=from_record(record, ApiKey), secret=secret)

    async def GetApiKey(self, request: keys_pb2.GetApiKeyRequest, context: Any) -> Any:
        return keys_pb2.GetApiKeyResponse(api_key=await self._visible(request.name))

    async def ListApiKeys(self, request: keys_pb2.ListApiKeysRequest, context: Any) -> Any:
        caller = principal()
        page = page_request(request.page_size, request.page_token, request.tenant, request.kind, request.show_revoked)
        parent: str | None = None
        if request.tenant:
            tenant = parse_tenant_name(request.tenant, "tenant")
            caller.require_read(tenant, request.tenant)
            parent = request.tenant
        elif caller.tenant is not None:
            caller.require_read(caller.tenant, "keys")  # a tenant-bound agent key lists nothing either
            parent = f"tenants/{caller.tenant}"
        else:
            caller.require_read("", "keys")
        now = time.time_ns()

        def keep(record: Record) -> bool:
            key = ApiKey.FromString(record.body)
            if request.kind and key.kind != request.kind:
                return False
            return request.show_revoked or key_valid_at(key, now)

        records, token = await fetch_page(self._store, "keys", page, parent=parent, keep=keep)
        return keys_pb2.ListApiKeysResponse(api_keys=[from_record(r, ApiKey) for r in records], next_page_token=token)

    async def _check_manage(self, name: str) -> ApiKey:
        caller = principal()
        key = await self._visible(name)
        tenant = _key_tenant(key)
        caller.require_write(tenant or caller.tenant or "", name)
        if not caller.outranks_or_equals(key.role):
            raise PermissionDenied(
                f"A {caller.describe()} credential cannot manage a {common_pb2.Role.Name(key.role)} key."
            )
        if tenant is None and caller.tenant is not None:
            raise NotFound(f"{name} does not exist.")
        return key

    async def RevokeApiKey(self, request: keys_pb2.RevokeApiKeyRequest, context: Any) -> Any:
        await self._check_manage(request.name)
        now = time.time_ns()
        async with self._store.transaction() as tx:
            record = await existing(tx, request.name)
            key = ApiKey.FromString(record.body)
            if not key.HasField("revoke_time") or key.revoke_time.ToNanoseconds() > now:
                key.revoke_time.CopyFrom(timestamp(now))
                record = await tx.update(request.name, to_body(key))
        self._auth.invalidate(request.name)
        log.info("API key revoked", extra={"key": request.name, "by": principal().name})
        return keys_pb2.RevokeApiKeyResponse(api_key=from_record(record, ApiKey))

    async def RotateApiKey(self, request: keys_pb2.RotateApiKeyRequest, context: Any) -> Any:
        old = await self._check_manage(request.name)
        grace = request.grace_period.ToNanoseconds() if request.HasField("grace_period") else 0
        if grace < 0 or grace > MAX_GRACE_S * 1_000_000_000:
            raise InvalidArgument.from_violations([FieldViolation("grace_period", "must be between 0 and 7 days")])
        now = time.time_ns()
        if not key_valid_at(old, now):
            raise InvalidArgument.from_violations(
                [FieldViolation("name", f"{request.name} is already revoked or expired")]
            )
        new = ApiKey(
            display_name=old.display_name,
            kind=old.kind,
            role=old.role,
            tenant=old.tenant,
            rotated_from=request.name,
        )
        if old.HasField("expire_time"):
            new.expire_time.CopyFrom(old.expire_time)
        record, secret = await create_key(self._store, new)
        async with self._store.transaction() as tx:
            old_record = await existing(tx, request.name)
            stored = ApiKey.FromString(old_record.body)
            stored.revoke_time.CopyFrom(timestamp(now + grace))
            old_record = await tx.update(request.name, to_body(stored))
        if grace:
            self._auth.forget(request.name)
        else:
            self._auth.invalidate(request.name)
        log.info("API key rotated", extra={"key": request.name, "new_key": record.name, "grace_s": grace / 1e9})
        return keys_pb2.RotateApiKeyResponse(
            api_key=from_record(record, ApiKey), secret=secret, previous=from_record(old_record, ApiKey)
        )
