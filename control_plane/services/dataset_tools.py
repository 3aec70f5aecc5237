"""Two DatasetService methods that are not resource CRUD: previewing a transformation list on
sample records (with the engine pipers run) and the field catalogue pipers report."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from google.protobuf import json_format, struct_pb2

from control_plane.core.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied
from control_plane.core.names import parse_dataset_name
from control_plane.core.resources import timestamp
from control_plane.services.common import principal, require
from control_plane.store import Store
from floe.v1 import common_pb2, datasets_pb2

__all__ = ["get_fields", "preview_transformations", "report_fields"]

MAX_RECORDS = 1000
MAX_TEXT = 1 << 20
FIELDS = "fields"


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(json.loads(json.dumps(value, default=str)))
    return out


def _run_preview(request: datasets_pb2.PreviewTransformationsRequest, salt: str) -> Any:
    from agents.transforms.engine import preview, preview_table
    from agents.transforms.parsers import UnknownDataHint, parse_body

    if request.WhichOneof("input") == "text":
        try:
            parsed = parse_body(request.text.text.encode(), request.text.data_hint)
        except UnknownDataHint as exc:
            raise InvalidArgument.from_violations([FieldViolation("text.data_hint", str(exc))]) from exc
        return preview_table(list(request.transformations), parsed.table, salt=salt), parsed.errors.to_pylist()
    records = [json_format.MessageToDict(r) for r in request.records.records]
    return preview(list(request.transformations), records, salt=salt), []


async def preview_transformations(request: datasets_pb2.PreviewTransformationsRequest) -> Any:
    from agents.transforms.engine import InvalidTransformations

    tenant_id, _ = parse_dataset_name(request.dataset, "dataset")
    principal().require_read(tenant_id, request.dataset)
    violations: list[FieldViolation] = []
    which = request.WhichOneof("input")
    if which is None:
        violations.append(FieldViolation("records", "give sample records or text"))
    elif which == "records" and len(request.records.records) > MAX_RECORDS:
        violations.append(FieldViolation("records.records", f"at most {MAX_RECORDS} records"))
    elif which == "text" and len(request.text.text.encode()) > MAX_TEXT:
        violations.append(FieldViolation("text.text", f"at most {MAX_TEXT} bytes"))
    for i, step in enumerate(request.transformations):
        if step.WhichOneof("kind") == "route" and not step.route.dataset.startswith(f"tenants/{tenant_id}/datasets/"):
            violations.append(
                FieldViolation(f"transformations[{i}].route.dataset", "must be a dataset of the same tenant")
            )
    require(violations)
    try:
        # A fixed salt: previews must not reveal the digests pipers write with the real secret.
        result, parse_errors = await asyncio.to_thread(_run_preview, request, "preview")
    except InvalidTransformations as exc:
        raise InvalidArgument.from_violations(list(exc.violations)) from exc
    except ValueError as exc:
        raise InvalidArgument.from_violations([FieldViolation("records", str(exc))]) from exc
    resp = datasets_pb2.PreviewTransformationsResponse(records=[_struct(r) for r in result.rows])
    for err in parse_errors:
        resp.errors.add(step_index=-1, step="parse", reason=str(err["reason"]), record=_struct({"raw": err["raw"]}))
    for err in result.errors:
        resp.errors.add(
            step_index=int(err["step_index"]),
            step=str(err.get("step", "")),
            reason=str(err.get("reason", "")),
            record=_struct(err.get("record") or {}),
        )
    for name, rows in result.routed.items():
        resp.routed[name].records.extend(_struct(r) for r in rows)
    for st in result.steps:
        resp.steps.add(
            index=st.index,
            step=st.step,
            kind=st.kind,
            rows_in=st.rows_in,
            rows_out=st.rows_out,
            failed=st.failed,
            routed=st.routed,
        )
    return resp


def _fields_name(name: str, field: str) -> tuple[str, str]:
    """``tenants/t/datasets/d/fields`` -> (tenant id, dataset name)."""
    if not name.endswith("/fields"):
        raise InvalidArgument.from_violations(
            [FieldViolation(field, "must be tenants/{tenant}/datasets/{dataset}/fields")]
        )
    dataset = name.removesuffix("/fields")
    tenant_id, _ = parse_dataset_name(dataset, field)
    return tenant_id, dataset


async def get_fields(store: Store, request: datasets_pb2.GetDatasetFieldsRequest) -> Any:
    tenant_id, dataset = _fields_name(request.name, "name")
    principal().require_read(tenant_id, dataset)
    if await store.get(dataset) is None:
        raise NotFound(f"{dataset} does not exist.")
    record = await store.get(request.name)
    fields = datasets_pb2.DatasetFields(name=request.name)
    if record is not None:
        fields = datasets_pb2.DatasetFields.FromString(record.body)
        fields.name = request.name
        fields.update_time.CopyFrom(timestamp(record.update_time))
    return datasets_pb2.GetDatasetFieldsResponse(fields=fields)


def _merge(into: datasets_pb2.DatasetFields, report: datasets_pb2.DatasetFields) -> None:
    by_name = {f.name: f for f in into.fields}
    into.records += report.records
    for new in report.fields:
        old = by_name.get(new.name)
        if old is None:
            old = into.fields.add(name=new.name)
            by_name[new.name] = old
        for type_name, count in new.types.items():
            old.types[type_name] = old.types.get(type_name, 0) + count
        old.type = max(old.types.items(), key=lambda kv: kv[1])[0] if old.types else new.type
        old.non_null += new.non_null
        old.records += new.records
        first = new.first_seen_time.ToNanoseconds()
        if first and (not old.first_seen_time.ToNanoseconds() or first < old.first_seen_time.ToNanoseconds()):
            old.first_seen_time.CopyFrom(new.first_seen_time)
        if new.last_seen_time.ToNanoseconds() > old.last_seen_time.ToNanoseconds():
            old.last_seen_time.CopyFrom(new.last_seen_time)


async def report_fields(store: Store, request: datasets_pb2.ReportDatasetFieldsRequest) -> Any:
    caller = principal()
    if caller.role not in (common_pb2.ROLE_AGENT, common_pb2.ROLE_ADMIN):
        raise PermissionDenied(
            f"Only agent or admin credentials report dataset fields; this one is {caller.describe()}."
        )
    tenant_id, dataset = _fields_name(request.fields.name, "fields.name")
    if not caller.sees_tenant(tenant_id):
        raise NotFound(f"{dataset} does not exist.")
    async with store.transaction() as tx:
        if await tx.get(dataset) is None:
            raise NotFound(f"{dataset} does not exist.")
        record = await tx.get(request.fields.name)
        merged = datasets_pb2.DatasetFields()
        if record is not None:
            merged.MergeFromString(record.body)
        _merge(merged, request.fields)
        merged.name = ""
        merged.ClearField("update_time")
        body = merged.SerializeToString(deterministic=True)
        if record is None:
            await tx.create(request.fields.name, FIELDS, f"tenants/{tenant_id}", body)
        else:
            await tx.update(request.fields.name, body, expected_revision=record.revision)
    return datasets_pb2.ReportDatasetFieldsResponse()
