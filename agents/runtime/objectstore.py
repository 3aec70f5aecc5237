"""Object storage for the data path: one small interface (``ObjectStore``) with two
implementations, a local directory (the embedded default) and S3 through ``aioboto3``.

Keys are ``/``-separated and checked the same way by both stores, so a key that works on one
works on the other. A put is atomic on both: a reader sees the old object, the new one, or none,
never part of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "LocalStore",
    "MiB",
    "NotFound",
    "ObjectInfo",
    "ObjectStore",
    "ObjectStoreError",
    "S3Settings",
    "S3Store",
    "open_object_store",
    "validate_key",
]

MiB = 1024 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_MAX_KEY_BYTES = 1024
_META_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


class ObjectStoreError(Exception):
    """Raised when the object store cannot do what was asked (unreachable, denied, misconfigured)."""


class NotFound(ObjectStoreError):
    """Raised when the requested object does not exist."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows about one object."""

    #: The key, without any store prefix.
    key: str
    size: int
    #: Opaque; changes when the content changes. MD5 hex for single-part puts on both stores.
    etag: str
    last_modified: datetime
    #: User metadata. Listings do not carry it (S3 does not return it there): use ``head``.
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str = DEFAULT_CONTENT_TYPE


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid object key, else raise ``ValueError`` naming it."""
    problem = None
    if not key:
        problem = "is empty"
    elif "\x00" in key:
        problem = "contains a NUL character"
    elif key.startswith("/"):
        problem = "starts with '/'"
    elif any(part in ("", ".", "..") for part in key.split("/")):
        problem = "has an empty, '.' or '..' segment"
    elif len(key.encode()) > _MAX_KEY_BYTES:
        problem = f"is longer than {_MAX_KEY_BYTES} bytes"
    if problem:
        raise ValueError(f"Object key {key!r} {problem}; keys are '/'-separated names like 'tenant/dataset/file.gz'.")
    return key


def _validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    # S3 lowercases metadata names and mangles non-ASCII values; refusing them keeps both stores alike.
    out = dict(metadata or {})
    for name, value in out.items():
        if not name or not set(name) <= _META_CHARS:
            raise ValueError(f"Metadata name {name!r} must be lowercase ASCII letters, digits, '-' or '_'.")
        if not value.isascii() or any(ch in value for ch in "\r\n\x00"):
            raise ValueError(f"Metadata value for {name!r} must be printable ASCII on one line.")
    return out


class ObjectStore(Protocol):
    """Where agents keep objects. Every method may be cancelled; a cancelled put leaves no object."""

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> str:
        """Store ``data`` under ``key`` atomically, replacing any object there; return its etag."""
        ...

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> str:
        """Like ``put`` but streams the file at ``path``, so large files need not fit in memory."""
        ...

    async def get(self, key: str) -> bytes:
        """Return the object's content; raise ``NotFound`` if there is none."""
        ...

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return up to ``length`` bytes from offset ``start``; raise ``NotFound`` if there is none."""
        ...

    async def head(self, key: str) -> ObjectInfo | None:
        """Return the object's info with metadata, or None if there is no object."""
        ...

    async def list(self, prefix: str = "", *, start_after: str = "", limit: int = 1000) -> list[ObjectInfo]:
        """Return up to ``limit`` objects whose keys start with ``prefix`` and sort after ``start_after``,
        in key order. Page on by passing the last key returned as ``start_after``; every object is
        visited once.

        Key order is byte order on the local store and AWS; SeaweedFS compares path segments, which
        differs only where a key has a character below ``/`` (such as ``-`` or ``.``) where another has ``/``.
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is not an error."""
        ...

    async def copy(self, src: str, dst: str) -> None:
        """Copy an object with its metadata; raise ``NotFound`` if ``src`` is missing."""
        ...

    async def check(self) -> None:
        """Healthcheck: raise ``ObjectStoreError`` with a sentence if the store cannot be used."""
        ...

    async def close(self) -> None:
        """Release connections. The store must not be used afterwards."""
        ...


class _AsyncClosing:
    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


# --------------------------------------------------------------------------------------------
# Local directory


class LocalStore(_AsyncClosing):
    """Objects as files under ``root`` (``root/<key>``). Metadata lives in a parallel hidden tree
    (``root/.meta/<key>.json``) and writes are staged in ``root/.tmp/``, so neither shows up in
    listings. Blocking file I/O runs in worker threads.

    Unlike S3, a key cannot be both an object and a prefix of another (``a`` and ``a/b``): the
    second put raises ``ObjectStoreError``.
    """

    _RESERVED = (".meta", ".tmp")

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._meta = self.root / ".meta"
        self._tmp = self.root / ".tmp"
        for d in (self.root, self._meta, self._tmp):
            d.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        validate_key(key)
        if key.split("/", 1)[0] in self._RESERVED:
            raise ValueError(
                f"Object key {key!r} starts with a name the local store reserves ({', '.join(self._RESERVED)})."
            )
        return self.root / key

    def _meta_path(self, key: str) -> Path:
        return self._meta / (key + ".json")

    def _stage(self, fill: Callable[[Any], None]) -> Path:
        """Write a file in ``.tmp/`` and fsync it; the caller publishes or removes it."""
        tmp = self._tmp / f"{secrets.token_hex(8)}.part"
        try:
            with open(tmp, "wb") as f:
                fill(f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _publish(self, tmp: Path, dest: Path) -> None:
        # A concurrent delete may prune the parent directory between mkdir and rename: try again.
        for attempt in range(3):
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, dest)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
            except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
                raise ObjectStoreError(
                    f"Cannot store {str(dest.relative_to(self.root))!r}: in the local store a key cannot be both "
                    "an object and a prefix of other keys."
                ) from exc
        _fsync_dir(dest.parent)

    def _put_sync(self, key: str, fill: Callable[[Any, Any], None], metadata: dict[str, str], content_type: str) -> str:
        dest = self._path(key)
        digest = hashlib.md5(usedforsecurity=False)
        content = self._stage(lambda f: fill(f, digest))
        try:
            meta = {"metadata": metadata, "content_type": content_type, "etag": digest.hexdigest()}
            meta_bytes = json.dumps(meta, sort_keys=True).encode()
            # Metadata first: a reader may briefly see new metadata beside the old content, but never
            # a new object without its metadata.
            meta_tmp = self._stage(lambda f: f.write(meta_bytes))
            try:
                self._publish(meta_tmp, self._meta_path(key))
            finally:
                meta_tmp.unlink(missing_ok=True)
            try:
                self._publish(content, dest)
            except ObjectStoreError:
                # No object can exist at a conflicting key, so the metadata just written belongs to nothing.
                self._meta_path(key).unlink(missing_ok=True)
                _prune(self._meta_path(key).parent, self._meta)
                raise
        finally:
            content.unlink(missing_ok=True)
        return digest.hexdigest()

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> str:
        self._path(key)
        meta = _validate_metadata(metadata)

        def fill(f: Any, digest: Any) -> None:
            digest.update(data)
            f.write(data)

        return await asyncio.to_thread(self._put_sync, key, fill, meta, content_type)

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> str:
        self._path(key)
        meta = _validate_metadata(metadata)

        def fill(f: Any, digest: Any) -> None:
            with open(path, "rb") as src:
                while chunk := src.read(MiB):
                    digest.update(chunk)
                    f.write(chunk)

        return await asyncio.to_thread(self._put_sync, key, fill, meta, content_type)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"Object {key!r} does not exist in {self.root}.") from None

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        path = self._path(key)

        def read() -> bytes:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read(length)

        try:
            return await asyncio.to_thread(read)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"Object {key!r} does not exist in {self.root}.") from None

    def _info(self, key: str, st: os.stat_result, with_meta: bool) -> ObjectInfo:
        meta: dict[str, Any] = {}
        if with_meta:
            with contextlib.suppress(OSError, ValueError):
                meta = json.loads(self._meta_path(key).read_bytes())
        return ObjectInfo(
            key=key,
            size=st.st_size,
            # Files placed by hand have no sidecar; size and mtime still change with the content.
            etag=meta.get("etag") or f"{st.st_mtime_ns:x}-{st.st_size:x}",
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            metadata=meta.get("metadata", {}),
            content_type=meta.get("content_type", DEFAULT_CONTENT_TYPE),
        )

    async def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)

        def stat() -> ObjectInfo | None:
            try:
                st = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
            return self._info(key, st, with_meta=True) if path.is_file() else None

        return await asyncio.to_thread(stat)

    async def list(self, prefix: str = "", *, start_after: str = "", limit: int = 1000) -> list[ObjectInfo]:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}.")

        def scan() -> list[ObjectInfo]:
            # Walk only the directory the prefix names; S3 order (by key) differs from directory order,
            # so the matches are sorted afterwards.
            base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
            found: list[tuple[str, os.stat_result]] = []
            for dirpath, dirnames, filenames in os.walk(base):
                rel = os.path.relpath(dirpath, self.root)
                if rel == ".":
                    dirnames[:] = [d for d in dirnames if d not in self._RESERVED]
                    rel = ""
                for name in filenames:
                    key = f"{rel}/{name}" if rel else name
                    if key.startswith(prefix) and key > start_after:
                        with contextlib.suppress(FileNotFoundError):
                            found.append((key, os.stat(os.path.join(dirpath, name))))
            found.sort(key=lambda item: item[0])
            return [self._info(k, st, with_meta=False) for k, st in found[:limit]]

        return await asyncio.to_thread(scan)

    async def delete(self, key: str) -> None:
        path = self._path(key)

        def remove() -> None:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                path.unlink()
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                self._meta_path(key).unlink()
            # Prune empty directories so deleted prefixes vanish as they do on S3.
            _prune(path.parent, self.root)
            _prune(self._meta_path(key).parent, self._meta)

        await asyncio.to_thread(remove)

    async def copy(self, src: str, dst: str) -> None:
        src_path = self._path(src)
        self._path(dst)
        info = await self.head(src)
        if info is None:
            raise NotFound(f"Object {src!r} does not exist in {self.root}.")

        def fill(f: Any, digest: Any) -> None:
            with open(src_path, "rb") as s:
                while chunk := s.read(MiB):
                    digest.update(chunk)
                    f.write(chunk)

        await asyncio.to_thread(self._put_sync, dst, fill, dict(info.metadata), info.content_type)

    async def check(self) -> None:
        def probe() -> None:
            with open(self._tmp / f"{secrets.token_hex(8)}.check", "wb") as f:
                os.unlink(f.name)

        try:
            await asyncio.to_thread(probe)
        except OSError as exc:
            raise ObjectStoreError(f"Cannot write to the local object store at {self.root}: {exc.strerror}.") from exc


def _prune(leaf: Path, top: Path) -> None:
    """Remove empty directories from ``leaf`` up to (not including) ``top``."""
    while leaf != top and top in leaf.parents:
        try:
            leaf.rmdir()
        except OSError:
            return
        leaf = leaf.parent


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# S3


@dataclass(frozen=True, slots=True)
class S3Settings:
    """How to reach one S3 bucket. Invalid values raise ``ValueError`` naming every bad field."""

    bucket: str
    #: Empty for AWS; e.g. ``http://127.0.0.1:8333`` for SeaweedFS or MinIO. The scheme turns TLS on or off.
    endpoint_url: str = ""
    region: str = "us-east-1"
    #: Keys are stored under ``prefix/``; empty for the bucket root.
    prefix: str = ""
    #: Path-style addressing (``endpoint/bucket/key``), which most self-hosted servers need.
    path_style: bool = True
    #: TLS certificate check: True, False (insecure) or the path of a CA bundle.
    verify: bool | str = True
    #: Both empty: the standard AWS chain (environment, profile, instance role).
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)
    #: Create the bucket on connect if it is missing; otherwise a missing bucket is an error.
    create_bucket: bool = False
    #: Attempts per request, first included (botocore "standard" retry mode).
    max_attempts: int = 5
    #: Puts larger than this use a multipart upload.
    multipart_threshold: int = 16 * MiB
    #: Size of each multipart part; S3 requires at least 5 MiB.
    part_size: int = 8 * MiB
    #: Parts uploaded at once.
    part_concurrency: int = 4
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def __post_init__(self) -> None:
        errors = []
        if not 3 <= len(self.bucket) <= 63:
            errors.append(f"bucket: {self.bucket!r} must be 3 to 63 characters")
        if bool(self.access_key_id) != bool(self.secret_access_key):
            errors.append("access_key_id / secret_access_key: give both or neither")
        if self.endpoint_url and urlsplit(self.endpoint_url).scheme not in ("http", "https"):
            errors.append(f"endpoint_url: {self.endpoint_url!r} must start with http:// or https://")
        if self.prefix:
            try:
                validate_key(self.prefix.strip("/"))
            except ValueError:
                errors.append(f"prefix: {self.prefix!r} is not a valid key prefix")
        if self.max_attempts < 1:
            errors.append("max_attempts: must be at least 1")
        if self.part_size < 5 * MiB:
            errors.append("part_size: S3 requires parts of at least 5 MiB")
        if self.multipart_threshold < self.part_size:
            errors.append("multipart_threshold: must be at least part_size")
        if self.part_concurrency < 1:
            errors.append("part_concurrency: must be at least 1")
        if errors:
            raise ValueError("Invalid S3 settings: " + "; ".join(errors) + ".")


_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_AUTH_CODES = frozenset(
    {"403", "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken"}
)


class S3Store(_AsyncClosing):
    """Objects in an S3 bucket through ``aioboto3``. Build with ``await S3Store.connect(settings)``."""

    def __init__(self, settings: S3Settings, client: Any, stack: contextlib.AsyncExitStack) -> None:
        self.settings = settings
        self._client = client
        self._stack = stack
        self._prefix = settings.prefix.strip("/") + "/" if settings.prefix.strip("/") else ""
        self._where = f"at {settings.endpoint_url or 'AWS S3'}"

    def __repr__(self) -> str:
        s = self.settings
        return f"S3Store(bucket={s.bucket!r}, prefix={self._prefix!r}, endpoint={s.endpoint_url!r})"

    @classmethod
    async def connect(cls, settings: S3Settings) -> S3Store:
        """Open a client; with ``create_bucket`` also make sure the bucket exists."""
        import aioboto3
        from aiobotocore.config import AioConfig

        config = AioConfig(
            s3={"addressing_style": "path" if settings.path_style else "auto"},
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            # Self-hosted servers vary in support for the newer default checksums; send them only when required.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = aioboto3.Session(
            aws_access_key_id=settings.access_key_id or None,
            aws_secret_access_key=settings.secret_access_key or None,
            region_name=settings.region,
        )
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(
            session.client("s3", endpoint_url=settings.endpoint_url or None, verify=settings.verify, config=config)
        )
        store = cls(settings, client, stack)
        try:
            if settings.create_bucket:
                await store._ensure_bucket()
        except BaseException:
            await stack.aclose()
            raise
        return store

    async def close(self) -> None:
        await self._stack.aclose()

    def _full(self, key: str) -> str:
        return self._prefix + validate_key(key)

    @contextlib.asynccontextmanager
    async def _errors(self, action: str, key: str | None = None) -> AsyncIterator[None]:
        """Turn botocore errors into sentences naming bucket, key and endpoint (never the secret)."""
        from botocore.exceptions import BotoCoreError, ClientError

        what = f"bucket {self.settings.bucket!r}" + (f", key {key!r}" if key is not None else "")
        try:
            yield
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            message = str(err.get("Message", "")) or code
            if code in _NOT_FOUND_CODES and key is not None:
                raise NotFound(
                    f"Object {key!r} does not exist in bucket {self.settings.bucket!r} {self._where}."
                ) from None
            if code in ("NoSuchBucket",) or (code in _NOT_FOUND_CODES and key is None):
                raise ObjectStoreError(
                    f"Bucket {self.settings.bucket!r} does not exist {self._where}; create it or set create_bucket."
                ) from None
            if code in _AUTH_CODES:
                who = (
                    f"access key id {self.settings.access_key_id!r}"
                    if self.settings.access_key_id
                    else "AWS default credentials"
                )
                raise ObjectStoreError(
                    f"S3 {self._where} refused to {action} ({what}) with {who}: {message} "
                    "Check the access key id, secret and bucket permissions."
                ) from None
            raise ObjectStoreError(f"S3 {self._where} failed to {action} ({what}): {code}: {message}") from None
        except BotoCoreError as exc:
            raise ObjectStoreError(f"Cannot {action} ({what}) on S3 {self._where}: {exc}") from None

    async def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            await self._client.head_bucket(Bucket=self.settings.bucket)
            return
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in _NOT_FOUND_CODES | {"NoSuchBucket"}:
                async with self._errors("check the bucket"):
                    raise
        async with self._errors("create the bucket"):
            try:
                await self._client.create_bucket(Bucket=self.settings.bucket)
            except ClientError as exc:
                # Another agent may have created it first.
                if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    async def check(self) -> None:
        async with self._errors("check the bucket"):
            await self._client.head_bucket(Bucket=self.settings.bucket)

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> str:
        full = self._full(key)
        meta = _validate_metadata(metadata)
        if len(data) > self.settings.multipart_threshold:
            view = memoryview(data)

            async def read(offset: int, size: int) -> bytes:
                return bytes(view[offset : offset + size])

            return await self._multipart(
                key, full=full, size=len(data), read=read, metadata=meta, content_type=content_type
            )
        async with self._errors("store an object", key):
            resp = await self._client.put_object(
                Bucket=self.settings.bucket, Key=full, Body=data, Metadata=meta, ContentType=content_type
            )
        return str(resp.get("ETag", "")).strip('"')

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> str:
        size = (await asyncio.to_thread(path.stat)).st_size
        if size <= self.settings.multipart_threshold:
            data = await asyncio.to_thread(path.read_bytes)
            return await self.put(key, data, metadata=metadata, content_type=content_type)
        full = self._full(key)
        meta = _validate_metadata(metadata)

        def read_sync(offset: int, n: int) -> bytes:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(n)

        async def read(offset: int, n: int) -> bytes:
            return await asyncio.to_thread(read_sync, offset, n)

        return await self._multipart(key, full=full, size=size, read=read, metadata=meta, content_type=content_type)

    async def _multipart(
        self,
        key: str,
        *,
        full: str,
        size: int,
        read: Callable[[int, int], Awaitable[bytes]],
        metadata: dict[str, str],
        content_type: str,
    ) -> str:
        bucket, part_size = self.settings.bucket, self.settings.part_size
        async with self._errors("start a multipart upload", key):
            upload = await self._client.create_multipart_upload(
                Bucket=bucket, Key=full, Metadata=metadata, ContentType=content_type
            )
        upload_id = upload["UploadId"]
        offsets = range(0, size, part_size)
        etags: dict[int, str] = {}
        limit = asyncio.Semaphore(self.settings.part_concurrency)

        async def send(number: int, offset: int) -> None:
            async with limit, self._errors(f"upload part {number}", key):
                body = await read(offset, part_size)
                resp = await self._client.upload_part(
                    Bucket=bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=body
                )
                etags[number] = resp["ETag"]

        try:
            try:
                async with asyncio.TaskGroup() as tg:
                    for number, offset in enumerate(offsets, start=1):
                        tg.create_task(send(number, offset))
            except BaseExceptionGroup as group:
                # Callers expect the first failure (an ObjectStoreError), not a group.
                raise group.exceptions[0] from None
            parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
            async with self._errors("complete a multipart upload", key):
                resp = await self._client.complete_multipart_upload(
                    Bucket=bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            # Shielded so a cancelled put still releases the parts the server holds.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._client.abort_multipart_upload(Bucket=bucket, Key=full, UploadId=upload_id))
            raise
        return str(resp.get("ETag", "")).strip('"')

    async def get(self, key: str) -> bytes:
        full = self._full(key)
        async with self._errors("read an object", key):
            resp = await self._client.get_object(Bucket=self.settings.bucket, Key=full)
            async with resp["Body"] as body:
                data: bytes = await body.read()
        return data

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        full = self._full(key)
        if length <= 0:
            return b""
        async with self._errors("read an object", key):
            try:
                resp = await self._client.get_object(
                    Bucket=self.settings.bucket, Key=full, Range=f"bytes={start}-{start + length - 1}"
                )
            except Exception as exc:
                # Reading past the end is an empty read, as on a file.
                if getattr(exc, "response", {}).get("Error", {}).get("Code") == "InvalidRange":
                    return b""
                raise
            async with resp["Body"] as body:
                data: bytes = await body.read()
        return data

    async def head(self, key: str) -> ObjectInfo | None:
        full = self._full(key)
        try:
            async with self._errors("read object info", key):
                resp = await self._client.head_object(Bucket=self.settings.bucket, Key=full)
        except NotFound:
            return None
        return ObjectInfo(
            key=key,
            size=int(resp["ContentLength"]),
            etag=str(resp.get("ETag", "")).strip('"'),
            last_modified=resp["LastModified"].astimezone(UTC),
            metadata=dict(resp.get("Metadata", {})),
            content_type=str(resp.get("ContentType") or DEFAULT_CONTENT_TYPE),
        )

    async def list(self, prefix: str = "", *, start_after: str = "", limit: int = 1000) -> list[ObjectInfo]:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}.")
        out: list[ObjectInfo] = []
        args: dict[str, Any] = {"Bucket": self.settings.bucket, "Prefix": self._prefix + prefix}
        if start_after:
            args["StartAfter"] = self._prefix + start_after
        async with self._errors("list objects"):
            while len(out) < limit:
                resp = await self._client.list_objects_v2(**args, MaxKeys=min(1000, limit - len(out)))
                out.extend(
                    ObjectInfo(
                        key=item["Key"][len(self._prefix) :],
                        size=int(item["Size"]),
                        etag=str(item.get("ETag", "")).strip('"'),
                        last_modified=item["LastModified"].astimezone(UTC),
                    )
                    for item in resp.get("Contents", [])
                )
                if not resp.get("IsTruncated"):
                    break
                args["ContinuationToken"] = resp["NextContinuationToken"]
        return out[:limit]

    async def delete(self, key: str) -> None:
        full = self._full(key)
        async with self._errors("delete an object", key):
            try:
                await self._client.delete_object(Bucket=self.settings.bucket, Key=full)
            except Exception as exc:
                if getattr(exc, "response", {}).get("Error", {}).get("Code") not in _NOT_FOUND_CODES:
                    raise

    async def copy(self, src: str, dst: str) -> None:
        source = {"Bucket": self.settings.bucket, "Key": self._full(src)}
        target = self._full(dst)
        async with self._errors("copy an object", src):
            await self._client.copy_object(Bucket=self.settings.bucket, Key=target, CopySource=source)


# --------------------------------------------------------------------------------------------
# Opening a store from config


async def open_object_store(target: str | Path | S3Settings) -> ObjectStore:
    """Open the store a config value names.

    - ``S3Settings`` or ``s3://bucket/prefix?endpoint=http://127.0.0.1:8333&region=us-east-1&path_style=true``
      (also ``create_bucket=true``, ``verify=false|/ca.pem``; credentials come from the environment chain)
    - ``file:///abs/path`` or a plain path: a ``LocalStore`` there.
    """
    if isinstance(target, S3Settings):
        return await S3Store.connect(target)
    text = str(target)
    if text.startswith("s3://"):
        return await S3Store.connect(_s3_settings_from_url(text))
    if text.startswith("file://"):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"Object store URL {text!r} must be file:///absolute/path (no host).")
        return LocalStore(Path(unquote(parts.path)))
    if "://" in text:
        raise ValueError(f"Object store {text!r} is neither s3://, file:// nor a directory path.")
    return LocalStore(Path(text))


def _s3_settings_from_url(url: str) -> S3Settings:
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    known = {"endpoint", "region", "path_style", "create_bucket", "verify"}
    if unknown := sorted(set(query) - known):
        raise ValueError(f"Object store URL has unknown options {unknown}; known: {sorted(known)}.")

    def flag(name: str, default: bool) -> bool:
        value = query.get(name, "").lower()
        if value in ("", "true", "1", "yes"):
            return default if value == "" else True
        if value in ("false", "0", "no"):
            return False
        raise ValueError(f"Object store URL option {name}={value!r} must be true or false.")

    verify: bool | str = query["verify"] if query.get("verify", "").startswith("/") else flag("verify", True)
    return S3Settings(
        bucket=parts.netloc,
        prefix=unquote(parts.path).strip("/"),
        endpoint_url=query.get("endpoint", ""),
        region=query.get("region") or "us-east-1",
        path_style=flag("path_style", True),
        create_bucket=flag("create_bucket", False),
        verify=verify,
    )
