"""The shortest path a new user takes: a tenant created and read back over the SDK."""

from __future__ import annotations

from collections.abc import Callable

from floe import Client


def test_create_and_get_tenant(admin: Client, uid: Callable[[str], str]) -> None:
    tenant_id = uid("smoke")
    created = admin.tenants.create(tenant_id, display_name="Smoke")
    assert created.name == f"tenants/{tenant_id}"
    assert admin.tenants.get(tenant_id).display_name == "Smoke"
