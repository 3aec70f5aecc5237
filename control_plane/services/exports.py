"""floe.v1.ExportService: export jobs, ``tenants/{tenant}/exports/{export}``, stored in the
"exports" collection. Validation is the connector's own (``agents.connector.spec``), so a job the
control plane accepts is one a connector can run; credentials are only ever referenced (an env
variable or a file on the connector host), never stored here."""

from __future__ import annotations

from typing import Any

from agents.connector.spec import validate_job
from control_plane.core.errors import AlreadyExists, FieldViolation, InvalidArgument
from control_plane.core.fieldmask import apply_update_mask
from control_plane.core.names import check_id, parse_tenant_name
from control_plane.core.pagination import page_request
from control_plane.core.resources import check_etag, from_record, to_body
from control_plane.services.common import existing, fetch_page, list_parent, principal, require, writable_tenant
from control_plane.services.tenants import validate_labels
from control_plane.store import Store, Transaction
from floe.v1 import exports_pb2, exports_pb2_grpc

__all__ = ["ExportServicer", "parse_export_name"]

ExportJob = exports_pb2.ExportJob
UPDATABLE = (
    "display_name",
    "query",
    "destination",
    "mode",
    "interval",
    "batch_size",
    "retry",
    "connector",
    "paused",
    "labels",
)


def parse_export_name(value: str, field: str = "name") -> tuple[str, str]:
    """Parse ``tenants/{t}/exports/{e}`` into ``(t, e)``."""
    parts = value.split("/")
    if len(parts) != 4 or parts[0] != "tenants" or parts[2] != "exports":
        raise InvalidArgument.from_violations(
            [FieldViolation(field, f"{value!r} is not of the form tenants/{{tenant}}/exports/{{export}}")]
        )
    violations = [v for v in (check_id(parts[1], field), check_id(parts[3], field)) if v]
    if violations:
        raise InvalidArgument.from_violations(violations)
    return parts[1], parts[3]


async def _check(tx: Transaction, job: ExportJob, tenant_id: str, *, export_id: str | None = None) -> None:
    """Every problem of ``job`` at once, including a dataset of another tenant or none at all."""
    violations: list[FieldViolation] = []
    if export_id is not None and (bad := check_id(export_id, "export_job_id")):
        violations.append(bad)
    violations += validate_job(job)
    violations += validate_labels(job.labels, "export_job.labels")
    if job.dataset and not any(v.field == "export_job.dataset" for v in violations):
        if job.dataset.split("/")[1] != tenant_id:
            # Said the same way whether or not it exists: another tenant's names stay private.
            violations.append(FieldViolation("export_job.dataset", f"must be a dataset of tenants/{tenant_id}"))
        elif await tx.get(job.dataset) is None:
            violations.append(FieldViolation("export_job.dataset", f"{job.dataset} does not exist"))
    require(violations)


class ExportServicer(exports_pb2_grpc.ExportServiceServicer):
    def __init__(self, store: Store) -> None:
        self._store = store

    async def CreateExportJob(self, request: exports_pb2.CreateExportJobRequest, context: Any) -> Any:
        tenant_id = parse_tenant_name(request.parent, "parent")
        principal().require_write(tenant_id, request.parent)
        job = ExportJob()
        job.CopyFrom(request.export_job)
        name = f"{request.parent}/exports/{request.export_job_id}"
        job.name = name
        async with self._store.transaction() as tx:
            await writable_tenant(tx, request.parent)
            await _check(tx, job, tenant_id, export_id=request.export_job_id)
            if request.validate_only:
                if await tx.get(name) is not None:
                    raise AlreadyExists(f"{name} already exists.")
                return exports_pb2.CreateExportJobResponse(export_job=job)
            record = await tx.create(name, "exports", request.parent, to_body(job))
        return exports_pb2.CreateExportJobResponse(export_job=from_record(record, ExportJob))

    async def GetExportJob(self, request: exports_pb2.GetExportJobRequest, context: Any) -> Any:
        tenant_id, _ = parse_export_name(request.name)
        principal().require_read(tenant_id, request.name)
        record = await existing(self._store, request.name)
        return exports_pb2.GetExportJobResponse(export_job=from_record(record, ExportJob))

    async def ListExportJobs(self, request: exports_pb2.ListExportJobsRequest, context: Any) -> Any:
        page = page_request(request.page_size, request.page_token, request.parent)
        parent = list_parent(request.parent, "exports")
        records, token = await fetch_page(self._store, "exports", page, parent=parent)
        return exports_pb2.ListExportJobsResponse(
            export_jobs=[from_record(r, ExportJob) for r in records], next_page_token=token
        )

    async def UpdateExportJob(self, request: exports_pb2.UpdateExportJobRequest, context: Any) -> Any:
        name = request.export_job.name
        tenant_id, _ = parse_export_name(name, "export_job.name")
        principal().require_write(tenant_id, name)
        async with self._store.transaction() as tx:
            record = await existing(tx, name)
            check_etag(record, request.export_job.etag, "export_job.etag")
            job = from_record(record, ExportJob)
            apply_update_mask(job, request.export_job, request.update_mask, UPDATABLE, prefix="export_job")
            await _check(tx, job, tenant_id)
            if request.validate_only:
                return exports_pb2.UpdateExportJobResponse(export_job=job)
            updated = await tx.update(name, to_body(job), expected_revision=record.revision)
        return exports_pb2.UpdateExportJobResponse(export_job=from_record(updated, ExportJob))

    async def DeleteExportJob(self, request: exports_pb2.DeleteExportJobRequest, context: Any) -> Any:
        tenant_id, _ = parse_export_name(request.name)
        principal().require_write(tenant_id, request.name)
        async with self._store.transaction() as tx:
            record = await existing(tx, request.name)
            check_etag(record, request.etag)
            await tx.delete(request.name, expected_revision=record.revision)
        return exports_pb2.DeleteExportJobResponse()
