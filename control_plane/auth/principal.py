"""Who is calling and what they may do. Tenancy comes from the credential, never from a
request field: a tenant-bound principal sees only its tenant, and another tenant's resources
answer NOT_FOUND exactly as if they did not exist."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from control_plane.core.errors import NotFound, PermissionDenied
from floe.v1 import common_pb2

__all__ = ["Principal", "current_principal"]

Role = common_pb2.Role
ROLE_NAMES: dict[int, str] = {
    common_pb2.ROLE_ADMIN: "admin",
    common_pb2.ROLE_EDITOR: "editor",
    common_pb2.ROLE_VIEWER: "viewer",
    common_pb2.ROLE_AGENT: "agent",
}
# Higher ranks include the lower ones for management APIs; agents rank nowhere.
_RANK: dict[int, int] = {common_pb2.ROLE_VIEWER: 1, common_pb2.ROLE_EDITOR: 2, common_pb2.ROLE_ADMIN: 3}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``keys/{id}`` or ``users/{id}``, its role and tenant binding."""

    name: str
    role: int
    #: Tenant id when bound to one tenant, else None.
    tenant: str | None

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, "unknown")

    @property
    def is_admin(self) -> bool:
        return self.role == common_pb2.ROLE_ADMIN

    def sees_tenant(self, tenant_id: str) -> bool:
        return self.tenant is None or self.tenant == tenant_id

    def outranks_or_equals(self, role: int) -> bool:
        """Whether this principal may grant ``role`` to a new key or user."""
        if role == common_pb2.ROLE_AGENT:
            return _RANK.get(self.role, 0) >= _RANK[common_pb2.ROLE_EDITOR]
        return _RANK.get(self.role, 0) >= _RANK.get(role, 99)

    def require_read(self, tenant_id: str, name: str) -> None:
        """Reading ``name`` in ``tenant_id``: NOT_FOUND outside the binding, so existence never leaks."""
        if self.role == common_pb2.ROLE_AGENT:
            raise PermissionDenied(f"Agent credentials cannot read {name}; use a user or admin key.")
        if not self.sees_tenant(tenant_id):
            raise NotFound(f"{name} does not exist.")

    def require_write(self, tenant_id: str, name: str) -> None:
        """Writing in ``tenant_id`` needs editor or admin within the binding."""
        self.require_read(tenant_id, name)
        if _RANK.get(self.role, 0) < _RANK[common_pb2.ROLE_EDITOR]:
            raise PermissionDenied(
                f"The {self.role_name} role cannot change {name}; an editor or admin credential is needed."
            )

    def require_global(self, what: str, *, min_role: int = common_pb2.ROLE_ADMIN) -> None:
        """Actions on the whole installation (create tenants, manage users)."""
        if self.tenant is not None or _RANK.get(self.role, 0) < _RANK[min_role]:
            needed = "an admin" if min_role == common_pb2.ROLE_ADMIN else "an unbound editor or admin"
            raise PermissionDenied(f"{what} needs {needed} credential; this one is {self.describe()}.")

    def describe(self) -> str:
        scope = f" bound to tenants/{self.tenant}" if self.tenant else ""
        return f"{self.role_name}{scope}"


#: Set by the auth layer for the duration of each RPC.
current_principal: ContextVar[Principal] = ContextVar("floe_principal")
