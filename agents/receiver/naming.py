"""Names and metadata of the raw objects a receiver uploads.

``{tenant}/{dataset}/{tenant}--{dataset}--{unix_nanos}--{data_hint}.{gz|zst}`` (design.md).
The name must be a pure function of the batch, so that a restart, or a proxy that retries a
batch through another receiver, stores it under the same name and never under two:

    unix_nanos = created_at_ns // 1000 * 1000 + crc32(batch_id) % 1000

``created_at`` and ``batch_id`` are the sender's (``X-Floe-Created-At``, ``X-Floe-Batch-Id``)
when it sent both; otherwise the receiver picks them once, at receipt, and spools them with the
body (``BatchMeta``), so every upload attempt of that batch computes the same name.

Two different batches can still land on the same name (same microsecond, same crc32 remainder):
the uploader checks the object already there and moves to the next nanosecond when it holds
another batch id (``candidates``).
"""

from __future__ import annotations

import re
import zlib

from agents.runtime.spool import BatchMeta

__all__ = [
    "DATA_HINT_RE",
    "EXTENSIONS",
    "candidates",
    "created_at_ns",
    "object_key",
    "object_metadata",
    "seconds_from_ns",
    "unix_nanos",
]

#: What a data hint may look like: it ends object names, so no separators or dots.
DATA_HINT_RE = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")
#: Stored encoding -> file extension. Identity bodies are compressed to zstd at upload.
EXTENSIONS = {"gzip": "gz", "zstd": "zst"}
CONTENT_TYPES = {"gzip": "application/gzip", "zstd": "application/zstd"}


def seconds_from_ns(ns: int) -> float:
    """``created_at`` for ``BatchMeta``: whole microseconds, which a float holds exactly enough
    for ``created_at_ns`` to give them back (a float of Unix seconds cannot hold nanoseconds)."""
    return (ns // 1000) / 1e6


def created_at_ns(meta: BatchMeta) -> int:
    """``meta.created_at`` in nanoseconds, truncated to the microsecond."""
    return round(meta.created_at * 1e6) * 1000


def unix_nanos(meta: BatchMeta) -> int:
    return created_at_ns(meta) + zlib.crc32(meta.batch_id.encode()) % 1000


def object_key(meta: BatchMeta, nanos: int, encoding: str) -> str:
    """The key of ``meta``'s object at ``nanos``, stored with ``encoding`` (gzip or zstd)."""
    t, d = meta.tenant, meta.dataset
    return f"{t}/{d}/{t}--{d}--{nanos}--{meta.data_hint}.{EXTENSIONS[encoding]}"


def candidates(meta: BatchMeta, encoding: str, count: int = 16) -> list[str]:
    """Keys to try in order: the batch's own name, then the next nanoseconds on a collision."""
    base = unix_nanos(meta)
    return [object_key(meta, base + i, encoding) for i in range(count)]


def object_metadata(meta: BatchMeta, encoding: str, receiver: str, original_bytes: int) -> dict[str, str]:
    """User metadata stored with the object (S3 ``x-amz-meta-*``)."""
    return {
        "batch-id": meta.batch_id,
        "records": str(meta.records),
        "original-bytes": str(original_bytes),
        "created-at": str(created_at_ns(meta)),
        "content-encoding": encoding,
        "data-hint": meta.data_hint,
        "tenant": meta.tenant,
        "dataset": meta.dataset,
        "receiver": receiver,
    }
