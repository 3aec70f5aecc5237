"""The receiver's webhook against a real receiver process and a real control plane: every refusal
with its exact status and JSON body, and good batches (gzip, zstd, identity) landing in the local
object store under their idempotent names with their metadata.

The helpers here (``Site``, ``post``, ``body_of``...) are shared by the crash and S3 tests."""

from __future__ import annotations

import gzip
import http.client
import json
import re
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from floe import Client
from floe.v1 import agent_pb2, common_pb2, datasets_pb2, keys_pb2, tenants_pb2
from tests.helpers import ControlPlaneProcess, eventually
from tests.integration.agentkit import AgentProcess, http_get

Headers = dict[str, str]


# -- helpers shared by the receiver tests -----------------------------------------------------


def post(
    address: str, path: str, body: bytes, headers: Headers | None = None, timeout: float = 10.0
) -> tuple[int, Headers, Any]:
    """POST and decode the JSON answer: (status, headers, body)."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(raw) if raw else None
    finally:
        conn.close()


def zstd(data: bytes) -> bytes:
    return bytes(pa.Codec("zstd").compress(data, asbytes=True))


def unzstd(data: bytes) -> bytes:
    return bytes(pa.CompressedInputStream(pa.py_buffer(data), "zstd").read())


def body_of(path: Path) -> bytes:
    """The decompressed content of a stored raw object (``.gz`` or ``.zst``)."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else unzstd(data)


def objects(root: Path, tenant: str) -> dict[str, Path]:
    """Every object of ``tenant`` in a local store: key -> file."""
    base = root / tenant
    return {str(p.relative_to(root)): p for p in base.rglob("*") if p.is_file()} if base.exists() else {}


def metadata(root: Path, key: str) -> dict[str, str]:
    return dict(json.loads((root / ".meta" / f"{key}.json").read_text())["metadata"])


def expected_key(tenant: str, dataset: str, batch_id: str, created_ns: int, *, hint: str, ext: str) -> str:
    nanos = created_ns // 1000 * 1000 + zlib.crc32(batch_id.encode()) % 1000
    return f"{tenant}/{dataset}/{tenant}--{dataset}--{nanos}--{hint}.{ext}"


def figure(agent: AgentProcess, name: str, field: str) -> int:
    """A counter of a health component (proto JSON omits zeros and writes int64 as strings)."""
    return int(agent.component(name).get(field, 0))


@dataclass
class Site:
    """One tenant on the shared control plane with datasets and keys, and a way to start receivers."""

    cp: ControlPlaneProcess
    admin: Client
    tmp: Path
    tenant: str
    agent_key: str  # ROLE_AGENT, any tenant: the receivers' own key, also valid for ingest
    writer_key: str  # ROLE_EDITOR of this tenant
    writer_name: str
    started: list[AgentProcess] = field(default_factory=list)

    def receiver(self, name: str, *extra: str, store: Path | None = None, env: Headers | None = None) -> AgentProcess:
        store_args = ("--object-store", str(store or self.tmp / "objects"))
        agent = AgentProcess(
            "receiver",
            name,
            self.tmp / "agents",
            "--webhook-listen",
            "127.0.0.1:0",
            *store_args,
            *extra,
            control_url=self.cp.grpc,
            key=self.agent_key,
            env=env,
        )
        self.started.append(agent)
        return agent.start()

    def wait_configured(self, agent: AgentProcess, dataset: str = "logs") -> str:
        """Wait until ``agent`` knows this tenant; return its webhook address."""
        webhook = agent.addresses["webhook"]

        def ready() -> bool:
            status, _, doc = post(webhook, f"/{self.tenant}/{dataset}", b"{}\n", self.auth())
            assert status == 200, (status, doc)
            return True

        eventually(ready, timeout=20)
        return webhook

    def auth(self, key: str = "") -> Headers:
        return {"Authorization": f"Bearer {key or self.writer_key}"}


@pytest.fixture
def site(
    control_plane: ControlPlaneProcess, admin: Client, uid: Callable[[str], str], tmp_path: Path
) -> Iterator[Site]:
    tenant = uid("rcv")
    admin.tenants.create(tenant)
    nats = datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_NATS, options={"subject": "x"})
    admin.datasets.create(tenant, "logs", datasets_pb2.Dataset(source=nats, active=True))
    admin.datasets.create(tenant, "fw", datasets_pb2.Dataset(source=nats, data_hint="syslog", active=True))
    admin.datasets.create(tenant, "off", datasets_pb2.Dataset(source=nats, active=False))
    _, agent_key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
    writer, writer_key = admin.keys.create(common_pb2.ROLE_EDITOR, tenant=tenant)
    made = Site(control_plane, admin, tmp_path, tenant, agent_key, writer_key, writer.name)
    yield made
    for agent in made.started:
        agent.kill()


# -- tests --------------------------------------------------------------------------------------


def test_refusals_have_exact_status_and_json_body(site: Site, uid: Callable[[str], str]) -> None:
    t = site.tenant
    other = uid("other")
    site.admin.tenants.create(other)
    _, other_key = site.admin.keys.create(common_pb2.ROLE_EDITOR, tenant=other)
    suspended = uid("susp")
    site.admin.tenants.create(suspended)
    site.admin.tenants.update(
        tenants_pb2.Tenant(name=f"tenants/{suspended}", state=tenants_pb2.Tenant.STATE_SUSPENDED), ["state"]
    )
    rcv = site.receiver("rcv-refusals", "--max-body-bytes", "65536")
    hook = site.wait_configured(rcv)

    def refused(path: str, body: bytes, headers: Headers, status: int, *, code: str, message: str = "") -> Headers:
        got, resp_headers, doc = post(hook, path, body, headers)
        assert (got, doc["error"]["code"], doc["error"]["status"]) == (status, code, status), doc
        assert resp_headers["content-type"].startswith("application/json")
        assert message in doc["error"]["message"] and doc["error"]["message"].endswith("."), doc
        return resp_headers

    line = b'{"msg": "hello"}\n'
    prefix = "_".join(site.writer_key.split("_", 3)[:3])
    wrong_secret = f"{prefix}_{'A' * 43}"
    hdrs = refused(f"/{t}/logs", line, {}, 401, code="missing_credentials", message="Authorization: Bearer")
    assert hdrs["www-authenticate"].startswith("Bearer")
    refused(f"/{t}/logs", line, {"Authorization": "Basic dXNlcjpwdw=="}, 401, code="missing_credentials")
    refused(f"/{t}/logs", line, site.auth("floe_s_nokey_" + "x" * 43), 401, code="invalid_key")
    refused(f"/{t}/logs", line, site.auth("not-a-floe-key"), 401, code="invalid_key")
    refused(f"/{t}/logs", line, site.auth(wrong_secret), 401, code="invalid_key")
    refused(f"/{t}/logs", line, site.auth(other_key), 401, code="wrong_tenant", message=repr(t))
    # Authenticated first: only a key holder learns what exists.
    refused(f"/no-such-{t}/logs", line, site.auth(), 401, code="wrong_tenant")
    refused(f"/no-such-{t}/logs", line, site.auth(site.agent_key), 410, code="unknown_tenant", message=f"no-such-{t}")
    refused(f"/{suspended}/logs", line, site.auth(site.agent_key), 410, code="tenant_suspended", message="suspended")
    refused(f"/{t}/nope", line, site.auth(), 404, code="unknown_dataset", message="'nope'")
    refused(f"/webhook/{t}/off", line, site.auth(), 404, code="dataset_inactive", message="inactive")
    refused(f"/{t}/logs", b"x" * 65537, site.auth(), 413, code="body_too_large", message="65536")
    gz, zs, auth = {**site.auth(), "Content-Encoding": "gzip"}, {**site.auth(), "Content-Encoding": "zstd"}, site.auth()
    refused(f"/{t}/logs", b"not gzip at all, no", gz, 400, code="bad_encoding", message="gzip")
    bad_gzip = b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"\xff" * 30
    refused(f"/{t}/logs", bad_gzip, gz, 400, code="bad_encoding", message="gzip")
    refused(f"/{t}/logs", b"\x28\xb5\x2f\xfd\x08" + b"\x00" * 20, zs, 400, code="bad_encoding", message="reserved")
    refused(f"/{t}/logs", line, {**auth, "Content-Encoding": "br"}, 415, code="unsupported_encoding", message="'br'")
    refused(f"/{t}/logs", b"", auth, 400, code="empty_body")
    for header, value, words in [
        ("X-Floe-Record-Count", "-1", "X-Floe-Record-Count"),
        ("X-Floe-Created-At", "1700000000", "nanoseconds"),
        ("X-Floe-Data-Hint", "../x", "X-Floe-Data-Hint"),
        ("X-Floe-Batch-Id", "has space", "X-Floe-Batch-Id"),
    ]:
        refused(f"/{t}/logs", line, {**auth, header: value}, 400, code="invalid_header", message=words)

    # A body over the limit without a Content-Length is cut off as it streams (curl, chunked).
    out = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-H", "Transfer-Encoding: chunked",
         "-H", f"Authorization: Bearer {site.writer_key}",
         "--data-binary", "@-", "-w", "\n%{http_code}", f"http://{hook}/{t}/logs"],
        input=b"y" * 200_000, capture_output=True, check=True,
    )  # fmt: skip
    doc_text, code = out.stdout.decode().rsplit("\n", 1)
    assert code == "413" and json.loads(doc_text)["error"]["code"] == "body_too_large"

    # Expect: 100-continue: refused before the body is sent.
    out = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-H", "Expect: 100-continue",
         "-H", "Authorization: Bearer floe_s_x_" + "y" * 40, "--data-binary", "@-", "-w", "\n%{http_code}", f"http://{hook}/{t}/logs"],
        input=b"z" * 50_000, capture_output=True, check=True,
    )  # fmt: skip
    doc_text, code = out.stdout.decode().rsplit("\n", 1)
    assert code == "401" and json.loads(doc_text)["error"]["code"] == "invalid_key"

    dropped = rcv.component("ingest")["dropped"]
    assert int(dropped["invalid_key"]) >= 4 and int(dropped["unknown_tenant"]) == 1
    assert not objects(site.tmp / "objects", suspended)


def test_good_batches_land_in_the_store_with_their_names_and_metadata(site: Site) -> None:
    t = site.tenant
    rcv = site.receiver("rcv-good")
    hook = site.wait_configured(rcv)
    root = site.tmp / "objects"
    records = b"".join(b'{"n": %d, "msg": "hello"}\n' % i for i in range(1000))
    created = time.time_ns()
    sent = {
        "gz": (gzip.compress(records), "gzip", "b-gzip"),
        "zst": (zstd(records), "zstd", "b-zstd"),
    }
    expected: dict[str, tuple[str, str]] = {}
    for ext, (body, encoding, batch_id) in sent.items():
        headers = {
            **site.auth(),
            "Content-Encoding": encoding,
            "X-Floe-Batch-Id": batch_id,
            "X-Floe-Created-At": str(created),
            "X-Floe-Record-Count": "1000",
            "X-Floe-Original-Bytes": str(len(records)),
            "X-Floe-Data-Hint": "ndjson",
        }
        status, _, doc = post(hook, f"/{t}/logs", body, headers)
        assert (status, doc) == (200, {"batch_id": batch_id})
        expected[expected_key(t, "logs", batch_id, created, hint="ndjson", ext=ext)] = (encoding, batch_id)
    # Identity, no batch headers, on the /webhook path: the dataset's hint, a receiver-chosen id, zstd at upload.
    status, _, doc = post(hook, f"/webhook/{t}/fw", records, {**site.auth(), "Content-Type": "text/plain"})
    assert status == 200 and doc["batch_id"].startswith("rcv-good-")
    identity_id = doc["batch_id"]

    def stored() -> dict[str, Path]:
        found = objects(root, t)
        return found if len(found) >= 4 else {}  # with wait_configured's probe

    found = eventually(stored, timeout=20)
    for key, (encoding, batch_id) in expected.items():
        assert key in found, (key, sorted(found))
        assert body_of(found[key]) == records
        meta = metadata(root, key)
        assert meta == {
            "batch-id": batch_id,
            "records": "1000",
            "original-bytes": str(len(records)),
            "created-at": str(created // 1000 * 1000),
            "content-encoding": encoding,
            "data-hint": "ndjson",
            "tenant": t,
            "dataset": "logs",
            "receiver": "rcv-good",
        }
    fw = [k for k in found if k.startswith(f"{t}/fw/")]
    assert len(fw) == 1 and re.fullmatch(rf"{t}/fw/{t}--fw--\d{{19}}--syslog\.zst", fw[0])
    assert body_of(found[fw[0]]) == records
    meta = metadata(root, fw[0])
    assert meta["batch-id"] == identity_id and meta["content-encoding"] == "zstd"
    assert meta["original-bytes"] == str(len(records)) and meta["records"] == "0"

    # The same batch again (a proxy's retry) is stored under the same name, not twice.
    body, encoding, batch_id = sent["gz"]
    headers = {
        **site.auth(),
        "Content-Encoding": "gzip",
        "X-Floe-Batch-Id": batch_id,
        "X-Floe-Created-At": str(created),
    }
    assert post(hook, f"/{t}/logs", body, headers)[0] == 200
    eventually(lambda: figure(rcv, "upload", "events_out") >= 5 and figure(rcv, "spool", "backlog") == 0)
    assert len(objects(root, t)) == len(found)

    upload = rcv.component("upload")
    assert upload["status"] == "HEALTH_STATUS_HEALTHY" and int(upload["bytes_out"]) > 0
    assert figure(rcv, "ingest", "events_in") >= 5


def test_revoked_key_stops_working_with_the_config_update(site: Site) -> None:
    rcv = site.receiver("rcv-revoke")
    hook = site.wait_configured(rcv)
    path = f"/{site.tenant}/logs"
    assert post(hook, path, b"{}\n", site.auth())[0] == 200
    site.admin.keys.revoke(site.writer_name)

    def refused() -> bool:
        status, _, doc = post(hook, path, b"{}\n", site.auth())
        return status == 401 and doc["error"]["code"] == "invalid_key"

    eventually(refused, timeout=15)
    # Other keys are unaffected.
    assert post(hook, path, b"{}\n", site.auth(site.agent_key))[0] == 200


def test_dlq_api_and_retry_command(site: Site, tmp_path: Path) -> None:
    # A store path that cannot hold objects: a key's directory is a plain file there, so every
    # upload of dataset "logs" is refused for good and dead-lettered at once.
    store = tmp_path / "blocked"
    store.mkdir()
    (store / site.tenant).write_text("not a directory")
    rcv = site.receiver("rcv-dlq", store=store)
    hook = site.wait_configured(rcv)  # its probe batch goes to the DLQ too
    assert post(hook, f"/{site.tenant}/logs", b'{"a": 1}\n', site.auth())[0] == 200

    def dead() -> list[dict[str, Any]]:
        files = http_get(rcv.api, f"/api/v1/dlq/files?tenant={site.tenant}")[1]["files"]
        return list(files) if len(files) >= 2 else []

    files = eventually(dead, timeout=20)
    assert {f["dataset"] for f in files} == {"logs"} and all("prefix" in f["reason"] for f in files)
    status, stats = http_get(rcv.api, "/api/v1/dlq/stats")
    assert status == 200 and stats["dlq"]["files"] == len(files)
    assert figure(rcv, "spool", "dlq_size") == len(files)

    # Fix the store, then retry one batch over HTTP and the rest with the control-plane command.
    (store / site.tenant).unlink()
    status, _, doc = post(rcv.api, "/api/v1/dlq/retry", json.dumps({"ids": [files[0]["id"]]}).encode())
    assert (status, doc) == (200, {"moved": 1})
    status, _, doc = post(rcv.api, "/api/v1/dlq/retry", json.dumps({"ids": ["nope"]}).encode())
    assert status == 400 and doc["error"]["code"] == "INVALID_ARGUMENT"
    result = site.admin.agents.send_command(
        "agents/rcv-dlq", agent_pb2.Command(retry_dlq=agent_pb2.RetryDlq()), wait_seconds=10
    )
    assert result.ok and result.details["moved"] == str(len(files) - 1), result
    eventually(lambda: len(objects(store, site.tenant)) == len(files), timeout=20)
    assert http_get(rcv.api, "/api/v1/dlq/stats")[1]["dlq"]["files"] == 0


def test_memory_ack_answers_202_and_still_uploads(site: Site) -> None:
    rcv = site.receiver("rcv-memory", "--ack", "memory")
    webhook = rcv.addresses["webhook"]

    def accepted() -> bool:
        return post(webhook, f"/{site.tenant}/logs", b'{"m": 1}\n', site.auth())[0] == 202

    eventually(accepted, timeout=20)
    eventually(lambda: len(objects(site.tmp / "objects", site.tenant)) >= 1, timeout=20)


def test_local_only_receiver_takes_its_datasets_and_ingest_key_from_the_config_file(tmp_path: Path) -> None:
    key = "floe_s_local_" + "k" * 43
    config = tmp_path / "receiver.yaml"
    config.write_text(
        json.dumps(
            {
                "ingest_key": key,
                "datasets": [{"name": "tenants/edge/datasets/logs", "active": True, "data_hint": "ndjson"}],
            }
        )
    )
    store = tmp_path / "objects"
    agent = AgentProcess(
        "receiver",
        "local-receiver",
        tmp_path / "agents",
        "--config", str(config),
        "--webhook-listen", "127.0.0.1:0",
        "--object-store", str(store),
        config_mode="local-only",
    ).start()  # fmt: skip
    try:
        webhook = agent.addresses["webhook"]
        auth = {"Authorization": f"Bearer {key}"}
        eventually(lambda: post(webhook, "/edge/logs", b'{"n": 1}\n', auth)[0] == 200, timeout=15)
        status, _, body = post(webhook, "/edge/logs", b'{"n": 2}\n', {"Authorization": "Bearer floe_s_x_" + "y" * 43})
        assert (status, body["error"]["code"]) == (401, "invalid_key")
        status, _, body = post(webhook, "/edge/other", b'{"n": 3}\n', auth)
        assert status == 404
        eventually(lambda: len(objects(store, "edge")) >= 1, timeout=20)
    finally:
        agent.stop()


def test_local_only_receiver_without_ingest_key_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "receiver.yaml"
    config.write_text(json.dumps({"datasets": [{"name": "tenants/edge/datasets/logs", "active": True}]}))
    agent = AgentProcess(
        "receiver", "bad-receiver", tmp_path / "agents", "--config", str(config), config_mode="local-only"
    )
    with pytest.raises(AssertionError) as err:
        agent.start(timeout=15)
    assert "ingest_key" in str(err.value)


def test_two_receivers_side_by_side_share_nothing_but_the_store(site: Site) -> None:
    """Two receivers on one store, each with its own spool: batches posted to both (without
    batch headers, so each receiver names them itself) all land, none overwrites another."""
    hooks = [site.wait_configured(site.receiver(f"rcv-side-{i}")) for i in range(2)]
    root = site.tmp / "objects"
    before = set(objects(root, site.tenant))
    for i in range(40):
        status, _, _ = post(hooks[i % 2], f"/{site.tenant}/logs", b'{"n": %d}\n' % i, site.auth())
        assert status == 200

    def stored() -> list[int]:
        found = []
        for key, path in objects(root, site.tenant).items():
            if key in before or ".meta" in key:
                continue
            records = [json.loads(line) for line in unzstd(path.read_bytes()).splitlines() if line.strip()]
            found += [r["n"] for r in records if "n" in r]  # not the readiness probes' {}
        return sorted(found)

    assert eventually(lambda: stored() == list(range(40)), timeout=30)
