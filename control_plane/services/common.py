"""Helpers shared by the servicers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from control_plane.auth.principal import Principal, current_principal
from control_plane.core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, Unauthenticated
from control_plane.core.names import parse_tenant_name
from control_plane.core.pagination import Page
from control_plane.store import Record, Store
from floe.v1 import tenants_pb2

__all__ = ["existing", "fetch_page", "list_parent", "principal", "require", "writable_tenant"]

T = TypeVar("T")


def principal() -> Principal:
    """The caller of the current RPC (set by the auth layer)."""
    try:
        return current_principal.get()
    except LookupError as exc:  # a public method called a private helper: a bug, fail closed
        raise Unauthenticated("This call needs a credential.") from exc


def require(violations: Sequence[FieldViolation | None]) -> None:
    """Raise INVALID_ARGUMENT naming every violation, if any."""
    found = [v for v in violations if v is not None]
    if found:
        raise InvalidArgument.from_violations(found)


async def fetch_page(
    store: Store,
    collection: str,
    page: Page,
    *,
    parent: str | None,
    keep: Callable[[Record], bool] | None = None,
) -> tuple[list[Record], str]:
    """One page of records that pass ``keep``, and the next page token.

    Reads past filtered-out records so a page is full whenever more results exist.
    """
    out: list[Record] = []
    after = page.after
    # One extra row tells whether another page exists; a filter may need more.
    batch = page.size + 1 if keep is None else max(page.size + 1, 100)
    while len(out) <= page.size:
        rows = await store.list(collection, parent=parent, after=after, limit=batch)
        out.extend(rows if keep is None else (r for r in rows if keep(r)))
        if len(rows) < batch:
            break
        after = rows[-1].name
    has_more = len(out) > page.size
    out = out[: page.size]
    return out, page.next_token([r.name for r in out], has_more)


def list_parent(parent: str, collection: str) -> str | None:
    """The store parent a List call of a tenant's resources reads: ``parent`` itself, or for
    ``tenants/-`` every tenant the caller sees (its own tenant, or None for all)."""
    caller = principal()
    if parent == "tenants/-":
        caller.require_read(caller.tenant or "", collection)
        return f"tenants/{caller.tenant}" if caller.tenant is not None else None
    tenant_id = parse_tenant_name(parent, "parent")
    caller.require_read(tenant_id, parent)
    return parent


class _Getter(Protocol):
    async def get(self, name: str) -> Record | None: ...


async def existing(source: _Getter, name: str) -> Record:
    """The record named ``name`` (from a store or a transaction); NOT_FOUND when there is none."""
    record = await source.get(name)
    if record is None:
        raise NotFound(f"{name} does not exist.")
    return record


async def writable_tenant(tx: _Getter, parent: str) -> None:
    """The tenant a new resource goes in must exist and must not be suspended."""
    tenant = await existing(tx, parent)
    if tenants_pb2.Tenant.FromString(tenant.body).state == tenants_pb2.Tenant.STATE_SUSPENDED:
        raise FailedPrecondition(f"{parent} is suspended.", reason="TENANT_SUSPENDED")
