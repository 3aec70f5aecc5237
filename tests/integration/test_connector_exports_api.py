"""floe.v1.ExportService through the SDK and the ``floe exports`` CLI: validation naming every
bad field, tenant isolation, etags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import json_format

from floe.client import Client
from floe.errors import RpcError
from floe.v1 import common_pb2, datasets_pb2, exports_pb2
from tests.helpers import ControlPlaneProcess


def es_job(dataset: str) -> exports_pb2.ExportJob:
    doc = {
        "dataset": dataset,
        "mode": "EXPORT_MODE_WATCH",
        "destination": {"elasticsearch": {"url": "http://es:9200", "index": "logs", "apiKey": {"env": "ES_KEY"}}},
    }
    return json_format.ParseDict(doc, exports_pb2.ExportJob())


def make_tenant(admin: Client, tenant: str) -> None:
    admin.tenants.create(tenant)
    ds = datasets_pb2.Dataset(
        source=datasets_pb2.Source(
            type=datasets_pb2.SOURCE_TYPE_NATS, options={"subject": "logs", "url": "nats://127.0.0.1:4222"}
        )
    )
    admin.datasets.create(f"tenants/{tenant}", "fw", ds)


def test_crud_validation_and_isolation(
    control_plane: ControlPlaneProcess, admin: Client, uid: Callable[[str], str]
) -> None:
    mine, theirs = uid("mine"), uid("theirs")
    make_tenant(admin, mine)
    make_tenant(admin, theirs)
    job = admin.exports.create(mine, "to-es", es_job(f"tenants/{mine}/datasets/fw"))
    assert job.name == f"tenants/{mine}/exports/to-es"

    with pytest.raises(RpcError) as bad:
        admin.exports.create(mine, "Bad_Id", exports_pb2.ExportJob(dataset=f"tenants/{theirs}/datasets/fw"))
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in bad.value.violations} >= {
        "export_job_id",
        "export_job.dataset",
        "export_job.destination",
        "export_job.mode",
    }

    updated = job.__class__()
    updated.CopyFrom(job)
    updated.paused = True
    assert admin.exports.update(updated, ["paused"]).paused
    with pytest.raises(RpcError) as stale:
        admin.exports.update(updated, ["paused"])  # the etag of the previous version
    assert stale.value.code == grpc.StatusCode.ABORTED

    _, key = admin.keys.create(common_pb2.ROLE_EDITOR, tenant=theirs, display_name="other tenant")
    with Client(control_plane.grpc, api_key=key, retries=0) as other:
        assert other.exports.list() == []
        with pytest.raises(RpcError) as denied:
            other.exports.get(job.name)
        # Another tenant's resources are not even said to exist.
        assert denied.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(RpcError):
            other.exports.create(theirs, "steal", es_job(f"tenants/{mine}/datasets/fw"))

    env = {**os.environ, "FLOE_API_KEY": control_plane.admin_key, "FLOE_CONTROL_URL": control_plane.grpc}
    run = [sys.executable, "-m", "floe.cli", "-o", "json", "exports"]
    created = subprocess.run(
        [*run, "create", f"{mine}/hook", "--dataset", f"{mine}/fw", "--mode", "batch", "--webhook-url", "http://h/x"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(created.stdout)["destination"]["webhook"]["url"] == "http://h/x"
    listed = subprocess.run(
        [*run, "list", "--tenant", f"tenants/{mine}"], env=env, capture_output=True, text=True, check=True
    )
    assert [j["name"] for j in json.loads(listed.stdout)] == [f"tenants/{mine}/exports/hook", job.name]
    subprocess.run([*run, "delete", f"{mine}/hook"], env=env, check=True, capture_output=True)
    with pytest.raises(RpcError) as gone:
        admin.exports.get(f"tenants/{mine}/exports/hook")
    assert gone.value.code == grpc.StatusCode.NOT_FOUND
