"""DatasetService against a real control plane: every RPC, defaults, validation that names every
bad field, port conflicts between datasets of one proxy, transformations, etags, update masks,
validate_only and pagination (within a tenant and across tenants)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from floe import Client
from floe.v1 import datasets_pb2, tenants_pb2, transforms_pb2
from tests.builders import ALL_KINDS, all_kinds_transformations, dataset, expect_error, fields, nats_dataset

tp = transforms_pb2
ST = datasets_pb2.SourceType
Dataset = datasets_pb2.Dataset
Code = grpc.StatusCode
UidFn = Callable[[str], str]


@pytest.fixture
def tenant(admin: Client, uid: UidFn) -> str:
    """A fresh tenant's name."""
    name: str = admin.tenants.create(uid("ds"), display_name="Datasets").name
    return name


@pytest.fixture
def agent(uid: UidFn) -> str:
    """A proxy agent name no other test assigns datasets to."""
    return uid("edge")


def full_dataset(agent: str) -> Dataset:
    ds = dataset(
        5514,
        agent=agent,
        active=True,
        display_name="Firewall",
        description="Perimeter firewall logs",
        testing=True,
        retention=Duration(seconds=30 * 86400),
        labels={"team": "net", "site": "par1"},
    )
    ds.source.options["recv_buffer_bytes"] = "4194304"
    ds.transformations.append(tp.Transformation(id="sample", sample=tp.Sample(rate=4)))
    return ds


def without_output_fields(ds: Dataset) -> Dataset:
    copy = Dataset()
    copy.CopyFrom(ds)
    for field in ("name", "create_time", "update_time", "etag"):
        copy.ClearField(field)
    return copy


# -- CreateDataset / GetDataset ---------------------------------------------------------------


def test_create_round_trips_and_fills_defaults(admin: Client, tenant: str, agent: str) -> None:
    sent = full_dataset(agent)
    created = admin.datasets.create(tenant, "fw", sent)
    assert created.name == f"{tenant}/datasets/fw"
    assert created.etag
    assert created.create_time.ToNanoseconds() > 0
    assert created.update_time == created.create_time
    # Defaults a caller may leave out.
    assert created.data_hint == "syslog"
    assert created.source.bind_host == "0.0.0.0"
    assert created.destination.connection == "default"
    # Everything sent comes back.
    expected = without_output_fields(sent)
    expected.data_hint, expected.source.bind_host, expected.destination.connection = "syslog", "0.0.0.0", "default"
    assert without_output_fields(created) == expected

    assert admin.datasets.get(created.name) == created


@pytest.mark.parametrize(
    ("source", "hint", "bind_host"),
    [
        (datasets_pb2.Source(type=ST.SOURCE_TYPE_HTTP, port=8088), "ndjson", "0.0.0.0"),
        (datasets_pb2.Source(type=ST.SOURCE_TYPE_NETFLOW, port=2055), "netflow", "0.0.0.0"),
        (datasets_pb2.Source(type=ST.SOURCE_TYPE_RAW_TCP, port=7000, bind_host="127.0.0.1"), "text", "127.0.0.1"),
        (datasets_pb2.Source(type=ST.SOURCE_TYPE_NATS, options={"subject": "logs.>"}), "ndjson", ""),
    ],
)
def test_data_hint_and_bind_host_default_from_the_source(
    admin: Client, tenant: str, source: datasets_pb2.Source, hint: str, bind_host: str
) -> None:
    created = admin.datasets.create(tenant, "src", Dataset(source=source))
    assert (created.data_hint, created.source.bind_host) == (hint, bind_host)
    assert admin.datasets.get(created.name).data_hint == hint


def test_an_explicit_data_hint_and_connection_are_kept(admin: Client, tenant: str) -> None:
    ds = dataset(5515, data_hint="cef")
    ds.destination.connection = "archive"
    created = admin.datasets.create(tenant, "cef", ds)
    assert (created.data_hint, created.destination.connection) == ("cef", "archive")


def test_create_names_every_bad_field(admin: Client, tenant: str) -> None:
    ds = dataset(70000, data_hint="xml")
    ds.transformations.append(tp.Transformation(regex_replace=tp.RegexReplace(field="msg", pattern="(unclosed")))
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.create, tenant, "bad", ds)
    assert err.reason == "INVALID_ARGUMENT"
    assert fields(err.violations) == {
        "dataset.source.port",
        "dataset.data_hint",
        "dataset.transformations[0].regex_replace.pattern",
    }
    for path in fields(err.violations):
        assert path in err.message
    expect_error(Code.NOT_FOUND, admin.datasets.get, f"{tenant}/datasets/bad")


def test_a_bad_id_is_named_with_the_bad_fields(admin: Client, tenant: str) -> None:
    long_key = "k" * 64
    ds = dataset(0, labels={long_key: "v"})
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.create, tenant, "Bad_Id", ds)
    assert fields(err.violations) == {"dataset_id", "dataset.source.port", f"dataset.labels.{long_key}"}


def test_unknown_and_missing_source_type(admin: Client, tenant: str) -> None:
    unknown = dataset(5516)
    unknown.source.type = 42  # type: ignore[assignment]
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.create, tenant, "unknown", unknown)
    assert fields(err.violations) == {"dataset.source.type"}
    assert "42" in err.message
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.create, tenant, "missing", Dataset(display_name="x"))
    assert fields(err.violations) == {"dataset.source.type"}


def test_nats_requires_a_subject(admin: Client, tenant: str) -> None:
    err = expect_error(
        Code.INVALID_ARGUMENT, admin.datasets.create, tenant, "nats", nats_dataset(subject="", url="nats://b:4222")
    )
    assert fields(err.violations) == {"dataset.source.options.subject"}
    created = admin.datasets.create(tenant, "nats", nats_dataset(url="nats://b:4222", queue_group="floe"))
    assert dict(created.source.options) == {"subject": "events.>", "url": "nats://b:4222", "queue_group": "floe"}


def test_unknown_source_options_are_rejected(admin: Client, tenant: str) -> None:
    ds = dataset(8089, source_type=ST.SOURCE_TYPE_HTTP)
    ds.source.options.update({"bearer_token": "s3cret", "subject": "x", "max_payload_bytes": "lots"})
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.create, tenant, "opts", ds)
    assert fields(err.violations) == {"dataset.source.options.subject", "dataset.source.options.max_payload_bytes"}
    assert "s3cret" not in err.message


def test_every_transformation_kind_is_accepted(admin: Client, tenant: str) -> None:
    route_to = f"{tenant}/datasets/errors"
    steps = all_kinds_transformations(route_to)
    assert {s.WhichOneof("kind") for s in steps} == set(ALL_KINDS)
    ds = dataset(5517)
    ds.transformations.extend(steps)
    created = admin.datasets.create(tenant, "kinds", ds)
    assert list(created.transformations) == steps
    assert list(admin.datasets.get(created.name).transformations) == steps


def test_malformed_transformations_are_each_named(admin: Client, tenant: str) -> None:
    ds = dataset(5518)
    ds.transformations.extend(
        [
            tp.Transformation(add_field=tp.AddField(value="no field")),
            tp.Transformation(mask=tp.Mask(field="card", pattern=r"\d(?=\d{4})")),  # lookahead: not RE2
            tp.Transformation(parse_timestamp=tp.ParseTimestamp(field="ts", timezone="Europe/Atlantis")),
            tp.Transformation(sample=tp.Sample(rate=0)),
            tp.Transformation(filter=tp.Filter(mode=tp.Filter.MODE_INCLUDE, condition=tp.Condition())),
            tp.Transformation(hash_field=tp.HashField(field="email")),  # valid: not named
        ]
    )
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.create, tenant, "broken", ds)
    assert fields(err.violations) == {
        "dataset.transformations[0].add_field.field",
        "dataset.transformations[1].mask.pattern",
        "dataset.transformations[2].parse_timestamp.timezone",
        "dataset.transformations[3].sample.rate",
        "dataset.transformations[4].filter.condition",
    }


def test_route_to_another_tenant_is_rejected(admin: Client, tenant: str, uid: UidFn) -> None:
    other = admin.tenants.create(uid("other")).name
    admin.datasets.create(other, "sink", dataset(5519))
    route = tp.Route(condition=tp.Condition(exists=tp.Exists(field="x")), dataset=f"{other}/datasets/sink")
    ds = dataset(5519)
    ds.transformations.append(tp.Transformation(sample=tp.Sample(rate=1)))
    ds.transformations.append(tp.Transformation(route=route))
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.create, tenant, "leak", ds)
    assert fields(err.violations) == {"dataset.transformations[1].route.dataset"}
    ds.transformations[1].route.dataset = f"{tenant}/datasets/sink"
    assert admin.datasets.create(tenant, "leak", ds).transformations[1].route.dataset == f"{tenant}/datasets/sink"


def test_create_twice_is_already_exists(admin: Client, tenant: str) -> None:
    first = admin.datasets.create(tenant, "dup", dataset(5520, display_name="first"))
    err = expect_error(Code.ALREADY_EXISTS, admin.datasets.create, tenant, "dup", dataset(5521))
    assert err.reason == "RESOURCE_ALREADY_EXISTS"
    assert admin.datasets.get(first.name) == first


def test_create_under_a_missing_tenant_is_not_found(admin: Client, uid: UidFn) -> None:
    ghost = f"tenants/{uid('ghost')}"
    err = expect_error(Code.NOT_FOUND, admin.datasets.create, ghost, "ds", dataset(5522))
    assert ghost in err.message


def test_create_under_a_suspended_tenant_fails_precondition(admin: Client, tenant: str) -> None:
    admin.datasets.create(tenant, "before", dataset(5523))
    admin.tenants.update(tenants_pb2.Tenant(name=tenant, state=tenants_pb2.Tenant.STATE_SUSPENDED), ["state"])
    err = expect_error(Code.FAILED_PRECONDITION, admin.datasets.create, tenant, "after", dataset(5524))
    assert err.reason == "TENANT_SUSPENDED"
    assert [d.name for d in admin.datasets.list(tenant)] == [f"{tenant}/datasets/before"]


def test_create_validate_only_stores_nothing(admin: Client, tenant: str) -> None:
    checked = admin.datasets.create(tenant, "dry", dataset(5525, display_name="Dry"), validate_only=True)
    assert checked.name == f"{tenant}/datasets/dry"
    assert checked.display_name == "Dry"
    assert checked.data_hint == "syslog"
    assert checked.destination.connection == "default"
    expect_error(Code.NOT_FOUND, admin.datasets.get, checked.name)
    assert admin.datasets.list(tenant) == []
    # Validation still runs, and a taken name is still reported.
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.create, tenant, "dry", dataset(0), validate_only=True)
    assert fields(err.violations) == {"dataset.source.port"}
    admin.datasets.create(tenant, "dry", dataset(5525))
    expect_error(Code.ALREADY_EXISTS, admin.datasets.create, tenant, "dry", dataset(5525), validate_only=True)


def test_get_missing_or_malformed(admin: Client, tenant: str) -> None:
    err = expect_error(Code.NOT_FOUND, admin.datasets.get, f"{tenant}/datasets/nope")
    assert err.reason == "RESOURCE_NOT_FOUND"
    for bad in (tenant, f"{tenant}/datasets/No_Pe", f"{tenant}/keys/x"):
        err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.get, bad)
        assert fields(err.violations) == {"name"}


# -- port conflicts ---------------------------------------------------------------------------


def test_same_proxy_same_transport_same_port_conflicts(admin: Client, tenant: str, agent: str) -> None:
    first = admin.datasets.create(tenant, "ds-a", dataset(1514, agent=agent, active=True))
    # Another UDP source type on the same port of the same proxy.
    clash = dataset(1514, source_type=ST.SOURCE_TYPE_NETFLOW, agent=agent, active=True)
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.create, tenant, "ds-b", clash)
    assert fields(err.violations) == {"dataset.source.port"}
    assert "1514" in err.message
    assert first.name in err.message
    expect_error(Code.NOT_FOUND, admin.datasets.get, f"{tenant}/datasets/ds-b")


def test_port_conflict_is_reported_with_other_problems(admin: Client, tenant: str, agent: str) -> None:
    admin.datasets.create(tenant, "ds-a", dataset(1515, agent=agent, active=True))
    clash = dataset(1515, agent=agent, active=True, data_hint="yaml")
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.create, tenant, "ds-b", clash)
    assert fields(err.violations) == {"dataset.source.port", "dataset.data_hint"}


def test_no_conflict_across_transports_proxies_or_inactive(admin: Client, tenant: str, agent: str, uid: UidFn) -> None:
    admin.datasets.create(tenant, "udp", dataset(1516, agent=agent, active=True))
    tcp = admin.datasets.create(tenant, "tcp", dataset(1516, source_type=ST.SOURCE_TYPE_SYSLOG_TCP, agent=agent))
    assert tcp.source.port == 1516
    other_proxy = admin.datasets.create(tenant, "elsewhere", dataset(1516, agent=uid("edge"), active=True))
    assert other_proxy.source.port == 1516
    inactive = admin.datasets.create(tenant, "off", dataset(1516, agent=agent, active=False))
    assert not inactive.active
    # Activating the inactive one now collides with the active UDP dataset.
    err = expect_error(
        Code.INVALID_ARGUMENT, admin.datasets.update, Dataset(name=inactive.name, active=True), ["active"]
    )
    assert fields(err.violations) == {"dataset.source.port"}
    assert admin.datasets.get(inactive.name) == inactive


def test_conflicts_span_tenants_without_naming_their_datasets(
    admin: Client, tenant: str, agent: str, uid: UidFn
) -> None:
    other = admin.tenants.create(uid("neighbour")).name
    theirs = admin.datasets.create(other, "secret-project", dataset(1517, agent=agent, active=True))
    err = expect_error(
        Code.INVALID_ARGUMENT, admin.datasets.create, tenant, "mine", dataset(1517, agent=agent, active=True)
    )
    assert fields(err.violations) == {"dataset.source.port"}
    assert "1517" in err.message
    assert theirs.name not in err.message
    assert "secret-project" not in err.message


def test_update_into_a_conflict_and_updating_in_place(admin: Client, tenant: str, agent: str) -> None:
    admin.datasets.create(tenant, "ds-a", dataset(1518, agent=agent, active=True))
    b = admin.datasets.create(tenant, "ds-b", dataset(1519, agent=agent, active=True))
    # Re-saving b on its own port does not conflict with itself.
    renamed = admin.datasets.update(Dataset(name=b.name, display_name="B"), ["display_name"])
    assert renamed.display_name == "B"
    moved = Dataset(name=b.name, source=datasets_pb2.Source(port=1518))
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.update, moved, ["source.port"])
    assert fields(err.violations) == {"dataset.source.port"}
    assert admin.datasets.get(b.name).source.port == 1519


# -- ListDatasets -----------------------------------------------------------------------------


def pages_of(admin: Client, parent: str, page_size: int) -> tuple[list[list[str]], list[str]]:
    """Names per page and the tokens returned, following tokens to the end."""
    pages: list[list[str]] = []
    tokens: list[str] = []
    token = ""
    while True:
        page = admin.datasets.list_page(parent, page_size=page_size, page_token=token)
        pages.append([d.name for d in page.datasets])
        token = page.next_page_token
        tokens.append(token)
        if not token:
            return pages, tokens
        assert len(pages) < 10_000, "pagination does not end"


def test_list_pages_through_a_tenant(admin: Client, tenant: str) -> None:
    created = [admin.datasets.create(tenant, f"d{i}", dataset(2000 + i)).name for i in range(5)]
    pages, tokens = pages_of(admin, tenant, 2)
    assert pages == [created[0:2], created[2:4], created[4:5]]
    assert all(tokens[:-1])
    assert tokens[-1] == ""
    # Exactly a multiple of the page size: no empty trailing page.
    admin.datasets.delete(created[4])
    pages, tokens = pages_of(admin, tenant, 2)
    assert pages == [created[0:2], created[2:4]]
    # Listed datasets are the full resources.
    assert admin.datasets.list(tenant)[0] == admin.datasets.get(created[0])


def test_list_token_is_bound_to_its_parent(admin: Client, tenant: str, uid: UidFn) -> None:
    other = admin.tenants.create(uid("other")).name
    for i in range(3):
        admin.datasets.create(tenant, f"d{i}", dataset(2100 + i))
        admin.datasets.create(other, f"d{i}", dataset(2100 + i))
    token = admin.datasets.list_page(tenant, page_size=1).next_page_token
    assert token
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.list_page, other, page_size=1, page_token=token)
    assert fields(err.violations) == {"page_token"}
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.list_page, "tenants/-", page_size=1, page_token=token)
    assert fields(err.violations) == {"page_token"}
    # The same token still works with its own parent, even with another page size.
    resumed = admin.datasets.list_page(tenant, page_size=5, page_token=token)
    assert [d.name for d in resumed.datasets] == [f"{tenant}/datasets/d1", f"{tenant}/datasets/d2"]


def test_list_of_one_tenant_excludes_others_and_dash_lists_all(admin: Client, tenant: str, uid: UidFn) -> None:
    other = admin.tenants.create(uid("other")).name
    mine = admin.datasets.create(tenant, "ds-x", dataset(2200)).name
    theirs = admin.datasets.create(other, "ds-x", dataset(2200)).name
    assert [d.name for d in admin.datasets.list(tenant)] == [mine]
    assert [d.name for d in admin.datasets.list(other)] == [theirs]
    pages, tokens = pages_of(admin, "tenants/-", 2)
    names = [n for p in pages for n in p]
    assert {mine, theirs} <= set(names)
    assert len(names) == len(set(names)), "a dataset was listed twice"
    assert names == sorted(names)
    assert all(len(p) == 2 for p in pages[:-1])
    assert tokens[-1] == ""


def test_list_bad_requests(admin: Client, tenant: str) -> None:
    expect_error(Code.INVALID_ARGUMENT, admin.datasets.list_page, "tenants/Not_Valid")
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.list_page, tenant, page_size=-1)
    assert fields(err.violations) == {"page_size"}
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.list_page, tenant, page_token="bm9wZQ")
    assert fields(err.violations) == {"page_token"}


# -- UpdateDataset ----------------------------------------------------------------------------


def test_update_changes_only_masked_fields(admin: Client, tenant: str, agent: str) -> None:
    created = admin.datasets.create(tenant, "fw", full_dataset(agent))
    patch = Dataset(name=created.name, display_name="Renamed", description="ignored", data_hint="cef")
    updated = admin.datasets.update(patch, ["display_name", "data_hint"])
    assert (updated.display_name, updated.data_hint) == ("Renamed", "cef")
    assert updated.description == created.description
    assert updated.source == created.source
    assert updated.transformations == created.transformations
    assert updated.labels == created.labels
    assert updated.retention == created.retention
    assert updated.etag != created.etag
    assert updated.create_time == created.create_time
    assert updated.update_time.ToNanoseconds() > created.update_time.ToNanoseconds()
    assert admin.datasets.get(created.name) == updated


def test_update_a_source_sub_field(admin: Client, tenant: str, agent: str) -> None:
    created = admin.datasets.create(tenant, "fw", full_dataset(agent))
    patch = Dataset(name=created.name, source=datasets_pb2.Source(port=6514, type=ST.SOURCE_TYPE_HTTP))
    updated = admin.datasets.update(patch, ["source.port"])
    assert updated.source.port == 6514
    assert updated.source.type == ST.SOURCE_TYPE_SYSLOG_UDP
    assert dict(updated.source.options) == dict(created.source.options)
    assert updated.source.bind_host == "0.0.0.0"


def test_update_labels_and_transformations_are_replaced(admin: Client, tenant: str, agent: str) -> None:
    created = admin.datasets.create(tenant, "fw", full_dataset(agent))
    patch = Dataset(name=created.name, labels={"only": "this"})
    patch.transformations.append(tp.Transformation(hash_field=tp.HashField(field="user")))
    updated = admin.datasets.update(patch, ["labels", "transformations"])
    assert dict(updated.labels) == {"only": "this"}
    assert [s.WhichOneof("kind") for s in updated.transformations] == ["hash_field"]


def test_update_with_empty_mask_replaces_every_updatable_field(admin: Client, tenant: str, agent: str) -> None:
    created = admin.datasets.create(tenant, "fw", full_dataset(agent))
    replacement = Dataset(name=created.name, source=datasets_pb2.Source(type=ST.SOURCE_TYPE_RAW_TCP, port=7001))
    updated = admin.datasets.update(replacement)
    assert updated.source.type == ST.SOURCE_TYPE_RAW_TCP
    assert updated.display_name == ""
    assert updated.description == ""
    assert dict(updated.labels) == {}
    assert list(updated.transformations) == []
    assert not updated.HasField("retention")
    assert not updated.active
    assert updated.proxy.WhichOneof("target") is None
    # Defaults are applied again to the replacement.
    assert (updated.data_hint, updated.source.bind_host, updated.destination.connection) == (
        "text",
        "0.0.0.0",
        "default",
    )
    assert updated.create_time == created.create_time


@pytest.mark.parametrize("path", ["name", "create_time", "etag", "bogus", "source.nope", "labels.team"])
def test_update_rejects_unknown_or_immutable_paths(admin: Client, tenant: str, path: str) -> None:
    created = admin.datasets.create(tenant, "ds-m", dataset(5530, labels={"team": "net"}))
    err = expect_error(
        Code.INVALID_ARGUMENT, admin.datasets.update, Dataset(name=created.name, display_name="x"), [path]
    )
    assert fields(err.violations) == {"update_mask"}
    assert admin.datasets.get(created.name) == created


def test_update_to_invalid_values_names_them_and_changes_nothing(admin: Client, tenant: str) -> None:
    created = admin.datasets.create(tenant, "ds-v", dataset(5531))
    patch = Dataset(name=created.name, data_hint="xml", source=datasets_pb2.Source(port=0))
    patch.transformations.append(tp.Transformation(parse_timestamp=tp.ParseTimestamp(field="t", timezone="Nope/X")))
    err = expect_error(
        Code.INVALID_ARGUMENT, admin.datasets.update, patch, ["data_hint", "source.port", "transformations"]
    )
    assert fields(err.violations) == {
        "dataset.data_hint",
        "dataset.source.port",
        "dataset.transformations[0].parse_timestamp.timezone",
    }
    assert admin.datasets.get(created.name) == created


def test_update_validate_only_changes_nothing(admin: Client, tenant: str) -> None:
    created = admin.datasets.create(tenant, "ds-v", dataset(5532, display_name="Before"))
    preview = admin.datasets.update(
        Dataset(name=created.name, display_name="After"), ["display_name"], validate_only=True
    )
    assert preview.display_name == "After"
    assert admin.datasets.get(created.name) == created
    err = expect_error(
        Code.INVALID_ARGUMENT,
        admin.datasets.update,
        Dataset(name=created.name, data_hint="nope"),
        ["data_hint"],
        validate_only=True,
    )
    assert fields(err.violations) == {"dataset.data_hint"}


def test_update_with_stale_etag_is_aborted(admin: Client, tenant: str) -> None:
    created = admin.datasets.create(tenant, "ds-e", dataset(5533, display_name="v1"))
    v2 = admin.datasets.update(Dataset(name=created.name, display_name="v2", etag=created.etag), ["display_name"])
    err = expect_error(
        Code.ABORTED,
        admin.datasets.update,
        Dataset(name=created.name, display_name="lost", etag=created.etag),
        ["display_name"],
    )
    assert err.reason == "ETAG_MISMATCH"
    assert admin.datasets.get(created.name) == v2
    v3 = admin.datasets.update(Dataset(name=created.name, display_name="v3", etag=v2.etag), ["display_name"])
    assert v3.display_name == "v3"


def test_update_missing_or_unnamed(admin: Client, tenant: str) -> None:
    missing = f"{tenant}/datasets/ghost"
    expect_error(Code.NOT_FOUND, admin.datasets.update, Dataset(name=missing, display_name="x"), ["display_name"])
    expect_error(Code.NOT_FOUND, admin.datasets.get, missing)
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.update, Dataset(display_name="x"), ["display_name"])
    assert fields(err.violations) == {"dataset.name"}


# -- DeleteDataset ----------------------------------------------------------------------------


def test_delete_then_get_is_not_found(admin: Client, tenant: str) -> None:
    created = admin.datasets.create(tenant, "gone", dataset(5540))
    admin.datasets.delete(created.name)
    expect_error(Code.NOT_FOUND, admin.datasets.get, created.name)
    assert admin.datasets.list(tenant) == []
    err = expect_error(Code.NOT_FOUND, admin.datasets.delete, created.name)
    assert err.reason == "RESOURCE_NOT_FOUND"
    # The id can be used again.
    assert admin.datasets.create(tenant, "gone", dataset(5540)).name == created.name


def test_delete_with_stale_etag_is_aborted(admin: Client, tenant: str) -> None:
    created = admin.datasets.create(tenant, "ds-e", dataset(5541))
    updated = admin.datasets.update(Dataset(name=created.name, display_name="changed"), ["display_name"])
    err = expect_error(Code.ABORTED, admin.datasets.delete, created.name, etag=created.etag)
    assert err.reason == "ETAG_MISMATCH"
    assert admin.datasets.get(created.name) == updated
    admin.datasets.delete(created.name, etag=updated.etag)
    expect_error(Code.NOT_FOUND, admin.datasets.get, created.name)


def test_deleting_an_active_dataset_frees_its_port(admin: Client, tenant: str, agent: str) -> None:
    first = admin.datasets.create(tenant, "ds-a", dataset(1520, agent=agent, active=True))
    expect_error(Code.INVALID_ARGUMENT, admin.datasets.create, tenant, "ds-b", dataset(1520, agent=agent, active=True))
    admin.datasets.delete(first.name)
    assert admin.datasets.create(tenant, "ds-b", dataset(1520, agent=agent, active=True)).active


def test_delete_malformed_name(admin: Client) -> None:
    err = expect_error(Code.INVALID_ARGUMENT, admin.datasets.delete, "datasets/x")
    assert fields(err.violations) == {"name"}
