"""TenantService against a real control plane: every RPC, its defaults, validation, etags, update
masks, pagination and what deleting a tenant does to its datasets."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from floe import Client
from floe.v1 import datasets_pb2, tenants_pb2
from tests.builders import dataset, expect_error, fields

Tenant = tenants_pb2.Tenant
Code = grpc.StatusCode
UidFn = Callable[[str], str]


def create_raw(admin: Client, tenant_id: str, tenant: tenants_pb2.Tenant) -> tenants_pb2.Tenant:
    """CreateTenant with a full message (the SDK helper does not take a state)."""
    req = tenants_pb2.CreateTenantRequest(tenant_id=tenant_id, tenant=tenant)
    resp: tenants_pb2.CreateTenantResponse = admin.call(admin.stubs.tenants.CreateTenant, req)
    return resp.tenant


# -- CreateTenant / GetTenant -----------------------------------------------------------------


def test_create_fills_output_fields_and_defaults_and_get_returns_the_same(admin: Client, uid: UidFn) -> None:
    tenant_id = uid("acme")
    created = admin.tenants.create(
        tenant_id, display_name="ACME Corp", description="Widgets", labels={"tier": "gold", "region": "eu"}
    )
    assert created.name == f"tenants/{tenant_id}"
    assert created.display_name == "ACME Corp"
    assert created.description == "Widgets"
    assert dict(created.labels) == {"tier": "gold", "region": "eu"}
    assert created.state == Tenant.STATE_ACTIVE
    assert created.etag
    assert created.create_time.ToNanoseconds() > 0
    assert created.update_time == created.create_time

    assert admin.tenants.get(tenant_id) == created
    assert admin.tenants.get(f"tenants/{tenant_id}") == created


def test_create_ignores_output_only_fields_and_keeps_a_given_state(admin: Client, uid: UidFn) -> None:
    tenant_id = uid("frozen")
    sent = Tenant(name="tenants/someone-else", state=Tenant.STATE_SUSPENDED, etag="42")
    sent.create_time.FromSeconds(1)
    created = create_raw(admin, tenant_id, sent)
    assert created.name == f"tenants/{tenant_id}"
    assert created.state == Tenant.STATE_SUSPENDED
    assert created.etag != "42"
    assert created.create_time.seconds > 1
    expect_error(Code.NOT_FOUND, admin.tenants.get, "someone-else")


def test_create_names_every_invalid_field(admin: Client) -> None:
    bad = Tenant(display_name="x" * 201, description="y" * 2001, labels={"k" * 64: "v", "ok": "v" * 64})
    bad.state = 7  # type: ignore[assignment]
    err = expect_error(Code.INVALID_ARGUMENT, create_raw, admin, "Not_An_Id", bad)
    assert err.reason == "INVALID_ARGUMENT"
    assert fields(err.violations) == {
        "tenant_id",
        "tenant.display_name",
        "tenant.description",
        "tenant.state",
        f"tenant.labels.{'k' * 64}",
        "tenant.labels.ok",
    }
    assert "tenant_id" in err.message


@pytest.mark.parametrize("tenant_id", ["", "a", "1st", "UPPER", "has_underscore", "trailing-", "x" * 64])
def test_create_rejects_bad_ids(admin: Client, tenant_id: str) -> None:
    err = expect_error(Code.INVALID_ARGUMENT, admin.tenants.create, tenant_id)
    assert fields(err.violations) == {"tenant_id"}


def test_create_twice_is_already_exists(admin: Client, uid: UidFn) -> None:
    tenant_id = uid("dup")
    admin.tenants.create(tenant_id, display_name="First")
    err = expect_error(Code.ALREADY_EXISTS, admin.tenants.create, tenant_id, display_name="Second")
    assert err.reason == "RESOURCE_ALREADY_EXISTS"
    assert tenant_id in err.message
    assert admin.tenants.get(tenant_id).display_name == "First"


def test_get_missing_is_not_found(admin: Client, uid: UidFn) -> None:
    missing = uid("ghost")
    err = expect_error(Code.NOT_FOUND, admin.tenants.get, missing)
    assert err.reason == "RESOURCE_NOT_FOUND"
    assert f"tenants/{missing}" in err.message


@pytest.mark.parametrize("name", ["tenants/Bad", "tenants/a/b", "tenants/"])
def test_get_malformed_name_is_invalid_argument(admin: Client, name: str) -> None:
    err = expect_error(Code.INVALID_ARGUMENT, admin.tenants.get, name)
    assert fields(err.violations) == {"name"}


# -- ListTenants ------------------------------------------------------------------------------


def list_all_pages(admin: Client, page_size: int) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        page = admin.tenants.list_page(page_size=page_size, page_token=token)
        pages.append([t.name for t in page.tenants])
        token = page.next_page_token
        if not token:
            return pages
        assert len(pages) < 10_000, "pagination does not end"


def test_list_pages_through_every_tenant_once(admin: Client, uid: UidFn) -> None:
    mine = {admin.tenants.create(uid("page")).name for _ in range(5)}
    pages = list_all_pages(admin, page_size=2)
    assert len(pages) >= 3
    assert all(len(p) == 2 for p in pages[:-1]), pages
    assert 1 <= len(pages[-1]) <= 2
    names = [n for p in pages for n in p]
    assert len(names) == len(set(names)), "a tenant was listed twice"
    assert names == sorted(names)
    assert mine <= set(names)
    assert set(names) == {t.name for t in admin.tenants.list()}


def test_list_returns_full_resources(admin: Client, uid: UidFn) -> None:
    created = admin.tenants.create(uid("full"), display_name="Full", labels={"a": "b"})
    listed = {t.name: t for t in admin.tenants.list()}
    assert listed[created.name] == created


def test_list_rejects_foreign_and_garbage_tokens(admin: Client, uid: UidFn) -> None:
    tenant = admin.tenants.create(uid("tok")).name
    for i in range(3):
        admin.datasets.create(tenant, f"ds{i}", dataset(6000 + i))
    dataset_token = admin.datasets.list_page(tenant, page_size=1).next_page_token
    assert dataset_token
    err = expect_error(Code.INVALID_ARGUMENT, admin.tenants.list_page, page_size=1, page_token=dataset_token)
    assert fields(err.violations) == {"page_token"}
    err = expect_error(Code.INVALID_ARGUMENT, admin.tenants.list_page, page_size=1, page_token="not-a-token")
    assert fields(err.violations) == {"page_token"}
    err = expect_error(Code.INVALID_ARGUMENT, admin.tenants.list_page, page_size=-1)
    assert fields(err.violations) == {"page_size"}


# -- UpdateTenant -----------------------------------------------------------------------------


def test_update_changes_only_masked_fields(admin: Client, uid: UidFn) -> None:
    created = admin.tenants.create(uid("upd"), display_name="Old", description="Keep me", labels={"a": "1"})
    patch = Tenant(name=created.name, display_name="New", description="Ignored", labels={"b": "2"})
    updated = admin.tenants.update(patch, ["display_name"])
    assert updated.display_name == "New"
    assert updated.description == "Keep me"
    assert dict(updated.labels) == {"a": "1"}
    assert updated.state == Tenant.STATE_ACTIVE
    assert updated.etag != created.etag
    assert updated.create_time == created.create_time
    assert updated.update_time.ToNanoseconds() > created.update_time.ToNanoseconds()
    assert admin.tenants.get(created.name) == updated


def test_update_labels_replaces_the_whole_map(admin: Client, uid: UidFn) -> None:
    created = admin.tenants.create(uid("lbl"), labels={"a": "1", "b": "2"})
    updated = admin.tenants.update(Tenant(name=created.name, labels={"c": "3"}), ["labels"])
    assert dict(updated.labels) == {"c": "3"}
    cleared = admin.tenants.update(Tenant(name=created.name), ["labels"])
    assert dict(cleared.labels) == {}


def test_update_state_to_suspended_and_back(admin: Client, uid: UidFn) -> None:
    created = admin.tenants.create(uid("susp"), display_name="S")
    suspended = admin.tenants.update(Tenant(name=created.name, state=Tenant.STATE_SUSPENDED), ["state"])
    assert suspended.state == Tenant.STATE_SUSPENDED
    assert admin.tenants.get(created.name).state == Tenant.STATE_SUSPENDED
    assert admin.tenants.get(created.name).display_name == "S"
    active = admin.tenants.update(Tenant(name=created.name, state=Tenant.STATE_ACTIVE), ["state"])
    assert active.state == Tenant.STATE_ACTIVE


def test_update_with_empty_mask_replaces_every_updatable_field(admin: Client, uid: UidFn) -> None:
    created = admin.tenants.create(uid("all"), display_name="Old", description="Old text", labels={"a": "1"})
    updated = admin.tenants.update(Tenant(name=created.name, display_name="Only this"))
    assert updated.display_name == "Only this"
    assert updated.description == ""
    assert dict(updated.labels) == {}
    assert updated.state == Tenant.STATE_ACTIVE  # unspecified falls back to the default
    assert updated.name == created.name
    assert updated.create_time == created.create_time


@pytest.mark.parametrize("path", ["name", "create_time", "etag", "bogus", "labels.a", "display_name.x"])
def test_update_rejects_unknown_or_immutable_paths(admin: Client, uid: UidFn, path: str) -> None:
    created = admin.tenants.create(uid("mask"), display_name="Same")
    err = expect_error(Code.INVALID_ARGUMENT, admin.tenants.update, Tenant(name=created.name, display_name="X"), [path])
    assert fields(err.violations) == {"update_mask"}
    assert path in err.message
    assert admin.tenants.get(created.name) == created


def test_update_with_invalid_values_names_them_and_changes_nothing(admin: Client, uid: UidFn) -> None:
    created = admin.tenants.create(uid("inv"))
    patch = Tenant(name=created.name, display_name="x" * 201, labels={"": "empty key"})
    err = expect_error(Code.INVALID_ARGUMENT, admin.tenants.update, patch, ["display_name", "labels"])
    named = sorted(fields(err.violations))
    assert len(named) == 2
    assert named[0] == "tenant.display_name"
    assert named[1].startswith("tenant.labels")
    assert admin.tenants.get(created.name) == created


def test_update_with_stale_etag_is_aborted(admin: Client, uid: UidFn) -> None:
    created = admin.tenants.create(uid("etag"), display_name="v1")
    v2 = admin.tenants.update(Tenant(name=created.name, display_name="v2", etag=created.etag), ["display_name"])
    err = expect_error(
        Code.ABORTED,
        admin.tenants.update,
        Tenant(name=created.name, display_name="lost update", etag=created.etag),
        ["display_name"],
    )
    assert err.reason == "ETAG_MISMATCH"
    assert admin.tenants.get(created.name).display_name == "v2"
    v3 = admin.tenants.update(Tenant(name=created.name, display_name="v3", etag=v2.etag), ["display_name"])
    assert v3.display_name == "v3"


@pytest.mark.parametrize("etag", ['W/"abc"', "-1", "\u00b2", "\u0661"])
def test_update_and_delete_with_malformed_etag_name_it(admin: Client, uid: UidFn, etag: str) -> None:
    created = admin.tenants.create(uid("etagx"))
    err = expect_error(
        Code.INVALID_ARGUMENT, admin.tenants.update, Tenant(name=created.name, etag=etag), ["display_name"]
    )
    assert fields(err.violations) == {"tenant.etag"}
    err = expect_error(Code.INVALID_ARGUMENT, admin.tenants.delete, created.name, etag=etag)
    assert fields(err.violations) == {"etag"}
    assert admin.tenants.get(created.name) == created


def test_update_missing_or_unnamed_tenant(admin: Client, uid: UidFn) -> None:
    missing = f"tenants/{uid('ghost')}"
    expect_error(Code.NOT_FOUND, admin.tenants.update, Tenant(name=missing, display_name="x"), ["display_name"])
    expect_error(Code.NOT_FOUND, admin.tenants.get, missing)  # update did not create it
    err = expect_error(Code.INVALID_ARGUMENT, admin.tenants.update, Tenant(display_name="x"), ["display_name"])
    assert fields(err.violations) == {"tenant.name"}


# -- DeleteTenant -----------------------------------------------------------------------------


def test_delete_then_get_is_not_found_and_the_id_is_free_again(admin: Client, uid: UidFn) -> None:
    tenant_id = uid("del")
    admin.tenants.create(tenant_id, display_name="Old")
    admin.tenants.delete(tenant_id)
    expect_error(Code.NOT_FOUND, admin.tenants.get, tenant_id)
    assert f"tenants/{tenant_id}" not in {t.name for t in admin.tenants.list()}
    expect_error(Code.NOT_FOUND, admin.tenants.delete, tenant_id)
    again = admin.tenants.create(tenant_id, display_name="New")
    assert again.display_name == "New"


def test_delete_with_stale_etag_is_aborted(admin: Client, uid: UidFn) -> None:
    created = admin.tenants.create(uid("deltag"))
    updated = admin.tenants.update(Tenant(name=created.name, display_name="changed"), ["display_name"])
    err = expect_error(Code.ABORTED, admin.tenants.delete, created.name, etag=created.etag)
    assert err.reason == "ETAG_MISMATCH"
    assert admin.tenants.get(created.name) == updated
    admin.tenants.delete(created.name, etag=updated.etag)
    expect_error(Code.NOT_FOUND, admin.tenants.get, created.name)


def test_etag_of_a_deleted_tenant_does_not_match_its_successor(admin: Client, uid: UidFn) -> None:
    tenant_id = uid("reborn")
    first = admin.tenants.create(tenant_id, display_name="first")
    admin.tenants.delete(tenant_id)
    second = admin.tenants.create(tenant_id, display_name="second")
    assert second.etag != first.etag
    err = expect_error(
        Code.ABORTED,
        admin.tenants.update,
        Tenant(name=second.name, display_name="x", etag=first.etag),
        ["display_name"],
    )
    assert err.reason == "ETAG_MISMATCH"
    expect_error(Code.ABORTED, admin.tenants.delete, tenant_id, etag=first.etag)
    assert admin.tenants.get(tenant_id).display_name == "second"


def test_delete_with_datasets_needs_force(admin: Client, uid: UidFn) -> None:
    tenant = admin.tenants.create(uid("full")).name
    names = [admin.datasets.create(tenant, f"ds{i}", dataset(5600 + i)).name for i in range(2)]
    err = expect_error(Code.FAILED_PRECONDITION, admin.tenants.delete, tenant)
    assert err.reason == "TENANT_NOT_EMPTY"
    assert "force" in err.message
    assert admin.tenants.get(tenant).name == tenant
    assert [d.name for d in admin.datasets.list(tenant)] == names

    admin.tenants.delete(tenant, force=True)
    expect_error(Code.NOT_FOUND, admin.tenants.get, tenant)
    for name in names:
        expect_error(Code.NOT_FOUND, admin.datasets.get, name)
    everywhere = {d.name for d in admin.datasets.list("tenants/-")}
    assert not everywhere & set(names)


def test_force_delete_with_stale_etag_keeps_the_datasets(admin: Client, uid: UidFn) -> None:
    created = admin.tenants.create(uid("atomic"))
    ds = admin.datasets.create(created.name, "keep", dataset(5700))
    admin.tenants.update(Tenant(name=created.name, display_name="bump"), ["display_name"])
    expect_error(Code.ABORTED, admin.tenants.delete, created.name, force=True, etag=created.etag)
    assert admin.datasets.get(ds.name) == ds


def test_recreated_tenant_does_not_inherit_datasets(admin: Client, uid: UidFn) -> None:
    tenant_id = uid("reborn")
    admin.tenants.create(tenant_id)
    admin.datasets.create(tenant_id, "old", datasets_pb2.Dataset(source=dataset(5800).source))
    admin.tenants.delete(tenant_id, force=True)
    admin.tenants.create(tenant_id)
    assert admin.datasets.list(tenant_id) == []
    admin.tenants.delete(tenant_id)  # empty, so no force needed
