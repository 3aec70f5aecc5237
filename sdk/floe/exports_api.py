"""``client.exports``: export jobs (``tenants/{tenant}/exports/{export}``) on floe.v1.ExportService."""

from __future__ import annotations

import builtins

from google.protobuf import field_mask_pb2

from floe.client import AsyncClient, _Api
from floe.v1 import exports_pb2, exports_pb2_grpc

__all__ = ["ExportsApi"]


def _tenant(value: str) -> str:
    return value if value.startswith("tenants/") else f"tenants/{value}"


class ExportsApi(_Api):
    def __init__(self, client: AsyncClient) -> None:
        super().__init__(client)
        self._stub = exports_pb2_grpc.ExportServiceStub(client.channel)

    async def create(
        self, parent: str, export_id: str, job: exports_pb2.ExportJob, *, validate_only: bool = False
    ) -> exports_pb2.ExportJob:
        """Create ``{parent}/exports/{export_id}``; ``parent`` is ``tenants/{t}`` or just ``t``."""
        req = exports_pb2.CreateExportJobRequest(
            parent=_tenant(parent), export_job_id=export_id, export_job=job, validate_only=validate_only
        )
        resp: exports_pb2.CreateExportJobResponse = await self._c.call(self._stub.CreateExportJob, req)
        return resp.export_job

    async def get(self, name: str) -> exports_pb2.ExportJob:
        req = exports_pb2.GetExportJobRequest(name=name)
        resp: exports_pb2.GetExportJobResponse = await self._c.call(self._stub.GetExportJob, req)
        return resp.export_job

    async def list_page(
        self, parent: str = "tenants/-", page_size: int = 0, page_token: str = ""
    ) -> exports_pb2.ListExportJobsResponse:
        req = exports_pb2.ListExportJobsRequest(parent=_tenant(parent), page_size=page_size, page_token=page_token)
        resp: exports_pb2.ListExportJobsResponse = await self._c.call(self._stub.ListExportJobs, req)
        return resp

    async def list(self, parent: str = "tenants/-") -> builtins.list[exports_pb2.ExportJob]:
        out: builtins.list[exports_pb2.ExportJob] = []
        token = ""
        while True:
            page = await self.list_page(parent, 500, token)
            out.extend(page.export_jobs)
            token = page.next_page_token
            if not token:
                return out

    async def update(
        self, job: exports_pb2.ExportJob, paths: builtins.list[str] | None = None, *, validate_only: bool = False
    ) -> exports_pb2.ExportJob:
        req = exports_pb2.UpdateExportJobRequest(
            export_job=job, update_mask=field_mask_pb2.FieldMask(paths=paths or []), validate_only=validate_only
        )
        resp: exports_pb2.UpdateExportJobResponse = await self._c.call(self._stub.UpdateExportJob, req)
        return resp.export_job

    async def delete(self, name: str, *, etag: str = "") -> None:
        await self._c.call(self._stub.DeleteExportJob, exports_pb2.DeleteExportJobRequest(name=name, etag=etag))
