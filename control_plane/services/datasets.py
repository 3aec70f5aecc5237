"""floe.v1.DatasetService."""

from __future__ import annotations

from typing import Any

from control_plane.core.datasets import apply_defaults, port_conflicts, validate_dataset
from control_plane.core.errors import AlreadyExists, FieldViolation
from control_plane.core.fieldmask import apply_update_mask
from control_plane.core.names import check_id, dataset_name, parse_dataset_name, parse_tenant_name
from control_plane.core.pagination import page_request
from control_plane.core.resources import check_etag, from_record, to_body
from control_plane.services.common import existing, fetch_page, list_parent, principal, require, writable_tenant
from control_plane.services.dataset_tools import get_fields, preview_transformations, report_fields
from control_plane.services.tenants import validate_labels
from control_plane.store import Store, Transaction
from floe.v1 import datasets_pb2, datasets_pb2_grpc

__all__ = ["DatasetServicer"]

Dataset = datasets_pb2.Dataset
UPDATABLE = (
    "display_name",
    "description",
    "source",
    "data_hint",
    "transformations",
    "destination",
    "proxy",
    "active",
    "testing",
    "retention",
    "labels",
)


async def _check(tx: Transaction, ds: Dataset, tenant_id: str, *, dataset_id: str | None = None) -> None:
    """Validate ``ds`` (and the new ``dataset_id``) against the rules and against the other datasets,
    reporting every problem at once."""
    apply_defaults(ds)
    violations: list[FieldViolation] = []
    if dataset_id is not None and (bad_id := check_id(dataset_id, "dataset_id")):
        violations.append(bad_id)
    violations += validate_dataset(ds)
    violations += validate_labels(ds.labels, "dataset.labels")
    for i, step in enumerate(ds.transformations):
        if step.WhichOneof("kind") == "route":
            target = step.route.dataset
            if target.startswith("tenants/") and not target.startswith(f"tenants/{tenant_id}/"):
                violations.append(
                    FieldViolation(
                        f"dataset.transformations[{i}].route.dataset", "must be a dataset of the same tenant"
                    )
                )
    # Checked even when other fields are bad, so a caller learns of a taken port in the same round.
    others = [from_record(r, Dataset) for r in await tx.list_all("datasets")]
    violations += port_conflicts(ds, others)
    require(violations)


class DatasetServicer(datasets_pb2_grpc.DatasetServiceServicer):
    def __init__(self, store: Store) -> None:
        self._store = store

    async def CreateDataset(self, request: datasets_pb2.CreateDatasetRequest, context: Any) -> Any:
        tenant_id = parse_tenant_name(request.parent, "parent")
        principal().require_write(tenant_id, request.parent)
        ds = Dataset()
        ds.CopyFrom(request.dataset)
        name = dataset_name(tenant_id, request.dataset_id)
        ds.name = name
        async with self._store.transaction() as tx:
            await writable_tenant(tx, request.parent)
            await _check(tx, ds, tenant_id, dataset_id=request.dataset_id)
            if request.validate_only:
                if await tx.get(name) is not None:
                    raise AlreadyExists(f"{name} already exists.")
                return datasets_pb2.CreateDatasetResponse(dataset=ds)
            record = await tx.create(name, "datasets", request.parent, to_body(ds))
        return datasets_pb2.CreateDatasetResponse(dataset=from_record(record, Dataset))

    async def GetDataset(self, request: datasets_pb2.GetDatasetRequest, context: Any) -> Any:
        tenant_id, _ = parse_dataset_name(request.name)
        principal().require_read(tenant_id, request.name)
        record = await existing(self._store, request.name)
        return datasets_pb2.GetDatasetResponse(dataset=from_record(record, Dataset))

    async def ListDatasets(self, request: datasets_pb2.ListDatasetsRequest, context: Any) -> Any:
        page = page_request(request.page_size, request.page_token, request.parent)
        parent = list_parent(request.parent, "datasets")
        records, token = await fetch_page(self._store, "datasets", page, parent=parent)
        return datasets_pb2.ListDatasetsResponse(
            datasets=[from_record(r, Dataset) for r in records], next_page_token=token
        )

    async def UpdateDataset(self, request: datasets_pb2.UpdateDatasetRequest, context: Any) -> Any:
        name = request.dataset.name
        tenant_id, _ = parse_dataset_name(name, "dataset.name")
        principal().require_write(tenant_id, name)
        async with self._store.transaction() as tx:
            record = await existing(tx, name)
            check_etag(record, request.dataset.etag, "dataset.etag")
            ds = from_record(record, Dataset)
            apply_update_mask(ds, request.dataset, request.update_mask, UPDATABLE, prefix="dataset")
            await _check(tx, ds, tenant_id)
            if request.validate_only:
                return datasets_pb2.UpdateDatasetResponse(dataset=ds)
            updated = await tx.update(name, to_body(ds), expected_revision=record.revision)
        return datasets_pb2.UpdateDatasetResponse(dataset=from_record(updated, Dataset))

    async def DeleteDataset(self, request: datasets_pb2.DeleteDatasetRequest, context: Any) -> Any:
        tenant_id, _ = parse_dataset_name(request.name)
        principal().require_write(tenant_id, request.name)
        async with self._store.transaction() as tx:
            record = await existing(tx, request.name)
            check_etag(record, request.etag)
            await tx.delete(request.name, expected_revision=record.revision)
            if await tx.get(f"{request.name}/fields") is not None:
                await tx.delete(f"{request.name}/fields")
        return datasets_pb2.DeleteDatasetResponse()

    async def PreviewTransformations(self, request: datasets_pb2.PreviewTransformationsRequest, context: Any) -> Any:
        return await preview_transformations(request)

    async def GetDatasetFields(self, request: datasets_pb2.GetDatasetFieldsRequest, context: Any) -> Any:
        return await get_fields(self._store, request)

    async def ReportDatasetFields(self, request: datasets_pb2.ReportDatasetFieldsRequest, context: Any) -> Any:
        return await report_fields(self._store, request)
