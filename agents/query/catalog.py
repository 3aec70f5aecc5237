"""Which Parquet files a query reads: a dataset's files in the Parquet store, pruned by the Hive
hour partitions against the query's time range, and the time range itself (defaults, limit).

Listing goes through the one ``ObjectStore`` interface, so the local directory and S3 behave the
same; only the file keys that match the packer's layout (``layout.parquet_key``) count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc

from agents.query.errors import QueryError, invalid
from agents.runtime.layout import list_all, parquet_prefix
from agents.runtime.objectstore import ObjectStore

__all__ = ["ParquetFile", "TimeRange", "list_files", "prune", "resolve_range"]

_HOUR = timedelta(hours=1)
_KEY_RE = re.compile(
    r"/data/parquet/year=(?P<y>\d{4})/month=(?P<m>\d{2})/day=(?P<d>\d{2})/hour=(?P<h>\d{2})/[^/]+\.parquet$"
)


@dataclass(frozen=True, slots=True)
class ParquetFile:
    key: str
    size: int
    etag: str
    #: Start of the file's hour partition (UTC).
    hour: datetime


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``start <= timestamp < end``; None means unbounded on that side."""

    start: datetime | None
    end: datetime | None


async def list_files(store: ObjectStore, tenant: str, dataset: str) -> list[ParquetFile]:
    """Every Parquet file of the dataset, in key order."""
    out = []
    for info in await list_all(store, parquet_prefix(tenant, dataset)):
        m = _KEY_RE.search(info.key)
        if m is None:
            continue
        try:
            hour = datetime(int(m["y"]), int(m["m"]), int(m["d"]), int(m["h"]), tzinfo=UTC)
        except ValueError:  # month=13 and the like: not a file the packer wrote
            continue
        out.append(ParquetFile(info.key, info.size, info.etag, hour))
    return out


def prune(files: list[ParquetFile], when: TimeRange) -> list[ParquetFile]:
    """The files whose hour overlaps ``when``."""
    return [
        f
        for f in files
        if (when.end is None or f.hour < when.end) and (when.start is None or f.hour + _HOUR > when.start)
    ]


def resolve_range(start: datetime | None, end: datetime | None, now: datetime, max_range: float) -> TimeRange:
    """Apply the defaults and the ``max_time_range`` limit (seconds; 0 is unlimited).

    Without a start, the range reaches back ``max_range`` from the end (or from now), so a query
    can never read more than the limit allows by leaving the range out.
    """
    if start is not None and end is not None and end <= start:
        raise invalid("end_time: must be after start_time.", "end_time")
    if max_range <= 0:
        return TimeRange(start, end)
    limit = timedelta(seconds=max_range)
    if start is None:
        start = (end or now) - limit
    if (end or now) - start > limit:
        hours = max_range / 3600
        raise QueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"The time range is longer than the max_time_range limit of {hours:g} hours; narrow start_time/end_time.",
            "TIME_RANGE_TOO_LONG",
            {"limit": "max_time_range", "max_seconds": f"{max_range:g}"},
        )
    return TimeRange(start, end)
