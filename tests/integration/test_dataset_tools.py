"""PreviewTransformations (the piper's engine on sample records) and the dataset field catalogue."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from floe import Client
from floe.errors import RpcError
from floe.v1 import common_pb2, datasets_pb2, keys_pb2, transforms_pb2
from tests.helpers import ControlPlaneProcess

T = transforms_pb2


def _eq(field: str, value: str) -> T.Condition:
    return T.Condition(compare=T.Comparison(field=field, operator=T.Comparison.OPERATOR_EQ, value=value))


def test_preview_runs_steps_on_records_with_errors_and_routes(admin: Client, uid: Callable[[str], str]) -> None:
    tenant = uid("pv")
    admin.tenants.create(tenant)
    steps = [
        T.Transformation(id="no-debug", filter=T.Filter(mode=T.Filter.MODE_EXCLUDE, condition=_eq("level", "debug"))),
        T.Transformation(rename_field=T.RenameField(**{"from": "msg", "to": "message"})),
        T.Transformation(id="code", convert_type=T.ConvertType(field="code", type=T.ConvertType.TYPE_INT)),
        T.Transformation(route=T.Route(dataset=f"tenants/{tenant}/datasets/audit", condition=_eq("level", "audit"))),
        T.Transformation(hash_field=T.HashField(field="user")),
    ]
    records = [
        {"level": "info", "msg": "héllo", "code": "7", "user": "ann"},
        {"level": "debug", "msg": "noise", "code": "1", "user": "bob"},
        {"level": "audit", "msg": "login", "code": "2", "user": "cy"},
        {"level": "info", "msg": "bad", "code": "x", "user": "dee"},
    ]
    resp = admin.datasets.preview(f"tenants/{tenant}/datasets/app", steps, records=records)
    out = [dict(r) for r in resp.records]
    assert len(out) == 1
    assert out[0]["message"] == "héllo"
    assert out[0]["code"] == 7
    assert out[0]["user"] != "ann" and len(out[0]["user"]) == 64
    assert [e.step for e in resp.errors] == ["code"]
    assert "x" in resp.errors[0].reason or "int" in resp.errors[0].reason
    assert dict(resp.errors[0].record)["code"] == "x"
    routed = resp.routed[f"tenants/{tenant}/datasets/audit"].records
    assert [dict(r)["message"] for r in routed] == ["login"]
    assert [(s.step, s.rows_in, s.rows_out) for s in resp.steps][:2] == [("no-debug", 4, 3), ("rename_field", 3, 3)]


def test_preview_parses_raw_syslog_text(admin: Client, uid: Callable[[str], str]) -> None:
    tenant = uid("pv")
    admin.tenants.create(tenant)
    text = "<34>1 2026-11-23T09:00:00Z web01 sshd 42 - - Failed password\nnot syslog\n"
    steps = [T.Transformation(change_case=T.ChangeCase(field="hostname", case=T.ChangeCase.CASE_UPPER))]
    resp = admin.datasets.preview(f"tenants/{tenant}/datasets/fw", steps, text=text, data_hint="syslog")
    rows = [dict(r) for r in resp.records]
    assert rows[0]["hostname"] == "WEB01"
    assert rows[0]["message"] == "Failed password"
    assert rows[0]["timestamp"].startswith("2026-11-23T09:00:00")
    assert len(rows) == 2  # the unparseable line is kept as a raw record


def test_preview_rejects_bad_steps_naming_them(admin: Client, uid: Callable[[str], str]) -> None:
    tenant = uid("pv")
    admin.tenants.create(tenant)
    bad = [
        T.Transformation(rename_field=T.RenameField(to="x")),
        T.Transformation(route=T.Route(dataset="tenants/other/datasets/x", condition=_eq("a", "b"))),
    ]
    with pytest.raises(RpcError) as err:
        admin.datasets.preview(f"tenants/{tenant}/datasets/app", bad, records=[{"a": 1}])
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in err.value.violations} >= {"transformations[1].route.dataset"}
    with pytest.raises(RpcError) as err:
        admin.datasets.preview(f"tenants/{tenant}/datasets/app", bad[:1], records=[{"a": 1}])
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert any(v.field.startswith("transformations[0].rename_field") for v in err.value.violations)
    with pytest.raises(RpcError) as err:
        admin.datasets.preview(f"tenants/{tenant}/datasets/app", [], text="x", data_hint="nope")
    assert [v.field for v in err.value.violations] == ["text.data_hint"]


def test_field_reports_merge_and_stay_within_the_tenant(
    control_plane: ControlPlaneProcess, admin: Client, uid: Callable[[str], str]
) -> None:
    tenant, other = uid("fd"), uid("fd")
    admin.tenants.create(tenant)
    admin.tenants.create(other)
    ds = datasets_pb2.Dataset(source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_HTTP, port=1))
    admin.datasets.create(tenant, "app", ds)
    name = f"tenants/{tenant}/datasets/app"
    _, agent_key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
    _, other_viewer = admin.keys.create(common_pb2.ROLE_VIEWER, tenant=other)
    _, viewer = admin.keys.create(common_pb2.ROLE_VIEWER, tenant=tenant)

    def report(records: int, types: dict[str, int], seen: int) -> datasets_pb2.DatasetFields:
        msg = datasets_pb2.DatasetFields(name=f"{name}/fields", records=records)
        f = msg.fields.add(name="code", type=max(types, key=types.__getitem__), non_null=records, records=records)
        f.types.update(types)
        f.first_seen_time.FromSeconds(seen)
        f.last_seen_time.FromSeconds(seen)
        return msg

    with Client(control_plane.grpc, api_key=agent_key) as agent:
        agent.datasets.report_fields(report(10, {"int64": 1}, 1000))
        agent.datasets.report_fields(report(5, {"string": 1}, 2000))
        with pytest.raises(RpcError) as err:
            agent.datasets.fields(name)
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    with Client(control_plane.grpc, api_key=viewer) as client:
        fields = client.datasets.fields(name)
        with pytest.raises(RpcError) as err:
            client.datasets.report_fields(report(1, {"int64": 1}, 1))
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert fields.records == 15
    (code,) = fields.fields
    assert dict(code.types) == {"int64": 1, "string": 1}
    assert code.records == 15
    assert (code.first_seen_time.seconds, code.last_seen_time.seconds) == (1000, 2000)
    with Client(control_plane.grpc, api_key=other_viewer) as client, pytest.raises(RpcError) as err:
        client.datasets.fields(name)
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    admin.datasets.delete(name)
    admin.datasets.create(tenant, "app", ds)
    assert admin.datasets.fields(name).records == 0
