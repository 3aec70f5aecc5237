"""Conversions between stored records and API messages: timestamps and etags are derived from
the record, so what the store says is always what the caller sees."""

from __future__ import annotations

import hashlib
from typing import TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from control_plane.core.errors import Aborted, FieldViolation, InvalidArgument
from control_plane.store import Record

__all__ = ["check_etag", "etag_of", "from_record", "timestamp", "to_body"]

ETAG_LENGTH = 16

M = TypeVar("M", bound=Message)


def timestamp(nanos: int) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(nanos)
    return ts


def etag_of(record: Record) -> str:
    """An opaque etag unique to this version of this resource.

    Derived from the name, creation time and revision, so a resource deleted and re-created
    under the same name never matches an etag of its predecessor.
    """
    raw = f"{record.name}\0{record.create_time}\0{record.revision}".encode()
    return hashlib.sha256(raw).hexdigest()[:ETAG_LENGTH]


def check_etag(record: Record, etag: str, field: str = "etag") -> None:
    """No-op when ``etag`` is empty; ABORTED when it names another version of ``record``."""
    if not etag:
        return
    if len(etag) != ETAG_LENGTH or not all(c in "0123456789abcdef" for c in etag):
        raise InvalidArgument.from_violations([FieldViolation(field, f"{etag!r} is not an etag this server issued")])
    if etag != etag_of(record):
        raise Aborted(f"{record.name} was changed by someone else (etag is stale): read it again and retry.")


def from_record(record: Record, cls: type[M]) -> M:
    """Decode a record's body and fill its output-only fields (name, times, etag)."""
    msg = cls.FromString(record.body)
    fields = cls.DESCRIPTOR.fields_by_name
    msg.name = record.name  # type: ignore[attr-defined]
    msg.create_time.CopyFrom(timestamp(record.create_time))  # type: ignore[attr-defined]
    if "update_time" in fields:
        msg.update_time.CopyFrom(timestamp(record.update_time))  # type: ignore[attr-defined]
    if "last_used_time" in fields and record.last_used_time:
        msg.last_used_time.CopyFrom(timestamp(record.last_used_time))  # type: ignore[attr-defined]
    msg.etag = etag_of(record)  # type: ignore[attr-defined]
    return msg


def to_body(msg: Message) -> bytes:
    """Serialize for storage, without the fields the record itself holds."""
    copy = type(msg)()
    copy.CopyFrom(msg)
    for field in ("name", "create_time", "update_time", "last_used_time", "etag"):
        if field in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(field)
    return copy.SerializeToString(deterministic=True)
