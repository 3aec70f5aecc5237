"""floe.v1.TenantService."""

from __future__ import annotations

from typing import Any

from control_plane.auth.authenticator import Authenticator
from control_plane.core.errors import FailedPrecondition, FieldViolation
from control_plane.core.fieldmask import apply_update_mask
from control_plane.core.names import check_id, parse_tenant_name, tenant_name
from control_plane.core.pagination import page_request
from control_plane.core.resources import check_etag, from_record, to_body
from control_plane.services.common import existing, fetch_page, principal, require
from control_plane.store import Store
from floe.v1 import common_pb2, tenants_pb2, tenants_pb2_grpc

__all__ = ["TenantServicer"]

Tenant = tenants_pb2.Tenant
UPDATABLE = ("display_name", "description", "state", "labels")


def validate_tenant(t: Tenant, prefix: str = "tenant") -> list[FieldViolation]:
    out = []
    if len(t.display_name) > 200:
        out.append(FieldViolation(f"{prefix}.display_name", "must be at most 200 characters"))
    if len(t.description) > 2000:
        out.append(FieldViolation(f"{prefix}.description", "must be at most 2000 characters"))
    if t.state not in Tenant.State.values():
        out.append(FieldViolation(f"{prefix}.state", f"{t.state} is not a tenant state"))
    out.extend(validate_labels(t.labels, f"{prefix}.labels"))
    return out


def validate_labels(labels: Any, prefix: str) -> list[FieldViolation]:
    out = []
    if len(labels) > 64:
        out.append(FieldViolation(prefix, "at most 64 labels are allowed"))
    for k, v in labels.items():
        if not k or len(k) > 63 or len(v) > 63:
            out.append(FieldViolation(f"{prefix}.{k}", "keys must be 1-63 and values 0-63 characters"))
    return out


class TenantServicer(tenants_pb2_grpc.TenantServiceServicer):
    def __init__(self, store: Store, authenticator: Authenticator) -> None:
        self._store = store
        self._auth = authenticator

    async def _get(self, name: str) -> Tenant:
        tenant_id = parse_tenant_name(name)
        principal().require_read(tenant_id, name)
        record = await existing(self._store, name)
        return from_record(record, Tenant)

    async def CreateTenant(self, request: tenants_pb2.CreateTenantRequest, context: Any) -> Any:
        principal().require_global("Creating tenants", min_role=common_pb2.ROLE_EDITOR)
        tenant = Tenant()
        tenant.CopyFrom(request.tenant)
        if tenant.state == Tenant.STATE_UNSPECIFIED:
            tenant.state = Tenant.STATE_ACTIVE
        require([check_id(request.tenant_id, "tenant_id"), *validate_tenant(tenant)])
        name = tenant_name(request.tenant_id)
        async with self._store.transaction() as tx:
            record = await tx.create(name, "tenants", "", to_body(tenant))
        return tenants_pb2.CreateTenantResponse(tenant=from_record(record, Tenant))

    async def GetTenant(self, request: tenants_pb2.GetTenantRequest, context: Any) -> Any:
        return tenants_pb2.GetTenantResponse(tenant=await self._get(request.name))

    async def ListTenants(self, request: tenants_pb2.ListTenantsRequest, context: Any) -> Any:
        caller = principal()
        caller.require_read(caller.tenant or "", "tenants")
        page = page_request(request.page_size, request.page_token, "tenants")
        if caller.tenant is not None:
            # A bound principal lists exactly its own tenant.
            own = tenant_name(caller.tenant)
            records, token = await fetch_page(self._store, "tenants", page, parent="", keep=lambda r: r.name == own)
        else:
            records, token = await fetch_page(self._store, "tenants", page, parent="")
        return tenants_pb2.ListTenantsResponse(tenants=[from_record(r, Tenant) for r in records], next_page_token=token)

    async def UpdateTenant(self, request: tenants_pb2.UpdateTenantRequest, context: Any) -> Any:
        name = request.tenant.name
        tenant_id = parse_tenant_name(name, "tenant.name")
        principal().require_write(tenant_id, name)
        async with self._store.transaction() as tx:
            record = await existing(tx, name)
            check_etag(record, request.tenant.etag, "tenant.etag")
            tenant = from_record(record, Tenant)
            apply_update_mask(tenant, request.tenant, request.update_mask, UPDATABLE, prefix="tenant")
            if tenant.state == Tenant.STATE_UNSPECIFIED:
                tenant.state = Tenant.STATE_ACTIVE
            require(validate_tenant(tenant))
            updated = await tx.update(name, to_body(tenant), expected_revision=record.revision)
        return tenants_pb2.UpdateTenantResponse(tenant=from_record(updated, Tenant))

    async def DeleteTenant(self, request: tenants_pb2.DeleteTenantRequest, context: Any) -> Any:
        tenant_id = parse_tenant_name(request.name)
        caller = principal()
        caller.require_read(tenant_id, request.name)
        caller.require_global("Deleting tenants", min_role=common_pb2.ROLE_EDITOR)
        revoked: list[str] = []
        async with self._store.transaction() as tx:
            record = await existing(tx, request.name)
            check_etag(record, request.etag)
            datasets = await tx.list_all("datasets", parent=request.name)
            if datasets and not request.force:
                raise FailedPrecondition(
                    f"{request.name} still has {len(datasets)} dataset(s); delete them first or set force.",
                    reason="TENANT_NOT_EMPTY",
                )
            await tx.delete_children("datasets", request.name)
            # Credentials bound to the tenant die with it, so a tenant re-created under the same
            # id never inherits them.
            await tx.delete_children("users", request.name)
            for key in await tx.list_all("keys", parent=request.name):
                await tx.delete(key.name)
                revoked.append(key.name)
            await tx.delete(request.name, expected_revision=record.revision)
        for key_name in revoked:
            self._auth.invalidate(key_name)
        return tenants_pb2.DeleteTenantResponse()
