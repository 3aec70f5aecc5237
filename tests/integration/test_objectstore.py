"""The object store on a local directory and on a real S3 server (SeaweedFS on loopback)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agents.runtime.objectstore import (
    LocalStore,
    MiB,
    NotFound,
    ObjectStore,
    ObjectStoreError,
    S3Settings,
    S3Store,
    open_object_store,
)
from tests.integration.s3server import S3Server, s3_server

__all__ = ["s3_server"]  # the session fixture, imported so pytest finds it

BUCKET = "floe-objstore-test"
OpenStore = Callable[..., AbstractAsyncContextManager[ObjectStore]]


def run(scenario: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await scenario

    return asyncio.run(main())


@pytest.fixture(params=["local", "s3"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """``async with open_store() as store``: a fresh, empty store of each kind."""
    server: S3Server | None = request.getfixturevalue("s3_server") if request.param == "s3" else None

    @asynccontextmanager
    async def opened(**s3_options: Any) -> AsyncIterator[ObjectStore]:
        """``s3_options`` are extra ``S3Settings`` fields; the local store has none and ignores them."""
        store: LocalStore | S3Store
        if server is None:
            store = LocalStore(tmp_path / "objects")
        else:
            settings = S3Settings(
                bucket=BUCKET,
                endpoint_url=server.endpoint,
                prefix=f"t-{uuid.uuid4().hex[:12]}",
                access_key_id=server.access_key_id,
                secret_access_key=server.secret_access_key,
                create_bucket=True,
                **s3_options,
            )
            store = await S3Store.connect(settings)
        async with store:
            yield store

    yield opened


def test_put_get_head_round_trip(open_store: OpenStore) -> None:
    async def scenario() -> None:
        async with open_store() as store:
            data = b"line one\nline two\n"
            etag = await store.put(
                "acme/fw/one.gz",
                data,
                metadata={"records": "2", "data-hint": "syslog"},
                content_type="application/gzip",
            )
            assert await store.get("acme/fw/one.gz") == data
            info = await store.head("acme/fw/one.gz")
            assert info is not None
            assert info.key == "acme/fw/one.gz"
            assert info.size == len(data)
            assert info.etag == etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
            assert info.metadata == {"records": "2", "data-hint": "syslog"}
            assert info.content_type == "application/gzip"
            assert info.last_modified.tzinfo is not None

            # A second put replaces content and metadata.
            await store.put("acme/fw/one.gz", b"new", metadata={"records": "1"})
            assert await store.get("acme/fw/one.gz") == b"new"
            info = await store.head("acme/fw/one.gz")
            assert info is not None
            assert info.metadata == {"records": "1"}
            assert info.size == 3

    run(scenario())


def test_put_file_small(open_store: OpenStore, tmp_path: Path) -> None:
    source = tmp_path / "small.gz"
    source.write_bytes(b"\x1f\x8b small")

    async def scenario() -> None:
        async with open_store() as store:
            etag = await store.put_file(
                "acme/fw/small.gz", source, metadata={"k": "v"}, content_type="application/gzip"
            )
            assert await store.get("acme/fw/small.gz") == source.read_bytes()
            info = await store.head("acme/fw/small.gz")
            assert info is not None
            assert (info.etag, info.metadata, info.content_type) == (etag, {"k": "v"}, "application/gzip")

    run(scenario())


def test_missing_objects(open_store: OpenStore) -> None:
    async def scenario() -> None:
        async with open_store() as store:
            assert await store.head("acme/none") is None
            with pytest.raises(NotFound, match="acme/none"):
                await store.get("acme/none")
            with pytest.raises(NotFound, match="acme/none"):
                await store.get_range("acme/none", 0, 10)
            with pytest.raises(NotFound, match="acme/none"):
                await store.copy("acme/none", "acme/other")

    run(scenario())


def test_list_is_sorted_filtered_and_paginated(open_store: OpenStore) -> None:
    # '-' sorts before '/', so key order differs from a directory walk's order.
    keys = ["b/1", "a/b/2", "a/b/1", "a-b/x", "a/c/d/e", "a/b1", "ab"]

    async def scenario() -> None:
        async with open_store() as store:
            await asyncio.gather(*(store.put(k, k.encode()) for k in keys))
            listed = [o.key for o in await store.list()]
            assert sorted(listed) == sorted(keys)
            if isinstance(store, LocalStore):
                assert listed == sorted(keys)  # byte order, as on AWS S3
            else:
                # SeaweedFS compares path segments, so 'a/b/1' comes before 'a-b/x'; AWS uses byte order.
                assert listed in (sorted(keys), sorted(keys, key=lambda k: k.split("/")))

            assert [o.key for o in await store.list("a/")] == ["a/b/1", "a/b/2", "a/b1", "a/c/d/e"]
            assert [o.key for o in await store.list("a/b")] == ["a/b/1", "a/b/2", "a/b1"]
            assert [o.key for o in await store.list("a/b/")] == ["a/b/1", "a/b/2"]
            assert await store.list("zzz") == []
            with pytest.raises(ValueError, match="limit"):
                await store.list(limit=0)
            infos = await store.list("a/b/")
            assert [o.size for o in infos] == [5, 5]

            # Paging with the last key as start_after visits every match once, in listing order.
            pages: list[list[str]] = []
            after = ""
            while page := await store.list("a", start_after=after, limit=2):
                pages.append([o.key for o in page])
                after = page[-1].key
            assert [len(p) for p in pages] == [2, 2, 2]
            assert [k for p in pages for k in p] == [k for k in listed if k.startswith("a")]

    run(scenario())


def test_delete_is_idempotent(open_store: OpenStore) -> None:
    async def scenario() -> None:
        async with open_store() as store:
            await store.put("acme/fw/x", b"x", metadata={"k": "v"})
            await store.put("acme/fw/y", b"y")
            await store.delete("acme/fw/x")
            await store.delete("acme/fw/x")
            await store.delete("never/was")
            assert await store.head("acme/fw/x") is None
            assert [o.key for o in await store.list()] == ["acme/fw/y"]
            # A new object at the deleted key starts without the old metadata.
            await store.put("acme/fw/x", b"again")
            info = await store.head("acme/fw/x")
            assert info is not None
            assert info.metadata == {}

    run(scenario())


def test_copy_and_range(open_store: OpenStore) -> None:
    async def scenario() -> None:
        async with open_store() as store:
            await store.put("src/a", b"0123456789", metadata={"origin": "test"}, content_type="text/plain")
            await store.copy("src/a", "dst/a")
            assert await store.get("dst/a") == b"0123456789"
            info = await store.head("dst/a")
            assert info is not None
            assert info.metadata == {"origin": "test"}
            assert await store.get_range("src/a", 2, 3) == b"234"
            assert await store.get_range("src/a", 8, 100) == b"89"
            assert await store.get_range("src/a", 20, 5) == b""

    run(scenario())


def test_large_object_uses_multipart(open_store: OpenStore, tmp_path: Path) -> None:
    data = os.urandom(20 * MiB + 123)
    source = tmp_path / "big.bin"
    source.write_bytes(data)

    async def scenario() -> None:
        async with open_store(multipart_threshold=5 * MiB, part_size=5 * MiB) as store:
            await store.put("big/from-bytes", data, metadata={"parts": "many"})
            await store.put_file("big/from-file", source)
            for key in ("big/from-bytes", "big/from-file"):
                assert await store.get(key) == data
                info = await store.head(key)
                assert info is not None
                assert info.size == len(data)
            info = await store.head("big/from-bytes")
            assert info is not None
            assert info.metadata == {"parts": "many"}
            if isinstance(store, S3Store):
                # A multipart ETag is "<md5 of part md5s>-<part count>": 20 MiB + 123 B in 5 MiB parts is 5 parts.
                assert info.etag.endswith("-5")

    run(scenario())


@pytest.mark.parametrize(
    "key",
    ["", "/abs", "a//b", "a/", "a/../b", "..", "../../etc/passwd", "a/./b", "nul\x00byte"],
)
def test_bad_keys_are_rejected(open_store: OpenStore, key: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with open_store() as store:
            with pytest.raises(ValueError, match="Object key") as err:
                await store.put(key, b"x")
            assert repr(key) in str(err.value)
            for call in (store.get(key), store.head(key), store.delete(key), store.copy("ok", key)):
                with pytest.raises(ValueError, match="Object key"):
                    await call

    run(scenario())
    assert not (tmp_path.parent / "etc").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) in (["objects"], [])


def test_concurrent_puts_to_different_keys(open_store: OpenStore) -> None:
    async def scenario() -> None:
        async with open_store() as store:
            payloads = {f"acme/fw/{i:03d}": os.urandom(1000 + i) for i in range(40)}
            await asyncio.gather(*(store.put(k, v) for k, v in payloads.items()))
            got = await asyncio.gather(*(store.get(k) for k in payloads))
            assert dict(zip(payloads, got, strict=True)) == payloads
            assert [o.key for o in await store.list("acme/")] == sorted(payloads)

    run(scenario())


def test_metadata_names_are_checked(open_store: OpenStore) -> None:
    async def scenario() -> None:
        async with open_store() as store:
            with pytest.raises(ValueError, match="'Records'"):
                await store.put("k", b"", metadata={"Records": "1"})
            with pytest.raises(ValueError, match="'hint'"):
                await store.put("k", b"", metadata={"hint": "caf\u00e9"})
            assert await store.head("k") is None

    run(scenario())


# --------------------------------------------------------------------------------------------
# Local store only


def test_local_readers_never_see_partial_objects(tmp_path: Path) -> None:
    small, large = b"A" * MiB, b"B" * (4 * MiB)

    async def scenario() -> None:
        store = LocalStore(tmp_path)
        await store.put("acme/fw/obj", small)
        stop = asyncio.Event()

        async def writer() -> None:
            for i in range(20):
                await store.put("acme/fw/obj", large if i % 2 else small)
            stop.set()

        async def reader() -> int:
            reads = 0
            while not stop.is_set():
                assert await store.get("acme/fw/obj") in (small, large)
                assert [o.key for o in await store.list()] == ["acme/fw/obj"]
                reads += 1
            return reads

        _, reads = await asyncio.gather(writer(), reader())
        assert reads > 0
        # A put that fails half-way leaves nothing behind, in the tree or in the staging area.
        with pytest.raises(FileNotFoundError):
            await store.put_file("acme/fw/failed", tmp_path / "does-not-exist")
        assert await store.head("acme/fw/failed") is None
        assert list((tmp_path / ".tmp").iterdir()) == []
        assert [o.key for o in await store.list()] == ["acme/fw/obj"]

    run(scenario())


def test_local_layout_and_conflicts(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalStore(tmp_path)
        await store.put("acme/fw/file.gz", b"data", metadata={"k": "v"})
        assert (tmp_path / "acme/fw/file.gz").read_bytes() == b"data"
        assert (tmp_path / ".meta/acme/fw/file.gz.json").is_file()
        with pytest.raises(ValueError, match="reserves"):
            await store.put(".meta/x", b"")
        # A file cannot also be a directory: the second put says so and leaves no stray metadata.
        with pytest.raises(ObjectStoreError, match="prefix"):
            await store.put("acme/fw/file.gz/inner", b"")
        assert not (tmp_path / ".meta/acme/fw/file.gz/inner.json").exists()
        # Deleting the last object under a prefix removes the empty directories.
        await store.delete("acme/fw/file.gz")
        assert not (tmp_path / "acme").exists()
        assert not (tmp_path / ".meta/acme").exists()
        # Files dropped in by hand are objects too.
        (tmp_path / "manual").write_bytes(b"hand")
        info = await store.head("manual")
        assert info is not None
        assert info.size == 4
        assert info.etag
        await store.check()

    run(scenario())


def test_open_object_store_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        store = await open_object_store(f"file://{tmp_path}/abs")
        assert isinstance(store, LocalStore)
        assert store.root == tmp_path / "abs"
        monkeypatch.chdir(tmp_path)
        store = await open_object_store("rel/dir")
        assert isinstance(store, LocalStore)
        assert store.root == tmp_path / "rel/dir"
        for bad in ("ftp://x/y", "file://host/x", "s3://bucket?colour=red", "s3://bucket?path_style=maybe"):
            with pytest.raises(ValueError, match="Object store"):
                await open_object_store(bad)

    run(scenario())


# --------------------------------------------------------------------------------------------
# S3 only


def test_s3_url_uses_environment_credentials_and_prefix(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    prefix = f"url-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        url = f"s3://{BUCKET}/{prefix}/raw?endpoint={s3_server.endpoint}&region=us-east-1&path_style=true&create_bucket=true"
        store = await open_object_store(url)
        try:
            assert isinstance(store, S3Store)
            assert store.settings.prefix == f"{prefix}/raw"
            await store.put("acme/x", b"x")
            await store.check()
        finally:
            await store.close()
        plain = await S3Store.connect(
            S3Settings(
                bucket=BUCKET,
                endpoint_url=s3_server.endpoint,
                access_key_id=s3_server.access_key_id,
                secret_access_key=s3_server.secret_access_key,
            )
        )
        async with plain:
            assert [o.key for o in await plain.list(f"{prefix}/")] == [f"{prefix}/raw/acme/x"]

    run(scenario())


def test_s3_wrong_credentials_give_a_sentence_without_the_secret(s3_server: S3Server) -> None:
    secret = "not-the-right-secret-8d2e"
    settings = S3Settings(
        bucket=BUCKET,
        endpoint_url=s3_server.endpoint,
        access_key_id=s3_server.access_key_id,
        secret_access_key=secret,
        max_attempts=1,
    )
    assert secret not in repr(settings)

    async def scenario() -> None:
        async with await S3Store.connect(settings) as store:
            assert secret not in repr(store)
            with pytest.raises(ObjectStoreError) as err:
                await store.put("acme/fw/x", b"x")
            message = str(err.value)
            assert secret not in message
            assert s3_server.endpoint in message
            assert BUCKET in message
            assert "acme/fw/x" in message
            assert s3_server.access_key_id in message
            assert "Check the access key id" in message
            with pytest.raises(ObjectStoreError) as err:
                await store.check()
            assert secret not in str(err.value)

    run(scenario())


def test_s3_missing_bucket_is_created_only_when_asked(s3_server: S3Server) -> None:
    bucket = f"floe-missing-{uuid.uuid4().hex[:8]}"

    def settings(create: bool) -> S3Settings:
        return S3Settings(
            bucket=bucket,
            endpoint_url=s3_server.endpoint,
            access_key_id=s3_server.access_key_id,
            secret_access_key=s3_server.secret_access_key,
            create_bucket=create,
        )

    async def scenario() -> None:
        async with await S3Store.connect(settings(create=False)) as store:
            with pytest.raises(ObjectStoreError, match=f"Bucket '{bucket}' does not exist") as err:
                await store.check()
            assert not isinstance(err.value, NotFound)
            with pytest.raises(ObjectStoreError, match=bucket):
                await store.put("x", b"x")
        async with await S3Store.connect(settings(create=True)) as store:
            await store.check()
            await store.put("x", b"x")
        # Asking again for a bucket that exists is fine.
        async with await S3Store.connect(settings(create=True)) as store:
            assert await store.get("x") == b"x"

    run(scenario())


def test_s3_failed_multipart_upload_is_aborted(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    settings = S3Settings(
        bucket=BUCKET,
        endpoint_url=s3_server.endpoint,
        prefix=f"abort-{uuid.uuid4().hex[:8]}",
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
        create_bucket=True,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
    )

    async def scenario() -> None:
        async with await S3Store.connect(settings) as store:
            client = store._client
            real_upload_part = client.upload_part

            async def flaky_upload_part(**kwargs: Any) -> Any:
                if kwargs["PartNumber"] == 3:
                    raise ClientError({"Error": {"Code": "InternalError", "Message": "Injected."}}, "UploadPart")
                return await real_upload_part(**kwargs)

            monkeypatch.setattr(client, "upload_part", flaky_upload_part)
            with pytest.raises(ObjectStoreError, match="upload part 3") as err:
                await store.put("acme/big", os.urandom(16 * MiB))
            assert "Injected." in str(err.value)
            assert await store.head("acme/big") is None
            uploads = await client.list_multipart_uploads(Bucket=BUCKET, Prefix=settings.prefix)
            assert uploads.get("Uploads", []) == []

    run(scenario())


def test_s3_unreachable_endpoint_is_a_sentence() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = S3Settings(
        bucket=BUCKET,
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id="id",
        secret_access_key="unreachable-secret",
        max_attempts=1,
        connect_timeout=1,
    )

    async def scenario() -> None:
        store = await open_object_store(settings)
        try:
            with pytest.raises(ObjectStoreError, match=f"Cannot store an object .* on S3 at http://127.0.0.1:{port}"):
                await store.put("acme/x", b"x")
        finally:
            await store.close()

    run(scenario())


def test_s3_settings_report_every_bad_field() -> None:
    with pytest.raises(ValueError) as err:
        S3Settings(bucket="b", endpoint_url="127.0.0.1:8333", access_key_id="only-id", part_size=MiB)
    message = str(err.value)
    for name in ("bucket", "endpoint_url", "secret_access_key", "part_size"):
        assert name in message
