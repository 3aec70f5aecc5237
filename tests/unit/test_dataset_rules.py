"""The rules behind dataset and tenant RPCs, as pure functions: dataset validation and defaults,
port conflicts, transformation validation, resource names, page tokens and update masks."""

from __future__ import annotations

import base64
import json

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from agents.transforms.spec import MAX_STEPS, validate_transformations
from control_plane.core.datasets import DATA_HINTS, apply_defaults, port_conflicts, transport, validate_dataset
from control_plane.core.errors import InvalidArgument
from control_plane.core.fieldmask import apply_update_mask
from control_plane.core.names import check_id, dataset_name, parse_dataset_name, parse_tenant_name, tenant_name
from control_plane.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, page_request
from control_plane.services.datasets import UPDATABLE as DATASET_UPDATABLE
from floe.v1 import datasets_pb2, tenants_pb2, transforms_pb2
from tests.builders import ALL_KINDS, all_kinds_transformations, dataset, fields, nats_dataset

tp = transforms_pb2
ST = datasets_pb2.SourceType


def checked(ds: datasets_pb2.Dataset) -> set[str]:
    """Fields named when ``ds`` is validated the way CreateDataset does (defaults first)."""
    apply_defaults(ds)
    return fields(validate_dataset(ds))


def step_fields(*steps: tp.Transformation) -> set[str]:
    return fields(validate_transformations(list(steps), "t"))


# -- defaults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_type", "hint"),
    [
        (ST.SOURCE_TYPE_SYSLOG_UDP, "syslog"),
        (ST.SOURCE_TYPE_SYSLOG_TCP, "syslog"),
        (ST.SOURCE_TYPE_HTTP, "ndjson"),
        (ST.SOURCE_TYPE_SFLOW, "sflow"),
        (ST.SOURCE_TYPE_IPFIX, "ipfix"),
        (ST.SOURCE_TYPE_NETFLOW, "netflow"),
        (ST.SOURCE_TYPE_NATS, "ndjson"),
        (ST.SOURCE_TYPE_RAW_UDP, "text"),
        (ST.SOURCE_TYPE_RAW_TCP, "text"),
    ],
)
def test_data_hint_defaults_from_source_type(source_type: datasets_pb2.SourceType.ValueType, hint: str) -> None:
    ds = dataset(source_type=source_type)
    apply_defaults(ds)
    assert ds.data_hint == hint
    assert hint in DATA_HINTS


def test_every_source_type_has_a_default_hint() -> None:
    for value in ST.values():
        if value == ST.SOURCE_TYPE_UNSPECIFIED:
            continue
        ds = dataset(source_type=value)
        apply_defaults(ds)
        assert ds.data_hint in DATA_HINTS, ST.Name(value)


def test_defaults_fill_bind_host_and_connection_but_keep_what_is_set() -> None:
    ds = dataset()
    apply_defaults(ds)
    assert (ds.source.bind_host, ds.destination.connection) == ("0.0.0.0", "default")

    kept = dataset(bind_host="10.1.2.3", data_hint="cef")
    kept.destination.connection = "archive"
    apply_defaults(kept)
    assert (kept.source.bind_host, kept.data_hint, kept.destination.connection) == ("10.1.2.3", "cef", "archive")


def test_nats_gets_no_bind_host() -> None:
    ds = nats_dataset()
    apply_defaults(ds)
    assert ds.source.bind_host == ""
    assert checked(ds) == set()


def test_transport_by_source_type() -> None:
    assert transport(datasets_pb2.Source(type=ST.SOURCE_TYPE_NETFLOW)) == "udp"
    assert transport(datasets_pb2.Source(type=ST.SOURCE_TYPE_HTTP)) == "tcp"
    assert transport(datasets_pb2.Source(type=ST.SOURCE_TYPE_NATS)) is None


# -- validate_dataset --------------------------------------------------------------------------


def test_a_minimal_dataset_of_each_bound_type_is_valid() -> None:
    for value in ST.values():
        if value in (ST.SOURCE_TYPE_UNSPECIFIED, ST.SOURCE_TYPE_NATS):
            continue
        assert checked(dataset(source_type=value)) == set(), ST.Name(value)


def test_every_problem_is_reported_at_once() -> None:
    ds = dataset(port=70000, bind_host="not-an-ip", data_hint="xml", display_name="x" * 201, description="d" * 2001)
    ds.source.options["bogus"] = "1"
    ds.destination.connection = "no spaces allowed"
    ds.proxy.agent = "Edge_01"
    ds.retention.seconds = 60
    ds.transformations.append(tp.Transformation(regex_replace=tp.RegexReplace(field="m", pattern="(")))
    assert checked(ds) == {
        "dataset.source.port",
        "dataset.source.bind_host",
        "dataset.source.options.bogus",
        "dataset.data_hint",
        "dataset.display_name",
        "dataset.description",
        "dataset.destination.connection",
        "dataset.proxy.agent",
        "dataset.retention",
        "dataset.transformations[0].regex_replace.pattern",
    }


def test_violations_use_the_given_prefix_and_describe_the_problem() -> None:
    ds = dataset(port=0)
    apply_defaults(ds)
    (violation,) = validate_dataset(ds, prefix="ds")
    assert violation.field == "ds.source.port"
    assert "1-65535" in violation.description


@pytest.mark.parametrize("port", [0, 65536])
def test_port_must_be_in_range(port: int) -> None:
    assert checked(dataset(port=port)) == {"dataset.source.port"}


@pytest.mark.parametrize("port", [1, 65535])
def test_port_bounds_are_valid(port: int) -> None:
    assert checked(dataset(port=port)) == set()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "127.0.0.1", "fe80::1"])
def test_bind_host_accepts_ip_addresses(host: str) -> None:
    assert checked(dataset(bind_host=host)) == set()


def test_bind_host_rejects_host_names() -> None:
    assert checked(dataset(bind_host="localhost")) == {"dataset.source.bind_host"}


def test_source_type_is_required_and_must_be_known() -> None:
    missing = datasets_pb2.Dataset()
    assert "dataset.source.type" in checked(missing)
    unknown = dataset()
    unknown.source.type = 99  # type: ignore[assignment]
    violations = validate_dataset(unknown)
    assert fields(violations) == {"dataset.source.type"}
    assert "99" in violations[0].description


def test_nats_requires_a_subject_and_no_port() -> None:
    assert checked(nats_dataset(subject="")) == {"dataset.source.options.subject"}
    with_port = nats_dataset()
    with_port.source.port = 4222
    assert checked(with_port) == {"dataset.source.port"}


def test_nats_url_scheme() -> None:
    assert checked(nats_dataset(url="nats://broker:4222", queue_group="q")) == set()
    assert checked(nats_dataset(url="tls://broker:4222")) == set()
    assert checked(nats_dataset(url="http://broker")) == {"dataset.source.options.url"}


def test_unknown_source_options_are_named_and_the_allowed_ones_listed() -> None:
    ds = dataset(source_type=ST.SOURCE_TYPE_HTTP, port=8080)
    ds.source.options.update({"max_payload_bytes": "1048576", "path": "/in", "subject": "x", "zzz": "1"})
    apply_defaults(ds)
    violations = validate_dataset(ds)
    assert fields(violations) == {"dataset.source.options.subject", "dataset.source.options.zzz"}
    assert "bearer_token" in violations[0].description


@pytest.mark.parametrize("value", ["", "1e6", "-1", "10 MB", "\u00b2"])
def test_byte_options_must_be_whole_numbers(value: str) -> None:
    ds = dataset(source_type=ST.SOURCE_TYPE_RAW_TCP)
    ds.source.options["max_message_bytes"] = value
    assert checked(ds) == {"dataset.source.options.max_message_bytes"}


def test_tcp_framing_values() -> None:
    for framing in ("auto", "newline", "octet_counting"):
        ds = dataset(source_type=ST.SOURCE_TYPE_SYSLOG_TCP)
        ds.source.options["framing"] = framing
        assert checked(ds) == set()
    ds = dataset(source_type=ST.SOURCE_TYPE_SYSLOG_TCP)
    ds.source.options["framing"] = "crlf"
    assert checked(ds) == {"dataset.source.options.framing"}


def test_every_data_hint_is_accepted() -> None:
    for hint in DATA_HINTS:
        assert checked(dataset(data_hint=hint)) == set(), hint


def test_proxy_selector_must_name_a_label() -> None:
    ds = dataset()
    ds.proxy.selector.SetInParent()
    assert checked(ds) == {"dataset.proxy.selector.match_labels"}
    ds.proxy.selector.match_labels["site"] = "paris"
    assert checked(ds) == set()


@pytest.mark.parametrize(("seconds", "ok"), [(3599, False), (3600, True), (100 * 365 * 86400, True), (10**10, False)])
def test_retention_bounds(seconds: int, ok: bool) -> None:
    ds = dataset()
    ds.retention.seconds = seconds
    assert checked(ds) == (set() if ok else {"dataset.retention"})


# -- port_conflicts ----------------------------------------------------------------------------


def stored(name: str, ds: datasets_pb2.Dataset) -> datasets_pb2.Dataset:
    ds.name = name
    apply_defaults(ds)
    return ds


def conflicts(candidate: datasets_pb2.Dataset, *others: datasets_pb2.Dataset) -> set[str]:
    stored("tenants/t/datasets/new", candidate)
    return fields(port_conflicts(candidate, others))


def test_same_proxy_same_transport_same_port_conflicts() -> None:
    other = stored("tenants/t/datasets/old", dataset(514, agent="edge", active=True))
    found = port_conflicts(stored("tenants/t/datasets/new", dataset(514, agent="edge", active=True)), [other])
    assert fields(found) == {"dataset.source.port"}
    assert "UDP port 514" in found[0].description
    assert "tenants/t/datasets/old" in found[0].description


def test_udp_and_tcp_on_the_same_port_do_not_conflict() -> None:
    other = stored("tenants/t/datasets/old", dataset(514, agent="edge", active=True))
    tcp = dataset(514, source_type=ST.SOURCE_TYPE_SYSLOG_TCP, agent="edge", active=True)
    assert conflicts(tcp, other) == set()


def test_two_udp_source_types_share_the_transport() -> None:
    other = stored("tenants/t/datasets/old", dataset(2055, agent="edge", active=True))
    netflow = dataset(2055, source_type=ST.SOURCE_TYPE_NETFLOW, agent="edge", active=True)
    assert conflicts(netflow, other) == {"dataset.source.port"}


def test_different_proxies_or_ports_do_not_conflict() -> None:
    other = stored("tenants/t/datasets/old", dataset(514, agent="edge-a", active=True))
    assert conflicts(dataset(514, agent="edge-b", active=True), other) == set()
    assert conflicts(dataset(515, agent="edge-a", active=True), other) == set()
    assert conflicts(dataset(514, active=True), other) == set()  # unassigned


def test_inactive_datasets_do_not_conflict() -> None:
    active = stored("tenants/t/datasets/old", dataset(514, agent="edge", active=True))
    inactive = stored("tenants/t/datasets/off", dataset(514, agent="edge", active=False))
    assert conflicts(dataset(514, agent="edge", active=False), active) == set()
    assert conflicts(dataset(514, agent="edge", active=True), inactive) == set()


def test_a_dataset_does_not_conflict_with_its_stored_self() -> None:
    me = stored("tenants/t/datasets/new", dataset(514, agent="edge", active=True))
    assert conflicts(dataset(514, agent="edge", active=True), me) == set()


def test_same_selector_conflicts_whatever_the_label_order() -> None:
    a = dataset(514, active=True)
    a.proxy.selector.match_labels.update({"site": "paris", "tier": "edge"})
    b = dataset(514, active=True)
    b.proxy.selector.match_labels.update({"tier": "edge", "site": "paris"})
    assert conflicts(b, stored("tenants/t/datasets/old", a)) == {"dataset.source.port"}
    c = dataset(514, active=True)
    c.proxy.selector.match_labels["site"] = "lyon"
    assert conflicts(c, stored("tenants/t/datasets/old", a)) == set()


@pytest.mark.parametrize(
    ("mine", "theirs", "clash"),
    [
        ("10.0.0.1", "10.0.0.1", True),
        ("10.0.0.1", "10.0.0.2", False),
        ("10.0.0.1", "0.0.0.0", True),
        ("::", "10.0.0.2", True),
        ("", "10.0.0.2", True),  # empty defaults to 0.0.0.0
    ],
)
def test_bind_hosts(mine: str, theirs: str, clash: bool) -> None:
    other = stored("tenants/t/datasets/old", dataset(514, agent="edge", active=True, bind_host=theirs))
    found = conflicts(dataset(514, agent="edge", active=True, bind_host=mine), other)
    assert found == ({"dataset.source.port"} if clash else set())


def test_nats_datasets_bind_no_port() -> None:
    a = nats_dataset()
    a.active = True
    a.proxy.agent = "edge"
    b = nats_dataset()
    b.active = True
    b.proxy.agent = "edge"
    assert conflicts(b, stored("tenants/t/datasets/old", a)) == set()


# -- validate_transformations ------------------------------------------------------------------


def test_the_builder_covers_every_transformation_kind() -> None:
    oneof = tp.Transformation.DESCRIPTOR.oneofs_by_name["kind"]
    assert {f.name for f in oneof.fields} == set(ALL_KINDS)
    steps = all_kinds_transformations("tenants/t/datasets/errors")
    assert [s.WhichOneof("kind") for s in steps] == list(ALL_KINDS)


def test_every_kind_is_accepted_when_valid() -> None:
    assert validate_transformations(all_kinds_transformations("tenants/t/datasets/errors"), "t") == []


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (tp.Transformation(), {"t[0]"}),
        (tp.Transformation(add_field=tp.AddField(value="x")), {"t[0].add_field.field"}),
        (tp.Transformation(add_field=tp.AddField(field=" padded")), {"t[0].add_field.field"}),
        (tp.Transformation(add_field=tp.AddField(field="f" * 257)), {"t[0].add_field.field"}),
        (tp.Transformation(remove_fields=tp.RemoveFields()), {"t[0].remove_fields.fields"}),
        (tp.Transformation(remove_fields=tp.RemoveFields(fields=["a", ""])), {"t[0].remove_fields.fields[1]"}),
        (tp.Transformation(rename_field=tp.RenameField(to="b")), {"t[0].rename_field.from"}),
        (
            tp.Transformation(copy_field=tp.CopyField(**{"from": "a", "to": "a"})),
            {"t[0].copy_field.to"},
        ),
        (tp.Transformation(filter=tp.Filter()), {"t[0].filter.mode", "t[0].filter.condition"}),
        (
            tp.Transformation(filter=tp.Filter(mode=tp.Filter.MODE_INCLUDE, condition=tp.Condition())),
            {"t[0].filter.condition"},
        ),
        (tp.Transformation(regex_replace=tp.RegexReplace(field="m")), {"t[0].regex_replace.pattern"}),
        (tp.Transformation(regex_replace=tp.RegexReplace(field="m", pattern="[a-")), {"t[0].regex_replace.pattern"}),
        # Valid for Python's re but not for RE2, which the piper runs.
        (
            tp.Transformation(regex_replace=tp.RegexReplace(field="m", pattern=r"a(?=b)")),
            {"t[0].regex_replace.pattern"},
        ),
        (tp.Transformation(regex_replace=tp.RegexReplace(field="m", pattern=r"(a)\1")), {"t[0].regex_replace.pattern"}),
        (
            tp.Transformation(mask=tp.Mask(field="c", pattern=r"\d+", mask_char="**")),
            {"t[0].mask.mask_char"},
        ),
        (tp.Transformation(mask=tp.Mask(field="c", pattern="(")), {"t[0].mask.pattern"}),
        (tp.Transformation(hash_field=tp.HashField()), {"t[0].hash_field.field"}),
        (tp.Transformation(convert_type=tp.ConvertType(field="n")), {"t[0].convert_type.type"}),
        (
            tp.Transformation(parse_timestamp=tp.ParseTimestamp(field="ts", timezone="Mars/Olympus_Mons")),
            {"t[0].parse_timestamp.timezone"},
        ),
        (
            tp.Transformation(parse_timestamp=tp.ParseTimestamp(field="ts", timezone="../../etc/passwd")),
            {"t[0].parse_timestamp.timezone"},
        ),
        (
            tp.Transformation(parse_timestamp=tp.ParseTimestamp(field="ts", formats=["rfc3339", "YYYY-MM-DD"])),
            {"t[0].parse_timestamp.formats[1]"},
        ),
        (
            tp.Transformation(parse_key_value=tp.ParseKeyValue(field="kv", pair_separator=",", kv_separator=",")),
            {"t[0].parse_key_value.kv_separator"},
        ),
        (tp.Transformation(parse_json=tp.ParseJson()), {"t[0].parse_json.field"}),
        (tp.Transformation(change_case=tp.ChangeCase(field="l")), {"t[0].change_case.case"}),
        (tp.Transformation(sample=tp.Sample(rate=0)), {"t[0].sample.rate"}),
        (tp.Transformation(route=tp.Route(dataset="errors")), {"t[0].route.condition", "t[0].route.dataset"}),
        (
            tp.Transformation(when=tp.Condition(), sample=tp.Sample(rate=2)),
            {"t[0].when"},
        ),
    ],
)
def test_malformed_steps_name_their_field(step: tp.Transformation, expected: set[str]) -> None:
    assert step_fields(step) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (tp.Condition(compare=tp.Comparison(field="a")), {"condition.compare.operator"}),
        (tp.Condition(regex=tp.RegexMatch(field="a", pattern="(?P<x")), {"condition.regex.pattern"}),
        (tp.Condition(**{"in": tp.InSet(field="a")}), {"condition.in.values"}),  # type: ignore[arg-type]
        (tp.Condition(exists=tp.Exists()), {"condition.exists.field"}),
        (tp.Condition(all=tp.ConditionList()), {"condition.all.conditions"}),
        (
            tp.Condition(any=tp.ConditionList(conditions=[tp.Condition(exists=tp.Exists(field="a")), tp.Condition()])),
            {"condition.any.conditions[1]"},
        ),
        (tp.Condition(**{"not": tp.Condition()}), {"condition.not"}),  # type: ignore[arg-type]
    ],
)
def test_malformed_conditions_name_their_field(condition: tp.Condition, expected: set[str]) -> None:
    step = tp.Transformation(filter=tp.Filter(mode=tp.Filter.MODE_INCLUDE, condition=condition))
    assert step_fields(step) == {f"t[0].filter.{p}" for p in expected}


def test_conditions_nest_at_most_16_deep() -> None:
    def nested(depth: int) -> tp.Condition:
        cond = tp.Condition(exists=tp.Exists(field="a"))
        for _ in range(depth):
            cond = tp.Condition(**{"not": cond})  # type: ignore[arg-type]
        return cond

    ok = tp.Transformation(filter=tp.Filter(mode=tp.Filter.MODE_INCLUDE, condition=nested(16)))
    assert step_fields(ok) == set()
    too_deep = tp.Transformation(filter=tp.Filter(mode=tp.Filter.MODE_INCLUDE, condition=nested(17)))
    assert len(step_fields(too_deep)) == 1


def test_every_bad_step_is_reported_with_its_index() -> None:
    steps = [
        tp.Transformation(sample=tp.Sample(rate=1)),
        tp.Transformation(sample=tp.Sample(rate=0)),
        tp.Transformation(hash_field=tp.HashField(field="e")),
        tp.Transformation(parse_timestamp=tp.ParseTimestamp(field="ts", timezone="Nowhere/Land")),
    ]
    assert fields(validate_transformations(steps, "dataset.transformations")) == {
        "dataset.transformations[1].sample.rate",
        "dataset.transformations[3].parse_timestamp.timezone",
    }


def test_step_ids_must_be_unique() -> None:
    steps = [tp.Transformation(id="x", sample=tp.Sample(rate=2)), tp.Transformation(id="x", sample=tp.Sample(rate=3))]
    assert fields(validate_transformations(steps, "t")) == {"t[1].id"}


def test_step_count_is_limited() -> None:
    step = tp.Transformation(sample=tp.Sample(rate=2))
    assert validate_transformations([step] * MAX_STEPS, "t") == []
    assert fields(validate_transformations([step] * (MAX_STEPS + 1), "t")) == {"t"}


def test_dataset_validation_includes_transformations() -> None:
    ds = dataset(port=0, data_hint="yaml")
    ds.transformations.append(tp.Transformation(regex_replace=tp.RegexReplace(field="m", pattern="(")))
    assert checked(ds) == {
        "dataset.source.port",
        "dataset.data_hint",
        "dataset.transformations[0].regex_replace.pattern",
    }


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ab", "acme", "a-1", "a" * 63, "x9"])
def test_valid_ids(value: str) -> None:
    assert check_id(value, "tenant_id") is None


@pytest.mark.parametrize("value", ["a", "1abc", "Acme", "ac_me", "acme-", "a" * 64, "ac me", "-ab", "é-t"])
def test_invalid_ids_name_the_field(value: str) -> None:
    violation = check_id(value, "tenant_id")
    assert violation is not None
    assert violation.field == "tenant_id"


def test_missing_id_is_required() -> None:
    violation = check_id("", "dataset_id")
    assert violation is not None
    assert violation.description == "is required"


def test_name_round_trips() -> None:
    assert parse_tenant_name(tenant_name("acme")) == "acme"
    assert parse_dataset_name(dataset_name("acme", "fw")) == ("acme", "fw")


@pytest.mark.parametrize(
    "value", ["acme", "tenants/", "tenants/acme/x", "projects/acme", "tenants/ACME", "tenants/acme/datasets/fw"]
)
def test_bad_tenant_names(value: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_tenant_name(value, "parent")
    assert fields(info.value.violations) == {"parent"}


@pytest.mark.parametrize(
    "value",
    ["tenants/acme", "tenants/acme/datasets", "tenants/acme/keys/fw", "tenants/acme/datasets/FW", "x/a/datasets/b"],
)
def test_bad_dataset_names(value: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_dataset_name(value, "dataset.name")
    assert fields(info.value.violations) == {"dataset.name"}


# -- page tokens -------------------------------------------------------------------------------


def test_page_size_defaults_and_caps() -> None:
    assert page_request(0, "", "q").size == DEFAULT_PAGE_SIZE
    assert page_request(7, "", "q").size == 7
    assert page_request(MAX_PAGE_SIZE + 1, "", "q").size == MAX_PAGE_SIZE


def test_negative_page_size_is_rejected() -> None:
    with pytest.raises(InvalidArgument) as info:
        page_request(-1, "", "q")
    assert fields(info.value.violations) == {"page_size"}


def test_token_resumes_after_the_last_name() -> None:
    first = page_request(2, "", "tenants/a")
    token = first.next_token(["tenants/a/datasets/x", "tenants/a/datasets/y"], has_more=True)
    assert token
    assert "=" not in token  # URL-safe, unpadded
    resumed = page_request(5, token, "tenants/a")  # page_size may change between pages
    assert resumed.after == "tenants/a/datasets/y"
    assert resumed.size == 5


def test_no_token_on_the_last_page() -> None:
    page = page_request(2, "", "q")
    assert page.next_token(["a", "b"], has_more=False) == ""
    assert page.next_token([], has_more=True) == ""


def test_token_is_bound_to_the_query() -> None:
    token = page_request(2, "", "tenants/a").next_token(["tenants/a/datasets/x"], has_more=True)
    with pytest.raises(InvalidArgument) as info:
        page_request(2, token, "tenants/b")
    assert fields(info.value.violations) == {"page_token"}
    assert "different parameters" in info.value.violations[0].description


@pytest.mark.parametrize(
    "token",
    [
        "garbage!!",
        "e30",  # {}
        base64.urlsafe_b64encode(b"[1,2]").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(json.dumps({"a": "x"}).encode()).decode(),
    ],
)
def test_foreign_tokens_are_rejected(token: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        page_request(2, token, "q")
    assert fields(info.value.violations) == {"page_token"}


# -- update masks ------------------------------------------------------------------------------


def base_dataset() -> datasets_pb2.Dataset:
    ds = dataset(514, agent="edge", active=True, display_name="Firewall", description="fw logs", data_hint="syslog")
    ds.labels["team"] = "net"
    ds.source.options["recv_buffer_bytes"] = "1048576"
    ds.retention.seconds = 86400
    ds.transformations.append(tp.Transformation(sample=tp.Sample(rate=2)))
    return ds


def test_mask_changes_only_the_named_fields() -> None:
    ds = base_dataset()
    patch = datasets_pb2.Dataset(display_name="New", description="ignored", data_hint="cef")
    apply_update_mask(ds, patch, FieldMask(paths=["display_name", "data_hint"]), DATASET_UPDATABLE, prefix="dataset")
    expected = base_dataset()
    expected.display_name, expected.data_hint = "New", "cef"
    assert ds == expected


def test_sub_field_path_keeps_the_siblings() -> None:
    ds = base_dataset()
    patch = datasets_pb2.Dataset(source=datasets_pb2.Source(port=6514, type=ST.SOURCE_TYPE_HTTP))
    apply_update_mask(ds, patch, FieldMask(paths=["source.port"]), DATASET_UPDATABLE, prefix="dataset")
    assert ds.source.port == 6514
    assert ds.source.type == ST.SOURCE_TYPE_SYSLOG_UDP
    assert dict(ds.source.options) == {"recv_buffer_bytes": "1048576"}


def test_maps_and_lists_are_replaced_not_merged() -> None:
    ds = base_dataset()
    patch = datasets_pb2.Dataset(labels={"env": "prod"})
    patch.transformations.append(tp.Transformation(hash_field=tp.HashField(field="e")))
    apply_update_mask(ds, patch, FieldMask(paths=["labels", "transformations"]), DATASET_UPDATABLE, prefix="dataset")
    assert dict(ds.labels) == {"env": "prod"}
    assert [s.WhichOneof("kind") for s in ds.transformations] == ["hash_field"]


def test_unset_message_in_patch_clears_the_field() -> None:
    ds = base_dataset()
    apply_update_mask(ds, datasets_pb2.Dataset(), FieldMask(paths=["retention"]), DATASET_UPDATABLE, prefix="dataset")
    assert not ds.HasField("retention")


def test_empty_mask_replaces_every_updatable_field() -> None:
    ds = base_dataset()
    ds.name = "tenants/t/datasets/fw"
    ds.etag = "3"
    patch = datasets_pb2.Dataset(name="tenants/other/datasets/x", display_name="Only", etag="9")
    apply_update_mask(ds, patch, FieldMask(), DATASET_UPDATABLE, prefix="dataset")
    assert ds == datasets_pb2.Dataset(name="tenants/t/datasets/fw", display_name="Only", etag="3")


@pytest.mark.parametrize(
    "path", ["name", "create_time", "etag", "nope", "", "labels.team", "source.nope", "source.port.x", "source."]
)
def test_unknown_or_immutable_paths_name_update_mask(path: str) -> None:
    ds = base_dataset()
    before = datasets_pb2.Dataset()
    before.CopyFrom(ds)
    with pytest.raises(InvalidArgument) as info:
        apply_update_mask(ds, datasets_pb2.Dataset(), FieldMask(paths=[path]), DATASET_UPDATABLE, prefix="dataset")
    assert fields(info.value.violations) == {"update_mask"}
    if path.split(".", maxsplit=1)[0] not in DATASET_UPDATABLE:
        assert ds == before  # rejected before anything was applied


def test_every_bad_path_is_named() -> None:
    tenant = tenants_pb2.Tenant(display_name="A")
    with pytest.raises(InvalidArgument) as info:
        apply_update_mask(
            tenant,
            tenants_pb2.Tenant(),
            FieldMask(paths=["name", "display_name", "etag"]),
            ("display_name", "description", "state", "labels"),
            prefix="tenant",
        )
    descriptions = " ".join(v.description for v in info.value.violations)
    assert len(info.value.violations) == 2
    assert "'name'" in descriptions
    assert "'etag'" in descriptions
    assert tenant.display_name == "A"


def test_a_conflict_with_another_tenant_does_not_name_its_dataset() -> None:
    other = stored("tenants/other/datasets/secret", dataset(514, agent="edge", active=True))
    (found,) = port_conflicts(stored("tenants/t/datasets/new", dataset(514, agent="edge", active=True)), [other])
    assert found.field == "dataset.source.port"
    assert "secret" not in found.description
    assert "another tenant" in found.description
