"""The receiver against a real S3 server (SeaweedFS, credentials enforced): batches land with
their names and metadata; while S3 is unreachable, acks continue into the spool until it is full
(then 503 with Retry-After), and when S3 is back the backlog drains.

S3 goes down by closing a TCP relay in front of SeaweedFS (connections refused), since the
session's SeaweedFS is shared with other tests."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.helpers import eventually
from tests.integration.s3server import S3Server, s3_server
from tests.integration.test_receiver_ingest import Site, expected_key, figure, post, site

__all__ = ["s3_server", "site"]  # fixtures, imported so pytest finds them

BUCKET = "floe-receiver-test"


class Relay:
    """A loopback TCP relay to ``target`` that can be taken down (refusing connections) and back up."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone would leave it accepting.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay(s3_server: S3Server) -> Iterator[Relay]:
    host, port = s3_server.endpoint.removeprefix("http://").rsplit(":", 1)
    r = Relay((host, int(port)))
    r.up()
    yield r
    r.down()


def s3_client(server: S3Server) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key,
        config=Config(s3={"addressing_style": "path"}),
    )


def s3_keys(client: Any, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def start_s3_receiver(site: Site, server: S3Server, endpoint: str, prefix: str, *extra: str) -> Any:
    env = {"AWS_ACCESS_KEY_ID": server.access_key_id, "AWS_SECRET_ACCESS_KEY": server.secret_access_key}
    url = f"s3://{BUCKET}/{prefix}?endpoint={endpoint}&create_bucket=true"
    return site.receiver(f"rcv-s3-{prefix[-6:]}", "--object-store", url, *extra, env=env)


def test_batches_land_in_s3_with_metadata(site: Site, s3_server: S3Server) -> None:
    prefix = f"intake-{uuid.uuid4().hex[:8]}"
    rcv = start_s3_receiver(site, s3_server, s3_server.endpoint, prefix)
    hook = site.wait_configured(rcv)
    records = b"".join(b'{"i": %d}\n' % i for i in range(500))
    created = time.time_ns()
    headers = {
        **site.auth(),
        "Content-Encoding": "gzip",
        "X-Floe-Batch-Id": "s3-batch-1",
        "X-Floe-Created-At": str(created),
        "X-Floe-Record-Count": "500",
    }
    assert post(hook, f"/{site.tenant}/logs", gzip.compress(records), headers)[0] == 200
    key = f"{prefix}/" + expected_key(site.tenant, "logs", "s3-batch-1", created, hint="ndjson", ext="gz")
    client = s3_client(s3_server)
    eventually(lambda: key in s3_keys(client, f"{prefix}/"), timeout=20)
    obj = client.get_object(Bucket=BUCKET, Key=key)
    assert gzip.decompress(obj["Body"].read()) == records
    assert obj["ContentType"] == "application/gzip"
    meta = obj["Metadata"]
    assert (meta["batch-id"], meta["records"], meta["created-at"]) == ("s3-batch-1", "500", str(created // 1000 * 1000))
    assert meta["receiver"] == rcv.name and meta["content-encoding"] == "gzip"


def test_s3_outage_fills_the_spool_then_drains(site: Site, s3_server: S3Server, relay: Relay) -> None:
    prefix = f"outage-{uuid.uuid4().hex[:8]}"
    rcv = start_s3_receiver(
        site,
        s3_server,
        f"http://127.0.0.1:{relay.port}",
        prefix,
        "--spool-max-bytes",
        str(256 * 1024),
        "--retry-interval",
        "1s",
    )
    hook = site.wait_configured(rcv)
    client = s3_client(s3_server)
    eventually(lambda: len(s3_keys(client, f"{prefix}/")) == 1, timeout=20)
    relay.down()

    body = b"x" * (40 * 1024)  # identity: 40 KiB each, six fit in 256 KiB
    acked: list[str] = []
    refusal: tuple[int, dict[str, str], Any] | None = None
    deadline = time.monotonic() + 30
    while refusal is None:
        assert time.monotonic() < deadline, f"no 503 after {len(acked)} acks"
        status, headers, doc = post(hook, f"/{site.tenant}/logs", body, site.auth())
        if status == 200:
            acked.append(doc["batch_id"])
        else:
            refusal = (status, headers, doc)
    status, headers, doc = refusal
    assert status == 503 and doc["error"]["code"] == "spool_full" and int(headers["retry-after"]) > 0
    assert len(acked) == 6, acked

    def degraded() -> dict[str, Any]:
        up = rcv.component("upload")
        return up if up["status"] == "HEALTH_STATUS_DEGRADED" and int(up.get("errors", 0)) > 0 else {}

    up = eventually(degraded, timeout=20)
    assert "uploads are failing" in up["message"]
    assert rcv.healthz()["status"] == "degraded"
    assert figure(rcv, "spool", "backlog") == 6 and figure(rcv, "spool", "dlq_size") == 0

    relay.up()
    eventually(lambda: len(s3_keys(client, f"{prefix}/")) == 7, timeout=30)
    eventually(lambda: figure(rcv, "spool", "backlog") == 0, timeout=10)
    eventually(lambda: rcv.component("upload")["status"] == "HEALTH_STATUS_HEALTHY", timeout=10)
    assert post(hook, f"/{site.tenant}/logs", body, site.auth())[0] == 200
    stored = {client.head_object(Bucket=BUCKET, Key=k)["Metadata"]["batch-id"] for k in s3_keys(client, f"{prefix}/")}
    assert set(acked) <= stored
